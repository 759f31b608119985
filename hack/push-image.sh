#!/usr/bin/env bash
# Pushes an image archive of hack/build-images.sh (an OCI layout as a tar) to a registry. crane
# reads an OCI layout only from a directory, so the archive is unpacked first.
# Usage: hack/push-image.sh ARCHIVE IMAGE   (CRANE: the crane binary, default bin/crane)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
archive=${1:?usage: $0 ARCHIVE IMAGE}
image=${2:?usage: $0 ARCHIVE IMAGE}
crane=${CRANE:-$root/bin/crane}
[ -f "$archive" ] || { echo "$archive is missing: run make docker-build" >&2; exit 1; }
layout=$(mktemp -d)
trap 'rm -rf "$layout"' EXIT
tar -xf "$archive" -C "$layout"
"$crane" push "$layout" "$image"
