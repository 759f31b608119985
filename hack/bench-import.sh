#!/usr/bin/env bash
# make bench-import: the agent's import against `mariadb < dump.sql` into a default server, on the
# same >= 1 GB deterministic dump, and the agent on a mariadb-backup stream of the data it loaded.
# Prints times, MB/s and ratios. Needs about 10 GB of disk. --only=agent,default,physical picks rows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-mariadb.sh >/dev/null
work=$(mktemp -d /var/tmp/bench-import-XXXXXX)
# Servers of an interrupted earlier run would keep their datadirs busy.
pkill -f 'mariadbd --no-defaults --datadir=/var/tmp/bench-import-' 2>/dev/null || true
trap 'pkill -f "mariadbd --no-defaults --datadir=$work" 2>/dev/null || true; rm -rf "$work"' EXIT
go run ./hack/bench-import --myaas=bin/myaas --work="$work" "$@"
