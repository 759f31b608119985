#!/usr/bin/env bash
# Installs Debian's PostgreSQL 15 server (with contrib) and client for the agent tests,
# idempotently. The tests start their own servers on temporary datadirs; the packaged cluster and
# service are not wanted.
set -euo pipefail
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the package from starting a server; create_main_cluster=false from making one.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  mkdir -p /etc/postgresql-common/createcluster.d
  echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/myaas-tests.conf
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15 >/dev/null
fi
echo "postgresql: $(/usr/lib/postgresql/15/bin/postgres --version)"
