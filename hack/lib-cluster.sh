# shellcheck shell=bash
# Shared by the scripts that use the local cluster (sourced, not run).
root=${root:?}
KUBECONFIG_PATH=${MYAAS_DEV_STATE:-/var/lib/myaas-dev}/kubeconfig
KUBECTL=$root/bin/k8s/kubectl
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

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
