#!/usr/bin/env bash
# Smoke test of the local cluster (make test-cluster): bring it up from nothing, prove copy-on-write
# snapshots and clones with a real kubelet, CSI driver and snapshot controller, and NetworkPolicy
# enforcement, then tear it down and check that nothing is left.
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

# pod NAME CLAIM SCRIPT: a one-shot pod that mounts CLAIM at /data and runs SCRIPT.
pod() {
  k -n $NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
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

pvc() { # pvc NAME SIZE [SNAPSHOT]
  local source=""
  [ -z "${3:-}" ] || source="dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: $3}"
  k -n $NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: myaas-btrfs
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
  pvc clone 2Gi origin-snap
  pod clone-reader clone 'sleep 3600'
  running clone-reader
  local big_restore small_restore
  big_restore=$(elapsed "$t")
  used_after=$(btrfs_used)

  t=$(now)
  pvc small-clone 64Mi small-snap
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

  log "deleting everything through the API"
  k delete namespace $NS --timeout 180s >/dev/null
  local left
  left=$(k get volumesnapshotcontents,pv -o name 2>/dev/null | wc -l)
  [ "$left" = 0 ] || { k get volumesnapshotcontents,pv >&2; fail "$left snapshot contents or PVs are left after deleting the namespace"; }
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
  local found=0
  if grep -qE " (/var/lib/kubelet|/run/myaas-dev|$STATE)[ /]" /proc/self/mounts; then
    grep -E " (/var/lib/kubelet|/run/myaas-dev|$STATE)[ /]" /proc/self/mounts >&2; found=1
  fi
  if losetup -a | grep -q "$STATE"; then losetup -a >&2; found=1; fi
  if pgrep -f -- "$STATE/|/run/myaas-dev/" >/dev/null || pgrep -x kubelet >/dev/null; then
    pgrep -af -- "$STATE/|/run/myaas-dev/|kubelet" >&2; found=1
  fi
  if ip link show myaas0 >/dev/null 2>&1; then log "bridge myaas0 left"; found=1; fi
  if ip route show | grep -q '^blackhole 10.96.0.0/16'; then log "service route left"; found=1; fi
  if iptables-save 2>/dev/null | grep -qE 'KUBE-|CNI-'; then log "iptables rules left"; found=1; fi
  if ipset list -n 2>/dev/null | grep -qE '^(inet6:)?(KUBE-|kube-router)'; then log "ipsets left"; found=1; fi
  [ -e "$STATE" ] && { log "$STATE left"; found=1; }
  return $found
}

t0=$(now)
bash "$root/hack/dev-cluster.sh" up
log "bring-up took $(elapsed "$t0")s"
rc=0
smoke || rc=$?
[ $rc != 0 ] || netpol || rc=$?
bash "$root/hack/dev-cluster.sh" down
leftovers || { log "FAIL: the teardown left the above behind"; rc=1; }
if [ $rc = 0 ]; then log "PASS"; else log "FAIL"; fi
exit $rc
