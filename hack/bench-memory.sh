#!/usr/bin/env bash
# make bench-memory: the manager's memory on the local cluster (started if needed, then left
# running) with and without 5,000 unrelated 10 KB Secrets in the cluster. The manager caches only
# the objects it created, so the Secrets should cost it nothing: the goal is within 10% of the
# figure without them. For comparison, the same manager caching every object of the kinds it
# watches (--cache-unlabelled-objects, what it did before the selection) with the Secrets.
# Memory is read from the manager's own metrics after its caches have synced: resident set size
# (process_resident_memory_bytes) and live heap (go_memstats_heap_inuse_bytes), each the median
# of five samples. The Secrets go into a scratch namespace, deleted at the end.
#   SECRETS (default 5000), SECRET_BYTES (default 10240)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib-cluster.sh
. "$root/hack/lib-cluster.sh"
SECRETS=${SECRETS:-5000}
SECRET_BYTES=${SECRET_BYTES:-10240}
NS=myaas-system
DEPLOY=deployment/myaas-controller-manager
SCRATCH=myaas-bench-memory
READER=myaas-bench-memory-reader

# One user of the local cluster at a time: the benchmark redeploys the operator.
# MYAAS_CLUSTER_LOCK_HELD=1: the caller holds it already (several suites in one turn).
if [ "${MYAAS_CLUSTER_LOCK_HELD:-}" != 1 ]; then
  exec 9>/tmp/myaas-cluster.lock
  flock 9
fi
if cluster_running; then
  bash "$root/hack/dev-cluster.sh" load manager
else
  bash "$root/hack/dev-cluster.sh" up
fi
deploy_operator >/dev/null

work=$(mktemp -d /tmp/myaas-bench-memory.XXXXXX)
cleanup() {
  local rc=$?
  k delete namespace "$SCRATCH" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  k -n "$NS" delete serviceaccount "$READER" --ignore-not-found >/dev/null 2>&1 || true
  k delete clusterrolebinding "$READER" --ignore-not-found >/dev/null 2>&1 || true
  # Back to the manager config/ deploys.
  deploy_operator >/dev/null 2>&1 || echo "could not deploy the operator from config/ again" >&2
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

# The metrics endpoint answers only tokens allowed to get /metrics.
k -n "$NS" create serviceaccount "$READER" >/dev/null
k create clusterrolebinding "$READER" --clusterrole=myaas-metrics-reader --serviceaccount="$NS:$READER" >/dev/null
token=$(k -n "$NS" create token "$READER" --duration=1h)

# manager [ARGS...]: restart the manager with config/'s arguments plus ARGS, and wait until its
# controllers have started (their caches synced) and a little longer for the heap to settle.
manager() {
  local args='["manager", "--leader-elect", "--health-probe-bind-address=:8081"'
  for a in "$@"; do args+=", \"$a\""; done
  args+="]"
  # A limit the unfiltered cache fits in, the same for every run.
  k -n "$NS" patch "$DEPLOY" --type=json -p "[
    {\"op\": \"replace\", \"path\": \"/spec/template/spec/containers/0/args\", \"value\": $args},
    {\"op\": \"replace\", \"path\": \"/spec/template/spec/containers/0/resources/limits/memory\", \"value\": \"1Gi\"}]" >/dev/null
  k -n "$NS" rollout restart "$DEPLOY" >/dev/null
  k -n "$NS" rollout status "$DEPLOY" --timeout 300s >/dev/null
  local pod
  pod=$(k -n "$NS" get pods -l control-plane=controller-manager -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null)] | sort_by(.metadata.creationTimestamp) | last | .metadata.name')
  for _ in $(seq 300); do
    [ "$(k -n "$NS" logs "$pod" | grep -c '"Starting workers"')" -ge 2 ] && break
    sleep 1
  done
  k -n "$NS" logs "$pod" | grep '"Starting workers"' >/dev/null || { echo "the manager did not start its controllers" >&2; exit 1; }
  ip=$(k -n "$NS" get pod "$pod" -o jsonpath='{.status.podIP}')
  sleep 30
}

# metric NAME: the manager's current value of NAME.
metric() {
  curl -sfk -H "Authorization: Bearer $token" "https://$ip:8443/metrics" | awk -v m="$1" '$1 == m { printf "%.0f\n", $2 }'
}

# measure: "RSS HEAP" in MiB, each the median of five samples two seconds apart.
measure() {
  local rss=() heap=() i
  for i in 1 2 3 4 5; do
    rss+=("$(metric process_resident_memory_bytes)")
    heap+=("$(metric go_memstats_heap_inuse_bytes)")
    sleep 2
  done
  printf '%s\n' "${rss[@]}" | sort -n | sed -n 3p | awk '{ printf "%.1f ", $1 / 1048576 }'
  printf '%s\n' "${heap[@]}" | sort -n | sed -n 3p | awk '{ printf "%.1f\n", $1 / 1048576 }'
}

echo "manager, no unrelated Secrets: starting"
manager
read -r base_rss base_heap < <(measure)

echo "creating $SECRETS Secrets of $SECRET_BYTES bytes in namespace $SCRATCH"
k create namespace "$SCRATCH" >/dev/null
for chunk in $(seq 0 7); do
  for i in $(seq "$chunk" 8 $((SECRETS - 1))); do
    printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: unrelated-%05d, namespace: %s}\ndata: {blob: %s}\n---\n' \
      "$i" "$SCRATCH" "$(head -c "$SECRET_BYTES" /dev/urandom | base64 -w0)"
  done >"$work/secrets-$chunk.yaml"
done
for chunk in $(seq 0 7); do
  k create -f "$work/secrets-$chunk.yaml" >/dev/null &
done
wait
count=$(k -n "$SCRATCH" get secrets -o name | grep -c unrelated-)
[ "$count" = "$SECRETS" ] || { echo "created $count Secrets, want $SECRETS" >&2; exit 1; }

echo "manager, with the Secrets: starting"
manager
read -r with_rss with_heap < <(measure)
echo "manager caching every object (--cache-unlabelled-objects), with the Secrets: starting"
manager --cache-unlabelled-objects
read -r all_rss all_heap < <(measure)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "manager memory, MiB                         resident  heap in use"
printf '%-42s %8s %12s\n' "no unrelated Secrets" "$base_rss" "$base_heap"
printf '%-42s %8s %12s\n' "$SECRETS x $SECRET_BYTES B Secrets" "$with_rss" "$with_heap"
printf '%-42s %8s %12s\n' "  ratio (goal: at most 1.10)" "$(ratio "$with_rss" "$base_rss")" "$(ratio "$with_heap" "$base_heap")"
printf '%-42s %8s %12s\n' "same Secrets, unfiltered cache" "$all_rss" "$all_heap"
printf '%-42s %8s %12s\n' "  ratio to no Secrets" "$(ratio "$all_rss" "$base_rss")" "$(ratio "$all_heap" "$base_heap")"
result=$(ratio "$with_rss" "$base_rss")
if awk -v r="$result" 'BEGIN { exit !(r > 1.10) }'; then
  echo "goal missed: the Secrets cost the manager more than 10% of its memory" >&2
  exit 1
fi
