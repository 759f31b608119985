# shellcheck shell=bash
# Shared by the scripts that make or use the local cluster (sourced, not run): where its state
# lives, the kubectl that talks to it, and its configuration files (hack/cluster/).
root=${root:?}
STATE=${MYAAS_DEV_STATE:-/var/lib/myaas-dev}
KUBECONFIG_PATH=$STATE/kubeconfig
KUBECTL=$root/bin/k8s/kubectl
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
# The cluster's own containerd, which holds its images (used by the scripts that source this).
# shellcheck disable=SC2034
CONTAINERD_SOCKET=/run/myaas-dev/containerd.sock
# How many nodes the running cluster has (hack/dev-cluster.sh up writes it).
NODE_COUNT_FILE=$STATE/nodes

running_nodes() { cat "$NODE_COUNT_FILE" 2>/dev/null || echo 1; }

# Node 1 is the machine itself, as on a single-node cluster; the others get names of their own.
node_name() { if [ "$1" = 1 ]; then hostname; else echo "myaas-node-$1"; fi; }

# node_containerd_socket N: the containerd of node N, which holds that node's images.
node_containerd_socket() {
  if [ "$1" = 1 ]; then echo "$CONTAINERD_SOCKET"; else echo "/run/myaas-dev/$(node_name "$1")/containerd.sock"; fi
}

# import_into_nodes TAR: into the containerd of every node, so a pod finds its image wherever it lands.
import_into_nodes() {
  local i
  for i in $(seq 1 "$(running_nodes)"); do
    ctr --address "$(node_containerd_socket "$i")" -n k8s.io images import "$1" >/dev/null ||
      { echo "importing $1 into node $(node_name "$i") failed" >&2; return 1; }
  done
}

# render NAME KEY=VALUE...: hack/cluster/NAME with every ${KEY} replaced by VALUE. A placeholder
# left without a value is an error, so a template and the script filling it cannot drift apart.
render() {
  local text pair
  [ -f "$root/hack/cluster/$1" ] || { echo "hack/cluster/$1: no such template" >&2; return 1; }
  # read -d '' stops only at a NUL, so the text keeps its final newline (unlike $(<file)).
  IFS= read -rd '' text <"$root/hack/cluster/$1" || true
  for pair in "${@:2}"; do
    text=${text//"\${${pair%%=*}}"/"${pair#*=}"}
  done
  if [[ $text =~ \$\{[A-Za-z_][A-Za-z0-9_]*\} ]]; then
    echo "hack/cluster/$1: no value for ${BASH_REMATCH[0]}" >&2
    return 1
  fi
  printf '%s' "$text"
}

cluster_running() { [ -f "$KUBECONFIG_PATH" ] && [ -x "$KUBECTL" ] && k get --raw /readyz >/dev/null 2>&1; }

# deploy_operator installs the CRDs and the manager from config/ (the manifests users apply) and
# waits for the manager to run the image just loaded.
deploy_operator() {
  local existed=0
  k -n myaas-system get deployment/myaas-controller-manager >/dev/null 2>&1 && existed=1
  k kustomize "$root/config/default" | k apply --server-side --force-conflicts -f - >/dev/null
  # The image tag does not change between local builds: restart to pick the new one up.
  [ $existed = 0 ] || k -n myaas-system rollout restart deployment/myaas-controller-manager >/dev/null
  k -n myaas-system rollout status deployment/myaas-controller-manager --timeout 180s
}
