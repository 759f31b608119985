#!/usr/bin/env bash
# Installs Debian's MariaDB server, client and backup tool, and mydumper, for the agent and
# controller tests, idempotently.
# The tests start their own servers on temporary datadirs; the packaged service must not run.
set -euo pipefail
need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
command -v mariadb-backup >/dev/null 2>&1 || need+=(mariadb-backup)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
# mydumper writes the directories the agent's parallel loader reads; the benchmark compares myloader.
command -v mydumper >/dev/null 2>&1 || need+=(mydumper)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the package from starting its own server during installation.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# A server left by the package (or an earlier run) would hold port 3306 and the default socket.
if pgrep -x mariadbd >/dev/null 2>&1 && [ -f /run/mysqld/mysqld.pid ]; then
  kill "$(cat /run/mysqld/mysqld.pid)" 2>/dev/null || true
fi
echo "mariadb: $(mariadbd --version 2>/dev/null || /usr/sbin/mariadbd --version)"
