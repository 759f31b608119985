#!/usr/bin/env bash
# make bench-provision: provisioning figures on the local cluster (started if needed, then left
# running). Needs root (it reads the cluster's btrfs store) and about 20 GB of free disk.
# MYAAS_NODES (make's NODES) is the node count the figures are taken on: a running cluster of
# another size is replaced by one of that size.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib-cluster.sh
. "$root/hack/lib-cluster.sh"
bash "$root/hack/install-mariadb.sh" >/dev/null
nodes=${MYAAS_NODES:-1}
# One user of the local cluster at a time: the benchmark redeploys the operator.
exec 9>/tmp/myaas-cluster.lock
flock 9
if cluster_running && [ "$(running_nodes)" = "$nodes" ]; then
  bash "$root/hack/dev-cluster.sh" load manager dumpserver s3server postgresql
else
  # up removes whatever runs first.
  MYAAS_NODES=$nodes bash "$root/hack/dev-cluster.sh" up
fi
deploy_operator
cd "$root"
go run ./hack/bench-provision --kubeconfig "$KUBECONFIG_PATH" "$@"
