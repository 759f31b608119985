package driver

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/validation"
)

// A pool is one btrfs filesystem holding volumes: a node's own disk, whose volumes only that
// node can mount, or the shared pool every node sees, like network storage. Copy-on-write
// works only inside one filesystem, so snapshots and clones always stay in their source's pool.
type pool struct {
	// name is the node's name, or sharedPool; volume and snapshot IDs end in it.
	name string
	// node is the node whose disk this is; empty for the shared pool.
	node  string
	store store
}

const (
	// sharedPool names the shared pool in IDs and is therefore no valid node name here.
	sharedPool = "shared"

	// PoolParameter is the StorageClass parameter choosing the pool: PoolNode or PoolShared.
	PoolParameter = "pool"
	// PoolNode keeps the volume on one node's disk and pins it there through its topology.
	PoolNode = "node"
	// PoolShared puts the volume in the shared pool, with no topology: any node may mount it.
	PoolShared = "shared"

	// idPoolSeparator cannot occur in a node name, so the pool is whatever follows the last one.
	idPoolSeparator = "@"
)

// topology is where the pool's volumes can be mounted; none means everywhere.
func (p *pool) topology() []*csi.Topology {
	if p.node == "" {
		return nil
	}
	return []*csi.Topology{{Segments: map[string]string{TopologyKey: p.node}}}
}

// String is how messages name the pool.
func (p *pool) String() string {
	if p.node == "" {
		return "the shared pool"
	}
	return "node " + p.node
}

// ref locates a volume or snapshot: its pool, and its name inside the pool's store.
type ref struct {
	pool  *pool
	local string
}

// id is the ID the CO sees. It names the pool, so every call finds the pool from the ID alone,
// whichever process receives it.
func (r ref) id() string { return r.local + idPoolSeparator + r.pool.name }

func (r ref) path(kind string) string { return r.pool.store.path(kind, r.local) }

// splitID separates an ID into its name inside the pool and the pool's name. IDs made before
// pools existed carry no pool: they are in the pool of the node that made them, which was then
// the only one, so they resolve to this node's pool.
func (d *driver) splitID(id string) (local, poolName string) {
	if i := strings.LastIndex(id, idPoolSeparator); i >= 0 {
		return id[:i], id[i+1:]
	}
	return id, d.own.name
}

// validToken accepts what ListVolumes and ListSnapshots hand out as next tokens: IDs.
func (d *driver) validToken(kind string) func(string) bool {
	return func(token string) bool {
		local, _ := d.splitID(token)
		return validID(kind, local)
	}
}

// canonicalID qualifies an ID made before pools existed, so that records and requests compare
// equal whichever form the caller used.
func (d *driver) canonicalID(id string) string {
	if id == "" {
		return ""
	}
	local, poolName := d.splitID(id)
	return local + idPoolSeparator + poolName
}

// resolve finds the pool of an ID. ok is false for an ID this driver cannot have made, which
// callers treat like a missing volume. A well-formed ID of a pool this process has no root for
// is an error rather than "not found": deleting it would otherwise leak it silently.
func (d *driver) resolve(kind, id string) (r ref, ok bool, err error) {
	local, poolName := d.splitID(id)
	if !validID(kind, local) {
		return ref{}, false, nil
	}
	p := d.pools[poolName]
	if p == nil {
		if poolName == sharedPool {
			return ref{}, false, status.Errorf(codes.FailedPrecondition, "%q is in the shared pool, and this driver has none (--shared-root)", id)
		}
		return ref{}, false, status.Errorf(codes.FailedPrecondition, "%q is in the pool of node %s, which this driver has no root for (--node-roots)", id, poolName)
	}
	return ref{pool: p, local: local}, true, nil
}

// findByName looks for what an earlier attempt of a create made under the same local ID: a
// retry must find it in whichever pool that attempt chose.
func (d *driver) findByName(kind, local string) (ref, *record, error) {
	for _, p := range d.poolList() {
		rec, err := p.store.get(kind, local)
		if err != nil || rec != nil {
			return ref{pool: p, local: local}, rec, err
		}
	}
	return ref{}, nil, nil
}

// poolList is every pool this process serves, in name order for stable listings.
func (d *driver) poolList() []*pool {
	var out []*pool
	for _, name := range slices.Sorted(maps.Keys(d.pools)) {
		out = append(out, d.pools[name])
	}
	return out
}

// poolParameter reads the StorageClass parameter choosing between node-local and shared.
func poolParameter(params map[string]string) (string, error) {
	switch v, set := params[PoolParameter]; {
	case !set || v == PoolNode:
		return PoolNode, nil
	case v == PoolShared:
		return PoolShared, nil
	default:
		return "", status.Errorf(codes.InvalidArgument, "parameter %s=%q: want %q or %q", PoolParameter, v, PoolNode, PoolShared)
	}
}

// sharedOrError is the shared pool, or the error for a request that asks for one this driver
// does not have.
func (d *driver) sharedOrError() (*pool, error) {
	if d.shared == nil {
		return nil, status.Errorf(codes.InvalidArgument, "parameter %s=%s, but this driver has no shared pool (--shared-root)", PoolParameter, PoolShared)
	}
	return d.shared, nil
}

// placeVolume chooses the pool of a new volume. A clone can only be made where its source
// lives, as with TopoLVM or ZFS-LocalPV; a node-local volume without a source goes to the node
// the scheduler picked, which external-provisioner sends as the first preferred topology.
func (d *driver) placeVolume(poolKind string, source *ref, reqs *csi.TopologyRequirement) (*pool, error) {
	if poolKind == PoolShared {
		shared, err := d.sharedOrError()
		if err != nil {
			return nil, err
		}
		if source != nil && source.pool != shared {
			return nil, status.Errorf(codes.InvalidArgument, "source %s is on %s; a volume in the shared pool (parameter %s=%s) can only be made from the shared pool", source.id(), source.pool, PoolParameter, PoolShared)
		}
		return shared, nil
	}
	if source != nil {
		node := source.pool.node
		if node == "" {
			return nil, status.Errorf(codes.InvalidArgument, "source %s is in the shared pool; a node-local volume cannot be made from it (set parameter %s=%s)", source.id(), PoolParameter, PoolShared)
		}
		if requisite := reqs.GetRequisite(); len(requisite) > 0 && !slices.ContainsFunc(requisite, func(t *csi.Topology) bool {
			return t.GetSegments()[TopologyKey] == node
		}) {
			return nil, status.Errorf(codes.InvalidArgument, "source %s is on node %s, not among the requested topologies", source.id(), node)
		}
		return source.pool, nil
	}
	node := d.own.node
	for _, t := range append(slices.Clone(reqs.GetPreferred()), reqs.GetRequisite()...) {
		if n := t.GetSegments()[TopologyKey]; n != "" {
			node = n
			break
		}
	}
	p := d.pools[node]
	if p == nil || p.node == "" {
		// ResourceExhausted makes external-provisioner ask the scheduler for another node.
		return nil, status.Errorf(codes.ResourceExhausted, "no pool for node %s: this driver has no root for it (--node-roots)", node)
	}
	return p, nil
}

// servedVolume is the record of a volume this node may mount: one in its own pool or in the
// shared pool. Another node's volume is refused even where this process can reach its pool, so
// that nothing is ever mounted across nodes by accident.
func (d *driver) servedVolume(id string) (ref, *record, error) {
	if _, poolName := d.splitID(id); poolName != d.own.name && poolName != sharedPool {
		return ref{}, nil, status.Errorf(codes.FailedPrecondition, "volume %q lives on node %s; this is node %s", id, poolName, d.own.node)
	}
	return d.existingVolume(id, "volume")
}

// ParseNodeRoots reads --node-roots: NAME=DIR entries separated by commas.
func ParseNodeRoots(value string) (map[string]string, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	roots := map[string]string{}
	for _, entry := range strings.Split(value, ",") {
		name, dir, found := strings.Cut(strings.TrimSpace(entry), "=")
		if !found || name == "" || dir == "" {
			return nil, fmt.Errorf("--node-roots entry %q: want NAME=DIR", entry)
		}
		if err := checkNodeName(name); err != nil {
			return nil, fmt.Errorf("--node-roots entry %q: %w", entry, err)
		}
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("--node-roots entry %q: directory must be absolute", entry)
		}
		if _, dup := roots[name]; dup {
			return nil, fmt.Errorf("--node-roots entry %q: node %s is listed twice", entry, name)
		}
		roots[name] = dir
	}
	return roots, nil
}

// checkNodeName accepts the names Kubernetes accepts for nodes, except the one IDs reserve for
// the shared pool.
func checkNodeName(name string) error {
	if name == sharedPool {
		return fmt.Errorf("node name %q is reserved for the shared pool", name)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("node name %q is invalid: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// newPools builds the pools a Config describes, refusing two pools on one directory: the
// shared pool on a node's disk would let clones cross nodes unnoticed.
func newPools(cfg Config) (own, shared *pool, all map[string]*pool, err error) {
	if err := checkNodeName(cfg.NodeID); err != nil {
		return nil, nil, nil, fmt.Errorf("--node-id: %w", err)
	}
	own = &pool{name: cfg.NodeID, node: cfg.NodeID, store: store{root: cfg.Root}}
	all = map[string]*pool{own.name: own}
	usedBy := map[string]string{filepath.Clean(cfg.Root): "--root"}
	claim := func(dir, who string) error {
		if other, taken := usedBy[filepath.Clean(dir)]; taken {
			return fmt.Errorf("%s and %s are both %s: every pool needs its own filesystem", who, other, dir)
		}
		usedBy[filepath.Clean(dir)] = who
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.NodeRoots)) {
		dir := cfg.NodeRoots[name]
		if err := checkNodeName(name); err != nil {
			return nil, nil, nil, fmt.Errorf("--node-roots: %w", err)
		}
		if name == cfg.NodeID {
			if filepath.Clean(dir) != filepath.Clean(cfg.Root) {
				return nil, nil, nil, fmt.Errorf("--node-roots entry %s=%s: %s is this node (--node-id), whose pool is --root %s", name, dir, name, cfg.Root)
			}
			continue
		}
		if err := claim(dir, "--node-roots entry "+name+"="+dir); err != nil {
			return nil, nil, nil, err
		}
		all[name] = &pool{name: name, node: name, store: store{root: dir}}
	}
	if cfg.SharedRoot != "" {
		if err := claim(cfg.SharedRoot, "--shared-root"); err != nil {
			return nil, nil, nil, err
		}
		shared = &pool{name: sharedPool, store: store{root: cfg.SharedRoot}}
		all[sharedPool] = shared
	}
	return own, shared, all, nil
}
