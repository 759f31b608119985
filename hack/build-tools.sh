#!/usr/bin/env bash
# Builds the local cluster's container runtime (containerd and its runc shim), CSI sidecars, CoreDNS
# and NetworkPolicy enforcer (kube-router) from their pinned tools modules (hack/tools/<name>/go.mod)
# into bin/tools, rebuilding only when that go.mod changes.
# Usage: hack/build-tools.sh [containerd|containerd-shim-runc-v2|snapshot-controller|csi-snapshotter|csi-provisioner|coredns|kube-router|weed|helm ...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bin/tools
mkdir -p "$out"
declare -A module=(
  [containerd]=containerd:github.com/containerd/containerd/v2/cmd/containerd
  [containerd-shim-runc-v2]=containerd:github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
  [snapshot-controller]=external-snapshotter:github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller
  [csi-snapshotter]=external-snapshotter:github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter
  [csi-provisioner]=external-provisioner:github.com/kubernetes-csi/external-provisioner/v5/cmd/csi-provisioner
  [coredns]=coredns:github.com/coredns/coredns
  [weed]=seaweedfs:github.com/seaweedfs/seaweedfs/weed
  [helm]=helm:helm.sh/helm/v3/cmd/helm
  [kube-router]=kube-router:github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
)
# helm stamps its version and the Kubernetes version `helm template` and `helm lint` assume at
# build time, as its own release builds do; without them it assumes Kubernetes 1.20.
helm_ldflags() {
  local dir=$1 helm k8s
  helm=$(cd "$dir" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
  k8s=$(cd "$dir" && go list -m -f '{{.Version}}' k8s.io/client-go) # v0.MINOR.PATCH
  k8s=${k8s#v0.}
  k8s=${k8s%%.*}
  echo "-X helm.sh/helm/v3/internal/version.version=$helm" \
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s" \
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s"
}
# containerd without cgo: the snapshotters that need C libraries (btrfs, devmapper, ZFS) are left
# out, overlayfs is what the cluster uses. Its version is stamped as its release builds do.
containerd_flags() {
  local dir=$1
  echo "-X github.com/containerd/containerd/v2/version.Version=$(cd "$dir" && go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"
}
containerd_tags=no_btrfs,no_devmapper,no_zfs
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(containerd containerd-shim-runc-v2 snapshot-controller csi-snapshotter csi-provisioner coredns kube-router)
for name in "${names[@]}"; do
  spec=${module[$name]:?unknown tool $name}
  dir=$root/hack/tools/${spec%%:*}
  pkg=${spec#*:}
  extra='' tags=''
  case $name in
    helm) extra=$(helm_ldflags "$dir") ;;
    containerd) extra=$(containerd_flags "$dir") tags=$containerd_tags ;;
    containerd-shim-runc-v2) tags=$containerd_tags ;;
  esac
  # The stamp covers the extra flags and tags too, so that changing them rebuilds the tool.
  want=$({ cat "$dir/go.mod"; [ -z "$extra$tags" ] || echo "$extra $tags"; } | sha256sum | cut -c1-16)
  if [ -x "$out/$name" ] && [ "$(cat "$out/.$name.version" 2>/dev/null)" = "$want" ]; then
    continue
  fi
  echo "building $name"
  start=$(date +%s)
  (cd "$dir" && CGO_ENABLED=0 go build -tags "$tags" -ldflags "-s -w $extra" -o "$out/$name" "$pkg")
  echo "$want" > "$out/.$name.version"
  echo "built $name in $(( $(date +%s) - start ))s"
done
