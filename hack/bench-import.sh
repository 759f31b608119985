#!/usr/bin/env bash
# make bench-import: the agent's import against `mariadb < dump.sql` into a default and a tuned
# server, against myloader, and on a mariadb-backup stream, on the same >= 1 GB deterministic dump;
# for PostgreSQL against `psql -f dump.sql` and `pg_restore -j` on the same data. Prints the times,
# MB/s and ratios. Needs about 14 GB of disk. Arguments go to the command: -methods=2,4 runs those
# MariaDB rows alone, -engines=postgresql the PostgreSQL rows alone, -rows=N sizes the dump.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-mariadb.sh >/dev/null
bash hack/install-postgresql.sh >/dev/null
work=$(mktemp -d /var/tmp/bench-import-XXXXXX)
# Servers of an interrupted earlier run would keep their datadirs busy.
pkill -f 'mariadbd --no-defaults --datadir=/var/tmp/bench-import-' 2>/dev/null || true
trap 'pkill -f "mariadbd --no-defaults --datadir=$work" 2>/dev/null || true; pkill -f "postgres -D $work" 2>/dev/null || true; rm -rf "$work"' EXIT
go run ./hack/bench-import --myaas=bin/myaas --work="$work" "$@"
