#!/usr/bin/env bash
# Installs Debian's PostgreSQL 15 server and client for the agent and dump tests, idempotently.
# The tests start their own servers on temporary datadirs; the packaged service must not run.
set -euo pipefail
bindir=/usr/lib/postgresql/15/bin
if [ ! -x "$bindir/postgres" ] || [ ! -x "$bindir/psql" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the package from starting the cluster it creates during installation.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15 >/dev/null
fi
# Tests run as root start their servers as the postgres user, which the package creates.
id postgres >/dev/null
echo "postgresql: $("$bindir/postgres" --version)"
