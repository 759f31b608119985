#!/usr/bin/env bash
# A Kubernetes cluster on this machine, built only from Debian packages and Go modules, with
# copy-on-write volume snapshots (btrfs on a loop file, served by test/csi-btrfs).
#
#   hack/dev-cluster.sh up              remove leftovers, build what is missing, start everything, wait
#   hack/dev-cluster.sh down            stop everything by pid and remove all it created
#   hack/dev-cluster.sh load            rebuild the project's images and import them into every node
#   hack/dev-cluster.sh netpol          start the NetworkPolicy enforcer if it does not run (a cluster up from before it)
#   hack/dev-cluster.sh status          print what runs
#   hack/dev-cluster.sh node-stop NAME  stop one node's kubelet: its containers keep running, as when
#                                       a node drops off the network, and the node turns NotReady
#   hack/dev-cluster.sh node-start NAME start that kubelet again
#
# NODES (or MYAAS_NODES) sets how many nodes `up` starts, 1 by default. Node 1 is the machine
# itself (its hostname, /var/lib/kubelet). Nodes 2..N (myaas-node-2, ...) each have their own
# kubelet, containerd, pod subnet, cgroup root and CSI node plugin with its own btrfs pool, as
# separate machines would; they share the host's network namespace, the control plane, one
# kube-proxy and CoreDNS. kube-router enforces NetworkPolicies for node 1's pods only.
#
# Every component runs as a host process; logs go to $STATE/logs/<component>.log.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib-cluster.sh
. "$root/hack/lib-cluster.sh"
BTRFS_SIZE=${MYAAS_DEV_BTRFS_SIZE:-40G}
K8S=$root/bin/k8s
TOOLS=$root/bin/tools
DRIVER=btrfs.csi.myaas.io
# Node 1's driver process: the sidecars (provisioner, snapshotter) talk to it.
CONTROLLER_SOCKET=/var/lib/kubelet/plugins/$DRIVER/csi.sock
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
# The kubelet root-dirs of nodes 2..N, one directory each.
KUBELET_DIRS=/var/lib/myaas-kubelet
# With several nodes, the pool every node sees (StorageClass myaas-btrfs-shared).
SHARED_POOL=$STATE/shared
MAX_NODES=20
# Per-namespace files that make the CSI driver fail or stall snapshots (test/csi-btrfs/driver/faults.go).
CSI_FAULT_DIR=/run/myaas-dev/csi-faults

log() { printf '%s [dev-cluster] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

host_ip() {
  ip -4 -o addr show scope global | awk '$2 !~ /^myaas[0-9]+$/ {split($4, a, "/"); print a[1]; exit}'
}

# node_vars N: where node N keeps everything, in globals. Node 1 keeps the names and places of the
# single-node cluster; the others get their own of each, so that no two nodes share a runtime, an
# IPAM state, a cgroup tree, a plugin registry or a pool. The rules, chains and links this cluster
# creates carry these names, so cleanup can find them even when a previous run died without its
# state dir.
node_vars() {
  local i=$1
  NODE=$(node_name "$i")
  NODE_CONTAINERD_SOCKET=$(node_containerd_socket "$i")
  BRIDGE=myaas$((i - 1))
  POD_CIDR=10.244.$((i - 1)).0/24
  # Ports of their own: they all listen on the host's addresses.
  KUBELET_PORT=$((10250 + 100 * (i - 1)))
  KUBELET_HEALTHZ_PORT=$((10248 + 100 * (i - 1)))
  if [ "$i" = 1 ]; then
    NODE_STATE=$STATE NODE_RUN=/run/myaas-dev KUBELET_DIR=/var/lib/kubelet CNI_NETWORK=myaas-dev
    CGROUP_ROOT=/ POD_LOGS_DIR=/var/log/pods NODE_SUFFIX=
  else
    NODE_STATE=$STATE/$NODE NODE_RUN=/run/myaas-dev/$NODE KUBELET_DIR=$KUBELET_DIRS/$NODE CNI_NETWORK=myaas-dev-$i
    CGROUP_ROOT=/$NODE POD_LOGS_DIR=$KUBELET_DIR/pod-logs NODE_SUFFIX=-$NODE
  fi
  CSI_SOCKET=$KUBELET_DIR/plugins/$DRIVER/csi.sock
}

node_indexes() { seq 1 "$(running_nodes)"; }

# node_index NAME: the number of the running cluster's node NAME.
node_index() {
  local i names=()
  for i in $(node_indexes); do
    [ "$(node_name "$i")" != "$1" ] || { echo "$i"; return; }
    names+=("$(node_name "$i")")
  done
  die "no node named '${1:-}' in the running cluster (its nodes: ${names[*]})"
}

# cgroup_mounts: every cgroup hierarchy of the machine (v1: one per controller; v2: one).
cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts; }

# make_cgroup_root NAME: kubelet refuses a cgroupRoot missing from any hierarchy.
make_cgroup_root() {
  local mp
  for mp in $(cgroup_mounts); do
    mkdir -p "$mp/$1"
    # A v1 cpuset starts without CPUs or memory nodes, and then no task may join it.
    if [ -f "$mp/cpuset.cpus" ] && [ -z "$(cat "$mp/$1/cpuset.cpus")" ]; then
      cat "$mp/cpuset.cpus" >"$mp/$1/cpuset.cpus"
      cat "$mp/cpuset.mems" >"$mp/$1/cpuset.mems"
    fi
  done
}

# ---------------------------------------------------------------------------------------------
# Cleanup: safe to run any time, whatever an earlier run left behind.

kill_pidfiles() {
  local f pid
  for f in "$STATE"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 1
  for f in "$STATE"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  # Processes whose pid file was lost: every component names the state dir on its command line.
  pkill -KILL -f -- "$STATE/" 2>/dev/null || true
}

kill_pod_processes() {
  # Containers outlive containerd's shims; with the cgroupfs driver they all sit under kubepods:
  # node 1's at the top of each hierarchy, the other nodes' under their own cgroup root.
  local procs=() mp d
  pkill -KILL -f "containerd-shim-runc-v2 -namespace k8s.io .*-address /run/myaas-dev/" 2>/dev/null || true
  mapfile -t procs < <(for mp in $(cgroup_mounts); do
    find "$mp/kubepods" "$mp"/myaas-node-*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u)
  [ ${#procs[@]} -eq 0 ] || kill -KILL "${procs[@]}" 2>/dev/null || true
  sleep 0.5
  for mp in $(cgroup_mounts); do
    for d in "$mp/kubepods" "$mp"/myaas-node-*; do
      [ -d "$d" ] || continue
      find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
}

unmount_under() {
  # Deepest first, lazily, so busy leftovers cannot block the teardown.
  local prefix m
  for prefix in "$@"; do
    awk -v p="$prefix" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/self/mounts | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || umount -f "$m" 2>/dev/null || true; done
  done
}

remove_network() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns del "$ns" 2>/dev/null || true; done
  local bridge
  for bridge in $(ip -o link show type bridge | awk -F': ' '$2 ~ /^myaas[0-9]+$/ {print $2}'); do
    ip link del "$bridge" 2>/dev/null || true
  done
  ip route del blackhole "$SERVICE_CIDR" 2>/dev/null || true
  if [ -x "$K8S/kube-proxy" ]; then "$K8S/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  local t
  for t in iptables ip6tables; do
    command -v "$t-save" >/dev/null || continue
    # grep reads all of it: with pipefail, grep -q's early exit fails the save (SIGPIPE) and the
    # rules would be left behind.
    if "$t-save" 2>/dev/null | grep -E 'KUBE-|CNI-' >/dev/null; then
      "$t-save" | grep -vE 'KUBE-|CNI-' | "$t-restore" || log "could not clean $t rules"
    fi
  done
  # kube-router's chains (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*) went with the KUBE- rules
  # above; its ipsets can go once no rule refers to them. (Its --cleanup-config is not used: it
  # flushes every IPVS service of the machine and touches routes it did not make here.)
  if command -v ipset >/dev/null; then
    # No set of its (a machine that never ran it) is the common case, not a failure.
    { ipset list -n 2>/dev/null || true; } | { grep -E '^(inet6:)?(KUBE-|kube-router)' || true; } | while read -r t; do
      ipset destroy "$t" 2>/dev/null || log "could not destroy ipset $t"
    done
  fi
  rm -rf /var/lib/cni/networks/myaas-dev /var/lib/cni/networks/myaas-dev-* /var/lib/cni/results
}

cleanup() {
  kill_pidfiles
  kill_pod_processes
  unmount_under /var/lib/kubelet "$KUBELET_DIRS" /run/myaas-dev /run/netns "$STATE"
  local dev
  # Every pool image lives in the state dir: each node's and the shared one.
  for dev in $(losetup -a 2>/dev/null | awk -F: -v f="$STATE/" 'index($0, f) {print $1}'); do
    losetup -d "$dev" 2>/dev/null || true
  done
  remove_network
  # Every kubelet links its containers' logs into /var/log/containers; the links of nodes 2..N
  # point into their root-dirs, which go now.
  [ ! -d /var/log/containers ] || find /var/log/containers -maxdepth 1 -type l -lname "$KUBELET_DIRS/*" -delete
  rm -rf "$STATE" /var/lib/kubelet "$KUBELET_DIRS" /run/myaas-dev
}

# ---------------------------------------------------------------------------------------------
# Bring-up

install_packages() {
  local missing=()
  # containerd itself is built (hack/build-tools.sh); its Debian package brings ctr, the client
  # these scripts import images with.
  command -v ctr >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v mkfs.btrfs >/dev/null || missing+=(btrfs-progs)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v losetup >/dev/null || missing+=(mount)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v ipset >/dev/null || missing+=(ipset)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_all() {
  local t0=$SECONDS
  bash "$root/hack/build-k8s.sh"
  bash "$root/hack/build-tools.sh"
  (cd "$root" && CGO_ENABLED=0 go build -o "$root/bin/csi-btrfs" ./test/csi-btrfs)
  bash "$root/hack/build-images.sh" all
  log "binaries and images ready ($((SECONDS - t0))s)"
}

start() {
  # start NAME CMD... : a detached process with its pid and log in the state dir.
  # The daemons outlive this script, so they must not inherit its descriptors: the cluster lock's
  # among them (`flock LOCK dev-cluster.sh up`, or e2e.sh's fd 9) would stay held while the
  # cluster runs, and every later suite would wait for it forever.
  local name=$1; shift
  (
    for fd in "/proc/$BASHPID/fd"/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    exec setsid "$@"
  ) >>"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/pids/$name.pid"
}

wait_for() {
  # wait_for WHAT SECONDS CMD...
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${timeout}s waiting for $what (logs: $STATE/logs)"
    sleep 0.5
  done
}

make_pki() {
  local pki=$STATE/pki ip=$1
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=myaas-dev-ca \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature 2>/dev/null
    issue() { # issue NAME SUBJECT EXTENSIONS
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out "$1.crt" \
        -extfile <(printf '%s\n' "$3") 2>/dev/null
    }
    issue apiserver /CN=kube-apiserver "subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$API_SERVICE_IP,IP:$ip
extendedKeyUsage=serverAuth"
    # One admin identity for every host component: this cluster has a single trusted operator.
    issue admin "/O=system:masters/CN=myaas-dev-admin" "extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  render kubeconfig.yaml PKI="$pki" >"$KUBECONFIG_PATH"
}

start_control_plane() {
  local ip=$1 pki=$STATE/pki
  start etcd "$K8S/etcd" --data-dir "$STATE/etcd" --name myaas-dev \
    --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
    --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
    --initial-cluster myaas-dev=http://127.0.0.1:12380 --unsafe-no-fsync
  start kube-apiserver "$K8S/kube-apiserver" --etcd-servers http://127.0.0.1:12379 \
    --advertise-address "$ip" --bind-address 0.0.0.0 --secure-port 6443 \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC --allow-privileged=true \
    --cert-dir "$STATE/apiserver-certs" \
    --kubelet-preferred-address-types InternalIP,Hostname
  wait_for "kube-apiserver" 90 k get --raw /readyz
  start kube-controller-manager "$K8S/kube-controller-manager" --kubeconfig "$KUBECONFIG_PATH" \
    --authentication-kubeconfig "$KUBECONFIG_PATH" --authorization-kubeconfig "$KUBECONFIG_PATH" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --use-service-account-credentials \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 10257 \
    --node-monitor-grace-period 20s
  start kube-scheduler "$K8S/kube-scheduler" --kubeconfig "$KUBECONFIG_PATH" \
    --authentication-kubeconfig "$KUBECONFIG_PATH" --authorization-kubeconfig "$KUBECONFIG_PATH" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 10259
}

# start_containerd N: node N's containerd of its own (root, state, socket, shims, runc state), so
# that neither a containerd the machine already runs nor another node's is used or touched: a
# kubelet removes every sandbox of its runtime it does not know.
start_containerd() {
  node_vars "$1"
  local cni_conf_dir=$NODE_STATE/cni/net.d
  mkdir -p "$NODE_STATE/containerd" "$cni_conf_dir"
  render containerd.toml ROOT="$NODE_STATE/containerd/root" STATE="$NODE_RUN/containerd" SOCKET="$NODE_CONTAINERD_SOCKET" \
    SANDBOX_IMAGE=localhost/myaas/pause:3.10 CNI_CONF_DIR="$cni_conf_dir" SHIM_SOCKET_DIR="$NODE_RUN/containerd/s" \
    RUNC_ROOT="$NODE_RUN/runc" >"$NODE_STATE/containerd/config.toml"
  render 10-myaas.conflist CNI_NETWORK="$CNI_NETWORK" BRIDGE="$BRIDGE" POD_CIDR="$POD_CIDR" >"$cni_conf_dir/10-myaas.conflist"
  # containerd finds its shim on PATH: ours first, not the one of a Debian containerd package.
  start "containerd$NODE_SUFFIX" env PATH="$TOOLS:$PATH" "$TOOLS/containerd" --config "$NODE_STATE/containerd/config.toml"
  wait_for "containerd of $NODE" 30 ctr --address "$NODE_CONTAINERD_SOCKET" version
}

declare -A IMAGES=(
  [pause]=localhost/myaas/pause:3.10
  [mariadb]=localhost/myaas/mariadb:10.11
  [postgresql]=localhost/myaas/postgres:15
  [manager]=localhost/myaas/manager:dev
  [dumpserver]=localhost/myaas/dumpserver:dev
  [s3server]=localhost/myaas/s3server:dev
)

# load_images [NAME...]: into every node's containerd, the nodes side by side.
load_images() {
  local image i jobs=()
  for image in "${@:-${!IMAGES[@]}}"; do
    [ -f "$root/bin/images/$image.tar" ] || die "$root/bin/images/$image.tar is missing: run hack/build-images.sh $image"
  done
  for i in $(node_indexes); do
    (
      for image in "${@:-${!IMAGES[@]}}"; do
        # The archive names the image itself (org.opencontainers.image.ref.name).
        ctr --address "$(node_containerd_socket "$i")" -n k8s.io images import "$root/bin/images/$image.tar" >/dev/null
        log "image ${IMAGES[$image]} imported into $(node_name "$i")"
      done
    ) &
    jobs+=($!)
  done
  for i in "${jobs[@]}"; do wait "$i" || die "importing images failed"; done
}

# start_kubelet N IP: node N's kubelet (node-start runs it again).
start_kubelet() {
  node_vars "$1"
  local ip=$2
  [ "$CGROUP_ROOT" = / ] || make_cgroup_root "${CGROUP_ROOT#/}"
  mkdir -p "$NODE_STATE" "$KUBELET_DIR"
  render kubelet.yaml CONTAINERD_SOCKET="$NODE_CONTAINERD_SOCKET" PKI="$STATE/pki" DNS_SERVICE_IP="$DNS_SERVICE_IP" \
    STATE="$STATE" PORT="$KUBELET_PORT" HEALTHZ_PORT="$KUBELET_HEALTHZ_PORT" CGROUP_ROOT="$CGROUP_ROOT" \
    POD_LOGS_DIR="$POD_LOGS_DIR" >"$NODE_STATE/kubelet.yaml"
  start "kubelet$NODE_SUFFIX" "$K8S/kubelet" --config "$NODE_STATE/kubelet.yaml" --kubeconfig "$KUBECONFIG_PATH" \
    --hostname-override "$NODE" --node-ip "$ip" --root-dir "$KUBELET_DIR"
}

start_nodes() {
  local ip=$1 i
  : >"$STATE/resolv.conf"
  for i in $(node_indexes); do start_kubelet "$i" "$ip"; done
  # One kube-proxy serves every node: they all share the host's network namespace.
  start kube-proxy "$K8S/kube-proxy" --kubeconfig "$KUBECONFIG_PATH" --hostname-override "$(node_name 1)" \
    --cluster-cidr "$CLUSTER_CIDR" --proxy-mode iptables --conntrack-max-per-core 0 \
    --iptables-min-sync-period 100ms \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
  for i in $(node_indexes); do
    wait_for "node $(node_name "$i") to register" 120 k get node "$(node_name "$i")"
  done
}

# start_netpol enforces NetworkPolicies, which the bridge CNI does not: kube-router in firewall
# mode only (iptables and ipsets; the node's own traffic to its pods is always let through, as
# kubelet probes need). SIG-network's kube-network-policies would be the lighter choice, but it
# queues packets with the nftables queue expression, which this kernel lacks (CONFIG_NFT_QUEUE).
# It guards the pods of node 1 only: one kube-router per node would share one host's iptables and
# ipsets, and each would remove the others' rules as stale. Pods on nodes 2..N are not guarded.
start_netpol() {
  local ip=$1 node
  node=$(node_name 1)
  start kube-router "$TOOLS/kube-router" --kubeconfig "$KUBECONFIG_PATH" --hostname-override "$node" \
    --run-firewall --run-router=false --run-service-proxy=false --enable-cni=false \
    --service-cluster-ip-range "$SERVICE_CIDR" --health-port 0 --metrics-port 0 --v 1
  wait_for "kube-router's firewall chains (logs: $STATE/logs/kube-router.log)" 60 \
    bash -c "iptables-save -t filter | grep -q -- '-A FORWARD .*KUBE-ROUTER-FORWARD'"
  log "NetworkPolicies enforced by kube-router (node $node, $ip)"
}

netpol_running() { [ -f "$STATE/pids/kube-router.pid" ] && kill -0 "$(cat "$STATE/pids/kube-router.pid")" 2>/dev/null; }

# make_pool DIR: a btrfs of its own on a loop file DIR.img, mounted at DIR, as a disk of its own would be.
make_pool() {
  mkdir -p "$1"
  truncate -s "$BTRFS_SIZE" "$1.img"
  mkfs.btrfs -q -f "$1.img" >/dev/null
  mount -o loop "$1.img" "$1"
}

# start_csi_node N POOL_FLAG...: node N's driver process, registered with node N's kubelet.
start_csi_node() {
  node_vars "$1"
  start "csi-btrfs$NODE_SUFFIX" "$root/bin/csi-btrfs" --endpoint "unix://$CSI_SOCKET" --root "$NODE_STATE/btrfs" \
    --node-id "$NODE" --registration-dir "$KUBELET_DIR/plugins_registry" --fault-dir "$CSI_FAULT_DIR" "${@:2}"
  wait_for "CSI socket of $NODE" 30 test -S "$CSI_SOCKET"
}

start_storage() {
  local crd_dir i nodes pool_flags=() node_roots=()
  nodes=$(running_nodes)
  for i in $(node_indexes); do
    node_vars "$i"
    make_pool "$NODE_STATE/btrfs"
    [ "$i" = 1 ] || node_roots+=("$NODE=$NODE_STATE/btrfs")
  done
  if [ "$nodes" -gt 1 ]; then
    make_pool "$SHARED_POOL"
    pool_flags=(--shared-root "$SHARED_POOL")
  fi
  crd_dir=$(cd "$root/hack/tools/external-snapshotter" && go list -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8)/config/crd
  for f in "$crd_dir"/snapshot.storage.k8s.io_*.yaml; do k apply --server-side -f "$f" >/dev/null; done
  k wait --for condition=Established --timeout 60s crd/volumesnapshots.snapshot.storage.k8s.io \
    crd/volumesnapshotcontents.snapshot.storage.k8s.io crd/volumesnapshotclasses.snapshot.storage.k8s.io >/dev/null
  mkdir -p "$CSI_FAULT_DIR"
  # Node 1's process also creates, clones, snapshots and deletes the other nodes' volumes, in the
  # pool of the node they belong to: the sidecars talk to it alone.
  if [ ${#pool_flags[@]} -gt 0 ]; then
    start_csi_node 1 "${pool_flags[@]}" --node-roots "$(IFS=,; echo "${node_roots[*]}")"
  else
    start_csi_node 1
  fi
  for i in $(seq 2 "$nodes"); do start_csi_node "$i" "${pool_flags[@]}"; done
  # Each clone costs the provisioner about five API requests: at its default 5 per second (burst
  # 10), twenty instances applied at once waited seconds for their volumes, client-side. Drivers
  # deployed for many volumes at once raise it the same way.
  start csi-provisioner "$TOOLS/csi-provisioner" --csi-address "$CONTROLLER_SOCKET" --kubeconfig "$KUBECONFIG_PATH" \
    --leader-election=false --feature-gates Topology=true --extra-create-metadata --timeout 120s \
    --worker-threads 20 --kube-api-qps 50 --kube-api-burst 100 --v 2
  # Snapshots not ready or failed are retried at least every 5 s (not up to 5 min), so a test sees one soon after it clears a fault.
  start csi-snapshotter "$TOOLS/csi-snapshotter" --csi-address "$CONTROLLER_SOCKET" --kubeconfig "$KUBECONFIG_PATH" \
    --leader-election=false --timeout 120s --worker-threads 20 --v 2 \
    --extra-create-metadata --retry-interval-max 5s
  start snapshot-controller "$TOOLS/snapshot-controller" --kubeconfig "$KUBECONFIG_PATH" \
    --leader-election=false --worker-threads 20 --v 2
  render storage.yaml DRIVER="$DRIVER" | k apply --server-side -f - >/dev/null
  [ "$nodes" = 1 ] || render storage-shared.yaml DRIVER="$DRIVER" | k apply --server-side -f - >/dev/null
}

start_dns() {
  local ip=$1
  render Corefile HOST_IP="$ip" KUBECONFIG_PATH="$KUBECONFIG_PATH" >"$STATE/Corefile"
  start coredns "$TOOLS/coredns" -conf "$STATE/Corefile"
  # CoreDNS runs on the host; the kube-dns Service points at it, as a Service without a selector.
  render coredns.yaml DNS_SERVICE_IP="$DNS_SERVICE_IP" HOST_IP="$ip" | k apply --server-side -f - >/dev/null
}

csi_registered() { k get csinode "$1" -o jsonpath='{.spec.drivers[*].name}' | grep -qF "$DRIVER"; }

wait_ready() {
  local i
  for i in $(node_indexes); do
    node_vars "$i"
    k wait --for condition=Ready --timeout 180s "node/$NODE" >/dev/null ||
      die "node $NODE is not Ready (logs: $STATE/logs/kubelet$NODE_SUFFIX.log)"
  done
  for i in $(node_indexes); do
    node_vars "$i"
    wait_for "CSI driver registration with the kubelet of $NODE" 90 csi_registered "$NODE"
  done
  wait_for "default service account" 60 k -n default get serviceaccount default
  wait_for "kube-proxy rules for kube-dns" 60 bash -c "iptables-save -t nat | grep -q 'kube-system/kube-dns:dns cluster IP'"
  # A pod resolving the API server's name proves pod networking, kube-proxy and CoreDNS together.
  k -n default delete pod dns-check --ignore-not-found --wait=false >/dev/null
  k -n default run dns-check --image localhost/myaas/mariadb:10.11 --image-pull-policy Never --restart Never \
    --command -- getent hosts kubernetes.default.svc.cluster.local >/dev/null
  local deadline=$((SECONDS + 120)) phase=
  while [ $SECONDS -lt $deadline ]; do
    phase=$(k -n default get pod dns-check -o jsonpath='{.status.phase}' 2>/dev/null || true)
    [ "$phase" = Succeeded ] || [ "$phase" = Failed ] && break
    sleep 1
  done
  [ "$phase" = Succeeded ] || { k -n default logs dns-check >&2 || true; die "a pod could not resolve kubernetes.default.svc.cluster.local (phase $phase)"; }
  k -n default delete pod dns-check --wait=false >/dev/null
}

up() {
  [ "$(id -u)" = 0 ] || die "the local cluster needs root"
  local t0=$SECONDS ip i nodes=${MYAAS_NODES:-${NODES:-1}}
  if ! [[ $nodes =~ ^[1-9][0-9]*$ ]] || [ "$nodes" -gt $MAX_NODES ]; then
    die "NODES=$nodes: the node count must be a whole number from 1 to $MAX_NODES"
  fi
  log "removing leftovers of earlier runs"
  cleanup
  install_packages
  build_all
  local t1=$SECONDS
  ip=$(host_ip)
  [ -n "$ip" ] || die "no global IPv4 address on this machine for the API server to advertise"
  mkdir -p "$STATE/logs" "$STATE/pids"
  echo "$nodes" >"$NODE_COUNT_FILE"
  sysctl -qw net.ipv4.ip_forward=1
  # A service address kube-proxy has not programmed yet must not follow the default route off
  # the machine: kube-proxy's DNAT happens before routing, so known services are unaffected.
  ip route add blackhole "$SERVICE_CIDR"
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || log "bridge netfilter not available"
  make_pki "$ip"
  start_control_plane "$ip"
  for i in $(node_indexes); do start_containerd "$i"; done
  load_images
  start_nodes "$ip"
  start_netpol "$ip"
  start_storage
  start_dns "$ip"
  wait_ready
  log "cluster of $nodes node(s) ready in $((SECONDS - t1))s (with builds: $((SECONDS - t0))s)"
  local classes=myaas-btrfs
  [ "$nodes" = 1 ] || classes="myaas-btrfs (node-local), myaas-btrfs-shared (one pool for all nodes)"
  cat <<EOF

  export KUBECONFIG=$KUBECONFIG_PATH
  $K8S/kubectl get nodes
  StorageClass: $classes   VolumeSnapshotClass: myaas-btrfs   logs: $STATE/logs
  stop and remove everything: make dev-cluster-down

EOF
}

down() {
  cleanup
  log "local cluster removed"
}

load() {
  local images=("${@:-manager}")
  for image in "${images[@]}"; do bash "$root/hack/build-images.sh" "$image"; done
  load_images "${images[@]}"
}

netpol() {
  cluster_running || die "no cluster is running: hack/dev-cluster.sh up starts one with the enforcer"
  netpol_running && return
  install_packages
  bash "$root/hack/build-tools.sh" kube-router
  start_netpol "$(host_ip)"
}

status() {
  local f
  [ ! -f "$NODE_COUNT_FILE" ] || echo "nodes    $(running_nodes)"
  for f in "$STATE"/pids/*.pid; do
    [ -e "$f" ] || { echo "not running"; return; }
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "running  $(basename "$f" .pid)"; else echo "stopped  $(basename "$f" .pid)"; fi
  done
}

# node_stop NAME: the kubelet stops and nothing else, as when a node drops off the network: its
# containers keep running, and the control plane marks the node NotReady once its lease is stale.
node_stop() {
  cluster_running || die "no cluster is running"
  local i pidfile pid
  i=$(node_index "${1:-}") || exit 1
  node_vars "$i"
  pidfile=$STATE/pids/kubelet$NODE_SUFFIX.pid
  [ -f "$pidfile" ] || { log "the kubelet of $NODE is not running"; return; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  log "kubelet of $NODE stopped"
}

node_start() {
  cluster_running || die "no cluster is running"
  local i
  i=$(node_index "${1:-}") || exit 1
  node_vars "$i"
  if [ -f "$STATE/pids/kubelet$NODE_SUFFIX.pid" ] && kill -0 "$(cat "$STATE/pids/kubelet$NODE_SUFFIX.pid")" 2>/dev/null; then
    log "the kubelet of $NODE runs already"
    return
  fi
  start_kubelet "$i" "$(host_ip)"
  k wait --for condition=Ready --timeout 120s "node/$NODE" >/dev/null ||
    die "node $NODE is not Ready again (logs: $STATE/logs/kubelet$NODE_SUFFIX.log)"
  log "kubelet of $NODE started, node Ready"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  load) shift; load "$@" ;;
  netpol) netpol ;;
  status) status ;;
  node-stop) node_stop "${2:-}" ;;
  node-start) node_start "${2:-}" ;;
  *) echo "usage: $0 up|down|load|netpol|status|node-stop NAME|node-start NAME" >&2; exit 2 ;;
esac
