#!/usr/bin/env bash
# Builds the release archives of kubectl-myaas for TAG into dist/ and renders the krew manifest
# for them (dist/myaas.yaml), as krew-release-bot would from myaas.yaml.
# Usage: cmd/kubectl-myaas/krew/release.sh v0.1.0
set -euo pipefail
tag=${1:?usage: release.sh TAG}
root=$(cd "$(dirname "$0")/../../.." && pwd)
dist="$root/dist"
mkdir -p "$dist"
manifest=$(cat "$root/cmd/kubectl-myaas/krew/myaas.yaml")
manifest=${manifest//'{{ .TagName }}'/$tag}
for platform in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64; do
  os=${platform%/*}
  arch=${platform#*/}
  name="kubectl-myaas_${tag}_${os}_${arch}.tar.gz"
  work=$(mktemp -d)
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags "-s -w" -o "$work/kubectl-myaas" "$root/cmd/kubectl-myaas"
  tar -czf "$dist/$name" -C "$work" kubectl-myaas
  rm -rf "$work"
  sha=$(sha256sum "$dist/$name" | cut -d' ' -f1)
  url="https://github.com/myaas/myaas/releases/download/$tag/$name"
  manifest=${manifest//"{{addURIAndSha \"$url\" .TagName }}"/"uri: $url
    sha256: $sha"}
done
printf '%s\n' "$manifest" | sed '/^#/d' >"$dist/myaas.yaml"
echo "dist/: archives and myaas.yaml (krew manifest) for $tag"
