#!/usr/bin/env bash
# make test-e2e: the end-to-end suite on the local cluster. Reuses a running cluster (and leaves it
# running); otherwise brings one up from nothing and removes it afterwards.
# MYAAS_E2E_KEEP=1 keeps a cluster this script started; extra arguments go to `go test`. NODES (or
# MYAAS_NODES) reaches hack/dev-cluster.sh up through the environment: the node count of a cluster
# this script starts.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib-cluster.sh
. "$root/hack/lib-cluster.sh"

E2E_UPGRADE_IMAGE=localhost/myaas/manager:e2e-upgrade
# One suite at a time on the one local cluster: some tests redeploy the operator.
# MYAAS_CLUSTER_LOCK_HELD=1: the caller holds it already (several steps in one turn).
if [ "${MYAAS_CLUSTER_LOCK_HELD:-}" != 1 ]; then
  exec 9>/tmp/myaas-cluster.lock
  flock 9
fi

started=0
if ! cluster_running; then
  bash "$root/hack/dev-cluster.sh" up
  started=1
fi
if [ $started = 1 ] && [ "${MYAAS_E2E_KEEP:-0}" != 1 ]; then
  trap 'bash "$root/hack/dev-cluster.sh" down' EXIT
fi
if [ $started = 0 ]; then
  # A cluster brought up before the NetworkPolicy enforcer was part of it gets it now.
  bash "$root/hack/dev-cluster.sh" netpol
  # postgresql too: a cluster up from before the PostgreSQL image existed gets it (cached: seconds);
  # mariadb, rebuilt when its package list changes (mariadb-backup was added).
  bash "$root/hack/dev-cluster.sh" load manager dumpserver s3server postgresql mariadb
fi
deploy_operator
# Another build of the manager (another version, so another binary), for the test that redeploys
# the operator under running instances.
MANAGER_IMG=$E2E_UPGRADE_IMAGE MANAGER_VERSION=e2e-upgrade MANAGER_ARCHIVE=manager-e2e-upgrade.tar \
  bash "$root/hack/build-images.sh" manager >/dev/null
import_into_nodes "$root/bin/images/manager-e2e-upgrade.tar"
cd "$root"
MYAAS_E2E_UPGRADE_IMAGE=$E2E_UPGRADE_IMAGE KUBECONFIG=$KUBECONFIG_PATH go test -tags e2e ./test/e2e -count=1 -timeout 45m -v "$@" 2>&1 |
  tee "${MYAAS_E2E_LOG:-/tmp/myaas-e2e.log}" | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go:[0-9]+:'
