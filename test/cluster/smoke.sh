#!/usr/bin/env bash
# Smoke test of the local cluster (make test-cluster): bring it up from nothing, prove copy-on-write
# snapshots and clones with a real kubelet, CSI driver and snapshot controller, and NetworkPolicy
# enforcement, then tear it down and check that nothing is left. Then the same with three nodes:
# a pod on each, node-local volumes that stay on their node through snapshot and clone, a shared
# volume written on one node and read on another, a node's kubelet stopped and started again.
# MYAAS_SMOKE_NODES picks the runs ("1 3" by default).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=hack/lib-cluster.sh
. "$root/hack/lib-cluster.sh"
NS=smoke
IMAGE=localhost/myaas/mariadb:10.11

log() { printf '%s [smoke] %s\n' "$(date +%T)" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

# pod NAME CLAIM SCRIPT [NODE]: a one-shot pod that mounts CLAIM at /data and runs SCRIPT (on NODE).
pod() {
  local pin=""
  [ -z "${4:-}" ] || pin="nodeSelector: {kubernetes.io/hostname: $4}"
  k -n $NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  $pin
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 999, runAsGroup: 999, fsGroup: 999}
  containers:
  - name: c
    image: $IMAGE
    imagePullPolicy: Never
    command: [sh, -ec, '$3']
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: $2}
EOF
}

pvc() { # pvc NAME SIZE [from=SNAPSHOT] [class=STORAGECLASS] [node=NODE the volume is made on]
  local source="" class=myaas-btrfs annotations="{}" arg
  for arg in "${@:3}"; do
    case $arg in
      from=*) source="dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: ${arg#from=}}" ;;
      class=*) class=${arg#class=} ;;
      node=*) annotations="{volume.kubernetes.io/selected-node: ${arg#node=}}" ;;
      *) fail "pvc $1: unknown argument $arg" ;;
    esac
  done
  k -n $NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1, annotations: $annotations}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: $class
  resources: {requests: {storage: $2}}
  $source
EOF
}

snapshot() { # snapshot NAME CLAIM
  k -n $NS apply -f - >/dev/null <<EOF
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: $1}
spec:
  volumeSnapshotClassName: myaas-btrfs
  source: {persistentVolumeClaimName: $2}
EOF
  k -n $NS wait --for jsonpath='{.status.readyToUse}'=true --timeout 120s "volumesnapshot/$1" >/dev/null ||
    fail "snapshot $1 never became readyToUse"
}

finished() { # finished POD: waits until the pod ends and fails the test unless it succeeded
  k -n $NS wait --for jsonpath='{.status.phase}'=Succeeded --timeout 300s "pod/$1" >/dev/null || {
    k -n $NS describe pod "$1" >&2 || true; k -n $NS logs "$1" >&2 || true; fail "pod $1 did not succeed"; }
}

running() { k -n $NS wait --for condition=Ready --timeout 120s "pod/$1" >/dev/null || fail "pod $1 never ran"; }

btrfs_used() { btrfs filesystem sync "$STATE/btrfs" >/dev/null; btrfs filesystem usage -b "$STATE/btrfs" | awk '/^ *Used:/ {print $2; exit}'; }

# delete_through_api: the test namespace goes, and with it every volume and snapshot it made.
delete_through_api() {
  log "deleting everything through the API"
  k delete namespace $NS --timeout 180s >/dev/null
  local left
  left=$(k get volumesnapshotcontents,pv -o name 2>/dev/null | wc -l)
  [ "$left" = 0 ] || { k get volumesnapshotcontents,pv >&2; fail "$left snapshot contents or PVs are left after deleting the namespace"; }
}

smoke() {
  k create namespace $NS >/dev/null

  log "writing 1 GiB and its checksum into a btrfs volume"
  pvc origin 2Gi
  pod writer origin 'dd if=/dev/urandom of=/data/big bs=1M count=1024 status=none; sha256sum /data/big > /data/big.sha256; echo origin > /data/who'
  finished writer
  pvc small 64Mi
  pod small-writer small 'dd if=/dev/urandom of=/data/big bs=1M count=1 status=none; sha256sum /data/big > /data/big.sha256'
  finished small-writer

  log "snapshotting both volumes"
  snapshot origin-snap origin
  snapshot small-snap small

  local used_before used_after t
  used_before=$(btrfs_used)
  log "restoring the 1 GiB volume from its snapshot"
  t=$(now)
  pvc clone 2Gi from=origin-snap
  pod clone-reader clone 'sleep 3600'
  running clone-reader
  local big_restore small_restore
  big_restore=$(elapsed "$t")
  used_after=$(btrfs_used)

  t=$(now)
  pvc small-clone 64Mi from=small-snap
  pod small-reader small-clone 'sleep 3600'
  running small-reader
  small_restore=$(elapsed "$t")
  log "apply of a PVC from a snapshot to pod Running: 1 GiB ${big_restore}s, 1 MiB ${small_restore}s"

  k -n $NS exec clone-reader -- sh -ec 'cd /data && sha256sum -c big.sha256 >/dev/null' ||
    fail "the clone's 1 GiB file does not match the checksum written in the origin"
  local grew=$((used_after - used_before))
  log "btrfs used space grew by $((grew / 1024 / 1024)) MiB for the 1 GiB clone"
  [ $grew -lt $((100 * 1024 * 1024)) ] || fail "cloning 1 GiB used $grew bytes: the clone copied the data"
  awk -v b="$big_restore" -v s="$small_restore" 'BEGIN {exit !(b < s * 3 + 5)}' ||
    fail "restoring 1 GiB took ${big_restore}s against ${small_restore}s for 1 MiB: not copy-on-write"

  log "writes in the clone do not reach the origin"
  k -n $NS exec clone-reader -- sh -ec 'echo clone > /data/who; dd if=/dev/zero of=/data/big bs=1M count=1 conv=notrunc status=none'
  pod origin-check origin 'grep -qx origin /data/who; sha256sum -c /data/big.sha256'
  finished origin-check

  delete_through_api
  log "snapshot and clone: OK"
}

# netpol: a NetworkPolicy is enforced. A server lets in only pods of its own namespace: a client
# there connects, one in another namespace does not, and the node itself still does.
netpol() {
  k create namespace np-server >/dev/null
  k create namespace np-other >/dev/null
  k -n np-server apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: localhost/myaas/dumpserver:dev
    imagePullPolicy: Never
    command: [/dumpserver, serve, --rows=10, --seed=1, --rate=0]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: same-namespace-only}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {}}]
    ports: [{protocol: TCP, port: 8080}]
EOF
  k -n np-server wait --for condition=Ready --timeout 120s pod/server >/dev/null || fail "the NetworkPolicy test server never ran"
  local ip ns phase
  ip=$(k -n np-server get pod server -o jsonpath='{.status.podIP}')
  # A new pod is let in once the enforcer has seen its address: the client tries for 15 s.
  for ns in np-server np-other; do
    k -n $ns run client --image $IMAGE --image-pull-policy Never --restart Never --command -- bash -c \
      "for i in \$(seq 15); do timeout 3 bash -c 'exec 3<>/dev/tcp/$ip/8080' && exit 0; sleep 1; done; exit 1" >/dev/null
  done
  for ns in np-server np-other; do
    for _ in $(seq 1 120); do
      phase=$(k -n $ns get pod client -o jsonpath='{.status.phase}')
      [ "$phase" = Succeeded ] || [ "$phase" = Failed ] && break
      sleep 1
    done
  done
  phase=$(k -n np-server get pod client -o jsonpath='{.status.phase}')
  [ "$phase" = Succeeded ] || fail "a pod in the server's namespace could not connect (phase $phase)"
  phase=$(k -n np-other get pod client -o jsonpath='{.status.phase}')
  [ "$phase" = Failed ] || fail "a pod in another namespace connected through the NetworkPolicy (phase $phase)"
  timeout 5 bash -c "exec 3<>/dev/tcp/$ip/8080" || fail "the node cannot reach its pod through the NetworkPolicy"
  k delete namespace np-server np-other --timeout 120s >/dev/null
  log "NetworkPolicy enforced: same namespace let in, other namespace kept out, node let in"
}

leftovers() {
  local found=0 mounts=" (/var/lib/kubelet|/var/lib/myaas-kubelet|/run/myaas-dev|$STATE)[ /]"
  if grep -qE "$mounts" /proc/self/mounts; then grep -E "$mounts" /proc/self/mounts >&2; found=1; fi
  if losetup -a | grep "$STATE" >/dev/null; then losetup -a >&2; found=1; fi
  if pgrep -f -- "$STATE/|/run/myaas-dev/" >/dev/null || pgrep -x kubelet >/dev/null; then
    pgrep -af -- "$STATE/|/run/myaas-dev/|kubelet" >&2; found=1
  fi
  if ip -o link show type bridge | grep -E ': myaas[0-9]+:' >/dev/null; then
    ip -o link show type bridge | grep -E ': myaas[0-9]+:' >&2; log "bridges left"; found=1
  fi
  if compgen -G "/sys/fs/cgroup/*/myaas-node-*" >/dev/null || compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null; then
    log "cgroups left: $(echo /sys/fs/cgroup/*/myaas-node-* /sys/fs/cgroup/*/kubepods)"; found=1
  fi
  if compgen -G "/var/lib/cni/networks/myaas-dev*" >/dev/null; then log "CNI address leases left"; found=1; fi
  [ -e /var/lib/myaas-kubelet ] && { log "/var/lib/myaas-kubelet left"; found=1; }
  if [ -n "$(find /var/log/containers -maxdepth 1 -type l -lname '/var/lib/myaas-kubelet/*' 2>/dev/null)" ]; then
    log "container log links into /var/lib/myaas-kubelet left in /var/log/containers"; found=1
  fi
  if ip route show | grep '^blackhole 10.96.0.0/16' >/dev/null; then log "service route left"; found=1; fi
  if iptables-save 2>/dev/null | grep -E 'KUBE-|CNI-' >/dev/null; then log "iptables rules left"; found=1; fi
  if ipset list -n 2>/dev/null | grep -E '^(inet6:)?(KUBE-|kube-router)' >/dev/null; then log "ipsets left"; found=1; fi
  [ -e "$STATE" ] && { log "$STATE left"; found=1; }
  return $found
}

# on_node POD NODE: fails the test unless POD ran on NODE.
on_node() {
  local where
  where=$(k -n $NS get pod "$1" -o jsonpath='{.spec.nodeName}')
  [ "$where" = "$2" ] || fail "pod $1 ran on ${where:-no node}, not on $2"
}

bound_pv() { # bound_pv CLAIM: the PV bound to CLAIM, once there is one
  k -n $NS wait --for jsonpath='{.status.phase}'=Bound --timeout 120s "pvc/$1" >/dev/null || {
    k -n $NS describe pvc "$1" >&2 || true; fail "claim $1 was never bound"; }
  k -n $NS get pvc "$1" -o jsonpath='{.spec.volumeName}'
}

pv_nodes() { k get pv "$1" -o jsonpath='{.spec.nodeAffinity.required.nodeSelectorTerms[*].matchExpressions[*].values[*]}'; }

# in_pool DIR TEXT: whether a file in the btrfs pool mounted at DIR holds the line TEXT.
in_pool() { btrfs filesystem sync "$1" >/dev/null; grep -rqxF -- "$2" "$1"; }

# three_nodes: three nodes as a user sees them, with node-local and shared volumes.
three_nodes() {
  local nodes=("$(node_name 1)" "$(node_name 2)" "$(node_name 3)") i node ip ready pv addresses=()
  k create namespace $NS >/dev/null

  log "every node Ready, with the CSI driver registered"
  for node in "${nodes[@]}"; do
    ready=$(k get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
    [ "$ready" = True ] || fail "node $node is not Ready ($ready)"
    k get csinode "$node" -o jsonpath='{.spec.drivers[*].name}' | grep -qwF btrfs.csi.myaas.io ||
      fail "the CSI driver is not registered on node $node"
  done

  log "a pod on each node, with an address of that node's subnet, reached from another node"
  for i in 1 2 3; do
    k -n $NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: server-$i}
spec:
  nodeSelector: {kubernetes.io/hostname: ${nodes[i - 1]}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: localhost/myaas/dumpserver:dev
    imagePullPolicy: Never
    command: [/dumpserver, serve, --rows=10, --seed=1, --rate=0]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
EOF
  done
  for i in 1 2 3; do
    running server-$i
    on_node server-$i "${nodes[i - 1]}"
    ip=$(k -n $NS get pod server-$i -o jsonpath='{.status.podIP}')
    [[ $ip == 10.244.$((i - 1)).* ]] || fail "pod server-$i on ${nodes[i - 1]} has address $ip, outside 10.244.$((i - 1)).0/24"
    addresses+=("$ip")
  done
  k -n $NS run reach-all --image $IMAGE --image-pull-policy Never --restart Never \
    --overrides "{\"spec\": {\"nodeSelector\": {\"kubernetes.io/hostname\": \"${nodes[2]}\"}}}" --command -- bash -ec \
    "for ip in ${addresses[*]}; do timeout 5 bash -c \"exec 3<>/dev/tcp/\$ip/8080\"; done" >/dev/null
  finished reach-all

  log "node-local: a volume made on ${nodes[1]}, snapshotted and cloned, stays on ${nodes[1]}"
  pvc local 64Mi node="${nodes[1]}"
  pv=$(bound_pv local)
  [ "$(pv_nodes "$pv")" = "${nodes[1]}" ] || fail "volume $pv has node affinity '$(pv_nodes "$pv")', not ${nodes[1]}"
  pod local-writer local 'echo written-on-node-2 > /data/who'
  finished local-writer
  on_node local-writer "${nodes[1]}"
  in_pool "$STATE/${nodes[1]}/btrfs" written-on-node-2 || fail "the volume's data is not in the pool of ${nodes[1]}"
  ! in_pool "$STATE/btrfs" written-on-node-2 || fail "the volume's data is in the pool of ${nodes[0]}"
  snapshot local-snap local
  pvc local-clone 64Mi from=local-snap
  pv=$(bound_pv local-clone)
  [ "$(pv_nodes "$pv")" = "${nodes[1]}" ] ||
    fail "the clone $pv has node affinity '$(pv_nodes "$pv")', not ${nodes[1]} where its snapshot is"
  pod local-reader local-clone 'grep -qx written-on-node-2 /data/who'
  finished local-reader
  on_node local-reader "${nodes[1]}"

  log "shared: a volume without node affinity, written on ${nodes[1]} and read on ${nodes[2]}"
  pvc shared 64Mi class=myaas-btrfs-shared
  pv=$(bound_pv shared)
  [ -z "$(k get pv "$pv" -o jsonpath='{.spec.nodeAffinity}')" ] ||
    fail "the shared volume $pv has node affinity: $(k get pv "$pv" -o jsonpath='{.spec.nodeAffinity}')"
  pod shared-writer shared 'echo written-on-node-2 > /data/who' "${nodes[1]}"
  finished shared-writer
  pod shared-reader shared 'grep -qx written-on-node-2 /data/who' "${nodes[2]}"
  finished shared-reader

  log "a stopped kubelet: its node turns NotReady and its pod serves on; started again, the node is Ready"
  local t
  t=$(now)
  bash "$root/hack/dev-cluster.sh" node-stop "${nodes[2]}"
  k wait --for 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'=Unknown --timeout 60s "node/${nodes[2]}" >/dev/null ||
    fail "node ${nodes[2]} is still Ready 60 s after its kubelet stopped"
  log "node ${nodes[2]} NotReady $(elapsed "$t")s after its kubelet stopped"
  timeout 5 bash -c "exec 3<>/dev/tcp/${addresses[2]}/8080" || fail "the pod on the stopped node no longer serves"
  bash "$root/hack/dev-cluster.sh" node-start "${nodes[2]}"

  delete_through_api
  log "three nodes, node-local and shared volumes: OK"
}

# run NODES: a cluster of NODES nodes up from nothing, its checks, and a teardown that leaves nothing.
run() {
  local t0 rc=0
  t0=$(now)
  MYAAS_NODES=$1 bash "$root/hack/dev-cluster.sh" up
  log "bring-up of $1 node(s) took $(elapsed "$t0")s"
  # In a subshell: a failed check (fail exits) still gets the teardown, and set -e holds in it,
  # which it would not in a function called on the left of ||.
  set +e
  (
    set -e
    if [ "$1" = 1 ]; then smoke; netpol; else three_nodes; fi
  )
  rc=$?
  set -e
  bash "$root/hack/dev-cluster.sh" down
  leftovers || { log "FAIL: the teardown left the above behind"; rc=1; }
  return $rc
}

rc=0
for nodes in ${MYAAS_SMOKE_NODES:-1 3}; do
  case $nodes in 1 | 3) ;; *) fail "MYAAS_SMOKE_NODES: runs of 1 and 3 nodes only, not $nodes" ;; esac
  run "$nodes" || { rc=$?; break; }
done
if [ $rc = 0 ]; then log "PASS"; else log "FAIL"; fi
exit $rc
