#!/usr/bin/env bash
# Installs Debian's prometheus (the server and promtool) for the alert rule tests, the dashboard
# query check and the monitoring test of make test-install, idempotently. The tests start their
# own servers on temporary directories; the packaged service must not run.
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the package from starting its own server during installation.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
echo "promtool: $(promtool --version 2>&1 | awk 'NR == 1 {print $3}')"
