#!/usr/bin/env bash
# Installs Debian's shellcheck for make lint, idempotently.
set -euo pipefail
if ! command -v shellcheck >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
echo "shellcheck: $(shellcheck --version | awk '/^version:/ {print $2}')"
