#!/usr/bin/env bash
# Builds Kubernetes components from their Go modules (hack/tools/kubernetes) into bin/k8s, once per
# pinned version: setup-envtest and release downloads are not reachable here, the module proxy is.
# Usage: hack/build-k8s.sh [component...]   (default: every component of the local cluster)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bin/k8s
mod=$root/hack/tools/kubernetes
version=$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(cd "$mod" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
mkdir -p "$out"
minor=$(echo "$version" | cut -d. -f2)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$version"
for c in "${components[@]}"; do
  want=$version
  [ "$c" = etcd ] && want=$etcd_version
  stamp=$out/.$c.version
  if [ -x "$out/$c" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    continue
  fi
  echo "building $c $want"
  start=$(date +%s)
  if [ "$c" = etcd ]; then
    (cd "$mod" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$out/etcd" ./etcd)
  else
    (cd "$mod" && CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$out/$c" "k8s.io/kubernetes/cmd/$c")
  fi
  echo "$want" > "$stamp"
  echo "built $c in $(( $(date +%s) - start ))s"
done
