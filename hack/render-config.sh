#!/usr/bin/env bash
# Prints the operator's manifests (config/default: CRDs, RBAC, manager) with the manager, and so
# the agent, running IMAGE. The image is set through kustomize's `images:` on a copy of config/,
# so the committed kustomizations keep the local cluster's image.
# Usage: hack/render-config.sh IMAGE   (KUSTOMIZE: the kustomize binary, default bin/kustomize)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
image=${1:?usage: $0 IMAGE}
kustomize=${KUSTOMIZE:-$root/bin/kustomize}
# `kustomize edit` runs inside the copy: a relative path would no longer lead to the binary.
[[ $kustomize != */* ]] || kustomize=$(realpath "$kustomize")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/config" "$work/"
(cd "$work/config/manager" && "$kustomize" edit set image "controller=$image")
"$kustomize" build "$work/config/default"
