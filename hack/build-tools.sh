#!/usr/bin/env bash
# Builds the local cluster's CSI sidecars and CoreDNS from their pinned tools modules
# (hack/tools/<name>/go.mod) into bin/, rebuilding only when that go.mod changes.
# Usage: hack/build-tools.sh [snapshot-controller|csi-snapshotter|csi-provisioner|coredns|weed ...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bin/tools
mkdir -p "$out"
declare -A module=(
  [snapshot-controller]=external-snapshotter:github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller
  [csi-snapshotter]=external-snapshotter:github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter
  [csi-provisioner]=external-provisioner:github.com/kubernetes-csi/external-provisioner/v5/cmd/csi-provisioner
  [coredns]=coredns:github.com/coredns/coredns
  [weed]=seaweedfs:github.com/seaweedfs/seaweedfs/weed
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(snapshot-controller csi-snapshotter csi-provisioner coredns)
for name in "${names[@]}"; do
  spec=${module[$name]:?unknown tool $name}
  dir=$root/hack/tools/${spec%%:*}
  pkg=${spec#*:}
  want=$(sha256sum "$dir/go.mod" | cut -c1-16)
  if [ -x "$out/$name" ] && [ "$(cat "$out/.$name.version" 2>/dev/null)" = "$want" ]; then
    continue
  fi
  echo "building $name"
  start=$(date +%s)
  (cd "$dir" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$out/$name" "$pkg")
  echo "$want" > "$out/.$name.version"
  echo "built $name in $(( $(date +%s) - start ))s"
done
