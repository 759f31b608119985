#!/usr/bin/env bash
# Builds the local cluster's container images as OCI image-layout tars in bin/images, without a
# Docker engine or a registry (neither exists on the development machines): static Go binaries
# and debootstrap'ed MariaDB and PostgreSQL root filesystems are packed by hack/ociimage.
#
# Usage: hack/build-images.sh [--import] [all|pause|mariadb|postgresql|manager|dumpserver|s3server ...]
#   --import (or IMPORT=1)  also run `ctr -n k8s.io images import` for each image built
#   MIRROR=URL              Debian mirror for the engines' rootfs (default: this machine's apt source)
#   CACHE_DIR=DIR           where the engines' rootfs and downloaded .debs are kept (default bin/.cache/images)
#   REBUILD_ROOTFS=1        rebuild the engines' rootfs even when cached
#   MANAGER_IMG=NAME        name of the manager image (default localhost/myaas/manager:dev)
#   MANAGER_VERSION=V       version stamped into the manager binary (default dev)
#   MANAGER_ARCHIVE=FILE    archive name of the manager image in bin/images (default manager.tar)
#   REF_ANNOTATION=0        leave the image name out of index.json, for importers that name the
#                           image with `ctr images import --index-name NAME` (containerd 1.6 fails
#                           at unpack when both name the same image)
set -euo pipefail
shopt -s inherit_errexit
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bin/images
cache=${CACHE_DIR:-$root/bin/.cache/images}
import=${IMPORT:-0}
ref_annotation=${REF_ANNOTATION:-1}
# A fixed timestamp keeps every rebuild of unchanged content byte-identical, so containerd sees
# the same digests and re-imports are free.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

targets=()
for arg in "$@"; do
  case $arg in
    --import) import=1 ;;
    all) targets+=(pause mariadb postgresql manager dumpserver s3server) ;;
    pause | mariadb | postgresql | manager | dumpserver | s3server) targets+=("$arg") ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(pause mariadb postgresql manager dumpserver s3server)

mkdir -p "$out/.build" "$cache"

# debootstrap mounts /proc and /sys inside the target; an interrupted run leaves them mounted,
# and a later rm -rf of the rootfs would then reach into the host's /sys.
unmount_under() {
  local m
  awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" || true
  done
}
unmount_under "$cache"

since() { echo $(($(date +%s) - $1)); }

(cd "$root" && go build -o "$out/.build/ociimage" ./hack/ociimage)
ociimage() {
  local ref=true
  [ "$ref_annotation" = 1 ] || ref=false
  "$out/.build/ociimage" --ref-annotation=$ref "$@"
}

gobuild() { # output package [extra ldflags]
  (cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w ${3:-}" -o "$1" "$2")
}

import_image() { # name tar
  [ "$import" = 1 ] || return 0
  if ! ctr -n k8s.io version >/dev/null 2>&1; then
    echo "containerd is not reachable: not importing $1" >&2
    return 0
  fi
  if [ "$ref_annotation" = 1 ]; then
    ctr -n k8s.io images import "$2"
  else
    ctr -n k8s.io images import --index-name "$1" "$2"
  fi
}

# The first deb source of this machine for bookworm, so debootstrap uses the same reachable repo.
detect_mirror() {
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == "bookworm") { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
      { u = ""; s = 0; t = 0; off = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u = a[2] }
          if ($i ~ /^Suites:/ && ($i " ") ~ /[ \t]bookworm[ \t]/) s = 1
          if ($i ~ /^Types:/ && ($i " ") ~ /[ \t]deb[ \t]/) t = 1
          if ($i ~ /^Enabled:[ \t]*no/) off = 1
        }
        if (u != "" && s && t && !off) { print u; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  echo http://deb.debian.org/debian
}

build_pause() {
  gobuild "$out/.build/pause" ./hack/pause
  ociimage --name localhost/myaas/pause:3.10 --output "$out/pause.tar" \
    --add "$out/.build/pause:/pause:0755" --entrypoint /pause
}

build_manager() {
  gobuild "$out/.build/myaas" . "-X main.version=${MANAGER_VERSION:-dev}"
  ociimage --name "${names[manager]}" --output "$out/${MANAGER_ARCHIVE:-manager.tar}" \
    --add "$out/.build/myaas:/myaas:0755" --dir /tmp:1777 \
    --entrypoint /myaas --user 65532:65532
}

build_dumpserver() {
  gobuild "$out/.build/dumpserver" ./test/e2e/dumpserver
  ociimage --name localhost/myaas/dumpserver:dev --output "$out/dumpserver.tar" \
    --add "$out/.build/dumpserver:/dumpserver:0755" --dir /dumps:0777 --dir /tmp:1777 \
    --entrypoint /dumpserver
}

# SeaweedFS (master, volume server, filer and S3 gateway in one process, `weed mini`): the e2e
# suite's S3 server. Its binary comes from a pinned tools module, like the CSI sidecars.
build_s3server() {
  bash "$root/hack/build-tools.sh" weed
  ociimage --name localhost/myaas/s3server:dev --output "$out/s3server.tar" \
    --add "$root/bin/tools/weed:/weed:0755" --dir /data:0777 --dir /tmp:1777 \
    --entrypoint /weed
}

# The engine images are Debian bookworm root filesystems made by debootstrap, one per engine,
# cached under a key of what goes into them. The pods run as 999:999 with fsGroup 999 whatever
# the engine (internal/builder), so each image's server user is moved to that id. On 2 cores the
# PostgreSQL rootfs takes about 70 s when only the base system's .debs are cached, 50 s with all
# of them; an image of a cached rootfs is packed in 3 s.
suite=bookworm
server_id=999
# debootstrap's --include takes a comma-separated list.
declare -A engine_packages=([mariadb]='mariadb-server,mariadb-client' [postgresql]='postgresql-15')
# Bump when an engine's post-processing below changes, so its cached root filesystem is rebuilt.
declare -A engine_recipe=([mariadb]=2 [postgresql]=3)
postgresql_bin=/usr/lib/postgresql/15/bin
postgresql_lib=/usr/lib/postgresql/15/lib
base_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

fix_server_ids() { # rootfs user
  local r=$1 user=$2 uid gid
  uid=$(awk -F: -v u="$user" '$1 == u { print $3 }' "$r/etc/passwd")
  gid=$(awk -F: -v u="$user" '$1 == u { print $3 }' "$r/etc/group")
  if [ -z "$uid" ] || [ -z "$gid" ]; then
    echo "no $user user or group in $r" >&2
    return 1
  fi
  if awk -F: -v id=$server_id -v u="$user" '$3 == id && $1 != u { found = 1 } END { exit !found }' "$r/etc/passwd" "$r/etc/group"; then
    echo "id $server_id is already taken in $r" >&2
    return 1
  fi
  if [ "$gid" != $server_id ]; then
    chroot "$r" groupmod -g $server_id "$user"
    find "$r" -xdev -gid "$gid" -exec chgrp -h $server_id {} +
  fi
  if [ "$uid" != $server_id ]; then
    chroot "$r" usermod -u $server_id -g $server_id "$user"
    find "$r" -xdev -uid "$uid" -exec chown -h $server_id {} +
  fi
}

slim_rootfs() { # rootfs
  local r=$1
  rm -rf "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/var/cache/debconf/*-old \
    "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
    "$r"/usr/share/lintian "$r"/var/log/apt/* "$r"/tmp/* "$r"/var/tmp/*
  find "$r/var/log" -type f -delete
  # A fresh machine-id per container is the runtime's business; an inherited one is not unique.
  : >"$r/etc/machine-id"
  # mariadb-install-db refuses to run when localhost does not resolve; kubelet mounts its own
  # /etc/hosts, but ctr run and chroot tests see only the image's.
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
}

# The operator initialises every datadir itself; the ones the packages' postinst made are junk.
finish_mariadb_rootfs() { # rootfs
  local r=$1
  fix_server_ids "$r" mysql
  find "$r/var/lib/mysql" -mindepth 1 -delete
  # mariadbd's default socket directory; Debian creates it at service start, not at install.
  install -d -m 0755 -o $server_id -g $server_id "$r/run/mysqld"
  chroot --userspec=$server_id:$server_id "$r" mariadbd --version >&2
}

finish_postgresql_rootfs() { # rootfs
  local r=$1 tool
  fix_server_ids "$r" postgres
  # postgresql-common's postinst made the cluster 15/main: its datadir and its configuration.
  rm -rf "$r/var/lib/postgresql/15" "$r/etc/postgresql/15"
  # A private key made at install time would be the same in every container of the image.
  rm -f "$r/etc/ssl/private/ssl-cert-snakeoil.key" "$r/etc/ssl/certs/ssl-cert-snakeoil.pem"
  find "$r/etc/ssl/certs" -lname ssl-cert-snakeoil.pem -delete
  # JIT compilation (LLVM, over a third of the image) pays off only on long analytical queries,
  # not on the short-lived copies this image serves; without its provider the server runs jit=off.
  rm -rf "$r$postgresql_lib/llvmjit.so" "$r$postgresql_lib/llvmjit_types.bc" "$r$postgresql_lib/bitcode" \
    "$r"/usr/lib/x86_64-linux-gnu/libLLVM-*.so*
  # Debian's build puts the server's socket there by default; made at service start, not at install.
  install -d -m 2775 -o $server_id -g $server_id "$r/run/postgresql"
  for tool in postgres initdb pg_ctl psql pg_restore pg_dump; do
    [ -x "$r$postgresql_bin/$tool" ] || { echo "$postgresql_bin/$tool is missing in $r" >&2; return 1; }
  done
  chroot --userspec=$server_id:$server_id "$r" "$postgresql_bin/postgres" --version >&2
}

engine_rootfs() { # engine: prints the directory of its cached or new root filesystem
  local engine=$1 packages=${engine_packages[$1]} recipe=${engine_recipe[$1]} key dir mirror start
  key=$(printf '%s\n' "$suite" "$packages" "$recipe" | sha256sum | cut -c1-12)
  dir=$cache/$engine-rootfs-$key
  if [ -f "$dir.done" ] && [ "${REBUILD_ROOTFS:-0}" != 1 ]; then
    echo "$engine rootfs: cached ($dir)" >&2
    echo "$dir"
    return
  fi
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >&2
  mirror=${MIRROR:-$(detect_mirror)}
  start=$(date +%s)
  echo "$engine rootfs: debootstrap $suite from $mirror" >&2
  rm -rf "$dir" "$dir.tmp" "$dir.done"
  # The engines share one cache of downloaded .debs: the base system is the same.
  mkdir -p "$cache/debs"
  if ! debootstrap --variant=minbase --include="$packages" --cache-dir="$cache/debs" \
    "$suite" "$dir.tmp" "$mirror" >"$cache/debootstrap-$engine.log" 2>&1; then
    unmount_under "$dir.tmp"
    tail -n 30 "$cache/debootstrap-$engine.log" >&2
    echo "debootstrap failed; full log in $cache/debootstrap-$engine.log" >&2
    return 1
  fi
  unmount_under "$dir.tmp"
  slim_rootfs "$dir.tmp"
  "finish_${engine}_rootfs" "$dir.tmp"
  # Root filesystems of older recipes are several hundred MB each.
  find "$cache" -maxdepth 1 -name "$engine-rootfs-*" ! -name "$engine-rootfs-$key*" -exec rm -rf {} +
  mv "$dir.tmp" "$dir"
  touch "$dir.done"
  echo "$engine rootfs: built in $(since "$start")s" >&2
  echo "$dir"
}

build_mariadb() {
  local rootfs
  rootfs=$(engine_rootfs mariadb)
  ociimage --name "${names[mariadb]}" --output "$out/mariadb.tar" --rootfs "$rootfs" \
    --env PATH=$base_path --cmd mariadbd
}

# The server's binaries are not on Debian's default PATH (only pg_wrapper's links are): the agent
# finds postgres, initdb, psql and pg_restore on PATH, as in the official postgres image.
build_postgresql() {
  local rootfs
  rootfs=$(engine_rootfs postgresql)
  ociimage --name "${names[postgresql]}" --output "$out/postgresql.tar" --rootfs "$rootfs" \
    --env PATH=$postgresql_bin:$base_path --user $server_id:$server_id --cmd postgres
}

declare -A names=(
  [pause]=localhost/myaas/pause:3.10
  [mariadb]=localhost/myaas/mariadb:10.11
  [postgresql]=localhost/myaas/postgres:15
  [manager]=${MANAGER_IMG:-localhost/myaas/manager:dev}
  [dumpserver]=localhost/myaas/dumpserver:dev
  [s3server]=localhost/myaas/s3server:dev
)
total=$(date +%s)
for t in "${targets[@]}"; do
  start=$(date +%s)
  echo "building ${names[$t]} -> bin/images/$t.tar"
  "build_$t"
  archive=$out/$t.tar
  [ "$t" != manager ] || archive=$out/${MANAGER_ARCHIVE:-manager.tar}
  echo "built ${names[$t]} in $(since "$start")s ($(du -h "$archive" | cut -f1))"
  import_image "${names[$t]}" "$archive"
done
echo "done in $(since "$total")s"
