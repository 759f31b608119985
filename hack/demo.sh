#!/usr/bin/env bash
# make demo: the local cluster, the operator deployed from config/, a template imported from a
# generated dump, one instance cloned from it, and a real query through its Secret. Safe to re-run.
# ENGINE=postgresql (make demo ENGINE=postgresql) runs it on PostgreSQL, in a namespace of its own.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib-cluster.sh
. "$root/hack/lib-cluster.sh"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

engine=${ENGINE:-mariadb}
case $engine in
  mariadb) samples=demo ns=myaas-demo ;;
  postgresql) samples=demo-postgresql ns=myaas-demo-postgresql ;;
  *) echo "ENGINE=$engine: valid engines are mariadb, postgresql" >&2; exit 2 ;;
esac

if cluster_running; then
  step "local cluster already running: reloading the operator image"
  bash "$root/hack/dev-cluster.sh" load manager dumpserver "$engine"
else
  step "starting the local cluster (first run builds Kubernetes from source: ~15 min)"
  bash "$root/hack/dev-cluster.sh" up
fi

step "deploying the operator (config/default)"
deploy_operator

step "applying the demo template and instance (config/samples/$samples)"
k apply -k "$root/config/samples/$samples"

step "waiting for template revision 1 (import, then snapshot)"
until [ "$(k -n "$ns" get databasetemplate shop -o jsonpath='{.status.latestRevision}')" -ge 1 ] 2>/dev/null; do
  k -n "$ns" get databasetemplate shop --no-headers 2>/dev/null | sed 's/^/   /' || true
  sleep 3
done
k -n "$ns" get databasetemplate shop

step "waiting for the instance: kubectl wait --for=condition=Ready databaseinstance/shop-demo"
start=$(date +%s.%N)
k -n "$ns" wait --for=condition=Ready --timeout=300s databaseinstance/shop-demo
k -n "$ns" get databaseinstance shop-demo

secret=$(k -n "$ns" get databaseinstance shop-demo -o jsonpath='{.status.secretName}')
field() { k -n "$ns" get secret "$secret" -o "jsonpath={.data.$1}" | base64 -d; }
step "connection details (secret/$secret)"
for f in host port username database uri; do printf '   %-9s %s\n' "$f" "$(field "$f")"; done

step "a real query with the $engine client, inside the cluster"
k -n "$ns" delete pod demo-client --ignore-not-found >/dev/null
# The dump's tables are in database shop; PostgreSQL's dump keeps them in its schema shop.
query='SELECT COUNT(*) AS customers, (SELECT COUNT(*) FROM shop.orders) AS orders, MIN(email) AS masked_email FROM shop.customers'
case $engine in
  mariadb)
    k -n "$ns" run demo-client --rm -i --restart=Never --image=localhost/myaas/mariadb:10.11 \
      --image-pull-policy=Never --env="MYSQL_PWD=$(field password)" --command -- \
      mariadb -h "$(field host)" -P "$(field port)" -u "$(field username)" "$(field database)" -e "$query"
    ;;
  postgresql)
    k -n "$ns" run demo-client --rm -i --restart=Never --image=localhost/myaas/postgres:15 \
      --image-pull-policy=Never --env="PGPASSWORD=$(field password)" --command -- \
      psql -h "$(field host)" -p "$(field port)" -U "$(field username)" -d "$(field database)" -c "$query"
    ;;
esac
printf '\nDone in %ss since the instance was applied. Try: kubectl --kubeconfig %s -n %s get databasetemplates,databaseinstances\n' \
  "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')" "$KUBECONFIG_PATH" "$ns"
