#!/usr/bin/env bash
# make test-install: the ways users install myaas, on the local cluster (test/install, build tag
# install): helm install of a released chart, the demo working, its metrics read through a
# Prometheus server on this host, helm upgrade to another build under running instances, helm
# uninstall plus CRD removal leaving nothing, and kubectl apply -f of a release's install.yaml.
#
# Reuses a running cluster (and leaves it running), otherwise brings one up and removes it
# afterwards, like hack/e2e.sh. The test removes every DatabaseTemplate and DatabaseInstance of the
# cluster (removing the CRDs does anyway); at the end the operator is deployed from config/ again,
# as the e2e suite expects. Extra arguments go to `go test`.
#   HELM, KUSTOMIZE: the binaries (default bin/tools/helm, bin/kustomize)
#   MYAAS_INSTALL_KEEP=1 keeps the work directory (releases, Prometheus data) for inspection
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib-cluster.sh
. "$root/hack/lib-cluster.sh"
export HELM=${HELM:-$root/bin/tools/helm}
export KUSTOMIZE=${KUSTOMIZE:-$root/bin/kustomize}
# Two versions of the manager: different binaries, so the upgrade really replaces the manager.
V1=0.0.0-install.1
V2=0.0.0-install.2
REPO=localhost/myaas/manager

# One suite at a time on the one local cluster: this one replaces the operator.
# MYAAS_CLUSTER_LOCK_HELD=1: the caller holds it already (several suites in one turn).
if [ "${MYAAS_CLUSTER_LOCK_HELD:-}" != 1 ]; then
  exec 9>/tmp/myaas-cluster.lock
  flock 9
fi

work=$(mktemp -d /tmp/myaas-test-install.XXXXXX)
started=0
cleanup() {
  local rc=$?
  # The test stops its Prometheus itself; this is for a test killed before it could.
  if [ -f "$work/prometheus.pid" ]; then
    kill "$(cat "$work/prometheus.pid")" 2>/dev/null || true
  fi
  if [ $started = 1 ]; then
    [ "${MYAAS_INSTALL_KEEP:-0}" = 1 ] || bash "$root/hack/dev-cluster.sh" down
  elif cluster_running; then
    # Whatever step failed, the e2e suite finds the operator deployed from config/.
    "$HELM" --kubeconfig "$KUBECONFIG_PATH" uninstall myaas -n myaas-system --wait >/dev/null 2>&1 || true
    deploy_operator >/dev/null || echo "could not deploy the operator from config/ again" >&2
  fi
  if [ "${MYAAS_INSTALL_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT

if ! cluster_running; then
  started=1
  bash "$root/hack/dev-cluster.sh" up
else
  # The demo's dump server, as this tree builds it.
  bash "$root/hack/dev-cluster.sh" load dumpserver
fi

# Two releases, as make release writes them, into the work directory.
for v in $V1 $V2; do
  DIST=$work/dist-$v bash "$root/hack/release.sh" "$v" "$REPO"
  import_into_nodes "$work/dist-$v/myaas-manager-$v.tar"
done

cd "$root"
MYAAS_INSTALL_WORK=$work MYAAS_INSTALL_V1=$V1 MYAAS_INSTALL_V2=$V2 MYAAS_INSTALL_REPO=$REPO \
  KUBECONFIG=$KUBECONFIG_PATH KUBECTL=$KUBECTL \
  go test -tags install ./test/install -count=1 -timeout 40m -v "$@" 2>&1 |
  tee "${MYAAS_INSTALL_LOG:-/tmp/myaas-test-install.log}" | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go:[0-9]+:'
