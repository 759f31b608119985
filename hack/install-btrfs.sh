#!/usr/bin/env bash
# Installs btrfs-progs for the CSI driver's sanity tests and the local cluster, idempotently.
set -euo pipefail
if ! command -v mkfs.btrfs >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends btrfs-progs >/dev/null
fi
echo "btrfs: $(btrfs --version)"
