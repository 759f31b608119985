#!/usr/bin/env bash
# make release: everything a user installs version VERSION from, in dist/:
#   install.yaml                 CRDs, RBAC and the manager running REPO:VERSION (kubectl apply -f)
#   myaas-VERSION.tgz            the Helm chart, version and appVersion VERSION, image REPO
#   myaas-manager-VERSION.tar    the manager image REPO:VERSION, an OCI archive that
#                                `ctr images import` and `docker load` read; `myaas version` says VERSION
# Usage: hack/release.sh VERSION [REPO]   (REPO default localhost/myaas/manager)
#   HELM, KUSTOMIZE: the binaries (default bin/tools/helm, bin/kustomize)
#   DIST: where to write (default dist/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:?usage: $0 VERSION [REPO]}
repo=${2:-localhost/myaas/manager}
helm=${HELM:-$root/bin/tools/helm}
dist=${DIST:-$root/dist}
# Helm needs SemVer for chart versions; a leading v is the image tag's business only.
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]]; then
  echo "VERSION $version is not x.y.z (SemVer)" >&2
  exit 2
fi
image=$repo:$version
mkdir -p "$dist"

KUSTOMIZE=${KUSTOMIZE:-$root/bin/kustomize} bash "$root/hack/render-config.sh" "$image" >"$dist/install.yaml"
echo "wrote $dist/install.yaml ($image)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/charts/myaas" "$work/"
# The chart's image follows its appVersion; only the repository is set here.
sed -i "s|^  repository: .*|  repository: $repo|" "$work/myaas/values.yaml"
grep -q "^  repository: $repo\$" "$work/myaas/values.yaml" || { echo "could not set the image repository in values.yaml" >&2; exit 1; }
"$helm" lint --strict "$work/myaas" >/dev/null
"$helm" package "$work/myaas" --version "$version" --app-version "$version" --destination "$dist" >/dev/null
echo "wrote $dist/myaas-$version.tgz"

archive=myaas-manager-$version.tar
MANAGER_IMG=$image MANAGER_VERSION=$version MANAGER_ARCHIVE=$archive bash "$root/hack/build-images.sh" manager >/dev/null
# The binary packed into the archive, just built: the version users will see.
built=$("$root/bin/images/.build/myaas" version)
[ "$built" = "$version" ] || { echo "the manager binary says version $built, not $version" >&2; exit 1; }
mv "$root/bin/images/$archive" "$dist/$archive"
echo "wrote $dist/$archive ($image)"
