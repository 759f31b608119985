package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nodes runs the driver as the multi-node local cluster does: node-1's process has every node's
// pool and serves the controller sidecars, node-2 and node-3 run node processes on their own
// pools, and all three see one shared pool. Each pool is its own filesystem, as separate disks.
type nodes struct {
	controller, node2, node3 *harness
	sharedRoot               string
}

func startNodes(t *testing.T) *nodes {
	t.Helper()
	_, sharedRoot := newBtrfs(t)
	newNode := func() *harness {
		dir, root := newBtrfs(t)
		return &harness{dir: dir, root: root, sock: filepath.Join(dir, "csi.sock")}
	}
	n := &nodes{controller: newNode(), node2: newNode(), node3: newNode(), sharedRoot: sharedRoot}
	n.controller.start(t, Config{NodeID: "node-1", SharedRoot: sharedRoot, NodeRoots: map[string]string{
		"node-1": n.controller.root, "node-2": n.node2.root, "node-3": n.node3.root,
	}})
	n.node2.start(t, Config{NodeID: "node-2", SharedRoot: sharedRoot})
	n.node3.start(t, Config{NodeID: "node-3", SharedRoot: sharedRoot})
	return n
}

func topologyOf(node string) *csi.Topology {
	return &csi.Topology{Segments: map[string]string{TopologyKey: node}}
}

// topologyNode is the node a volume is pinned to, "" for none, "several" for a volume that
// claims more than one node, which this driver never should.
func topologyNode(v *csi.Volume) string {
	switch len(v.GetAccessibleTopology()) {
	case 0:
		return ""
	case 1:
		return v.GetAccessibleTopology()[0].GetSegments()[TopologyKey]
	default:
		return "several"
	}
}

func createReq(name string, params map[string]string, reqs *csi.TopologyRequirement, src *csi.VolumeContentSource) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name: name, VolumeCapabilities: mountCap(), Parameters: params,
		AccessibilityRequirements: reqs, VolumeContentSource: src,
	}
}

func fromSnapshot(id string) *csi.VolumeContentSource {
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id},
	}}
}

func (h *harness) mustCreate(t *testing.T, req *csi.CreateVolumeRequest) *csi.Volume {
	t.Helper()
	resp, err := h.ctrl.CreateVolume(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateVolume(%s): %v", req.Name, err)
	}
	return resp.GetVolume()
}

func (h *harness) mustSnapshot(t *testing.T, name, volumeID string) *csi.Snapshot {
	t.Helper()
	resp, err := h.ctrl.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: volumeID})
	if err != nil {
		t.Fatalf("CreateSnapshot(%s): %v", name, err)
	}
	return resp.GetSnapshot()
}

// publish mounts a volume through h's node service at a target inside h's directory, so that
// the test's cleanup unmounts it.
func (h *harness) publish(volumeID, name string) (string, error) {
	target := filepath.Join(h.dir, "pods", name)
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return "", err
	}
	_, err := h.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: volumeID, TargetPath: target, VolumeCapability: mountCap()[0],
	})
	return target, err
}

func wantCode(t *testing.T, what string, err error, code codes.Code, message string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), message) {
		t.Errorf("%s: err = %v, want %s containing %q", what, err, code, message)
	}
}

// TestNodeLocalPool follows a template's life on node-2 as the operator drives it: the volume,
// its snapshot and their clones stay on node-2, and only node-2 may mount them.
func TestNodeLocalPool(t *testing.T) {
	n := startNodes(t)
	ctx := context.Background()
	ctrl := n.controller

	// The scheduler picked node-2: external-provisioner sends it as the first preferred topology.
	anyNode := []*csi.Topology{topologyOf("node-1"), topologyOf("node-2"), topologyOf("node-3")}
	template := ctrl.mustCreate(t, createReq("template", nil, &csi.TopologyRequirement{
		Requisite: anyNode, Preferred: []*csi.Topology{topologyOf("node-2"), topologyOf("node-1")},
	}, nil))
	if got := topologyNode(template); got != "node-2" {
		t.Fatalf("template topology = %q, want node-2", got)
	}
	if _, err := os.Stat(n.node2.volumePath(template.VolumeId)); err != nil {
		t.Fatalf("template is not in node-2's pool: %v", err)
	}
	if _, err := os.Stat(ctrl.volumePath(template.VolumeId)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("template found in node-1's pool too: %v", err)
	}
	if err := os.WriteFile(filepath.Join(n.node2.volumePath(template.VolumeId), "data"), []byte("template data"), 0o644); err != nil {
		t.Fatal(err)
	}

	snap := ctrl.mustSnapshot(t, "revision-1", template.VolumeId)
	if _, err := os.Stat(n.node2.subvolume(kindSnapshot, snap.SnapshotId)); err != nil {
		t.Fatalf("snapshot is not in node-2's pool: %v", err)
	}

	// Whatever the scheduler preferred, the clone can only be where the snapshot is.
	clone := ctrl.mustCreate(t, createReq("instance", nil, &csi.TopologyRequirement{
		Requisite: anyNode, Preferred: []*csi.Topology{topologyOf("node-1")},
	}, fromSnapshot(snap.SnapshotId)))
	if got := topologyNode(clone); got != "node-2" {
		t.Errorf("clone topology = %q, want node-2", got)
	}
	if _, err := os.Stat(n.node2.volumePath(clone.VolumeId)); err != nil {
		t.Errorf("clone is not in node-2's pool: %v", err)
	}

	_, err := ctrl.ctrl.CreateVolume(ctx, createReq("elsewhere", nil, &csi.TopologyRequirement{
		Requisite: []*csi.Topology{topologyOf("node-1"), topologyOf("node-3")},
	}, fromSnapshot(snap.SnapshotId)))
	wantCode(t, "clone required on node-1 or node-3", err, codes.InvalidArgument,
		"source "+snap.SnapshotId+" is on node node-2, not among the requested topologies")

	for _, h := range []*harness{n.node3, ctrl} {
		_, err := h.publish(clone.VolumeId, "foreign")
		wantCode(t, "publishing node-2's volume elsewhere", err, codes.FailedPrecondition, "lives on node node-2; this is node node-")
	}
	target, err := n.node2.publish(clone.VolumeId, "instance")
	if err != nil {
		t.Fatalf("node-2 publishing its own volume: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "data")); err != nil || string(got) != "template data" {
		t.Fatalf("clone as the pod sees it: %q, %v; want the template's data", got, err)
	}
	if err := os.WriteFile(filepath.Join(target, "data"), []byte("instance change"), 0o644); err != nil {
		t.Fatalf("writing through the mount: %v", err)
	}
	for what, path := range map[string]string{
		"template": filepath.Join(n.node2.volumePath(template.VolumeId), "data"),
		"snapshot": filepath.Join(n.node2.subvolume(kindSnapshot, snap.SnapshotId), "data"),
	} {
		if got, err := os.ReadFile(path); err != nil || string(got) != "template data" {
			t.Errorf("%s after writing to the clone: %q, %v; want it unchanged", what, got, err)
		}
	}

	// Stats and expansion find the pool from the ID too.
	if _, err := n.node2.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: clone.VolumeId, VolumePath: target}); err != nil {
		t.Errorf("NodeGetVolumeStats on node-2: %v", err)
	}
	if _, err := ctrl.ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: clone.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30},
	}); err != nil {
		t.Errorf("expanding node-2's volume: %v", err)
	}

	// Without topology a volume goes to the controller's own node; an unknown node is full, so
	// that the provisioner asks the scheduler for another.
	if got := topologyNode(ctrl.mustCreate(t, createReq("no-topology", nil, nil, nil))); got != "node-1" {
		t.Errorf("volume without topology requirements on %q, want node-1", got)
	}
	_, err = ctrl.ctrl.CreateVolume(ctx, createReq("unknown-node", nil, &csi.TopologyRequirement{
		Preferred: []*csi.Topology{topologyOf("node-9")},
	}, nil))
	wantCode(t, "volume for a node without a pool", err, codes.ResourceExhausted, "no pool for node node-9")

	// Deleting removes the subvolumes from node-2's pool and the volumes from the listing.
	if _, err := n.node2.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: clone.VolumeId, TargetPath: target}); err != nil {
		t.Fatalf("NodeUnpublishVolume: %v", err)
	}
	for _, id := range []string{clone.VolumeId, template.VolumeId} {
		if _, err := ctrl.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatalf("DeleteVolume(%s): %v", id, err)
		}
		if _, err := os.Stat(n.node2.volumePath(id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("volume %s still in node-2's pool after deletion: %v", id, err)
		}
	}
	list, err := ctrl.ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatalf("ListVolumes: %v", err)
	}
	if len(list.Entries) != 1 || topologyNode(list.Entries[0].Volume) != "node-1" {
		t.Errorf("volumes left = %v, want only the one on node-1", list.Entries)
	}
}

// TestSharedPool checks the network-storage mode: no topology, and every node mounts the same
// data.
func TestSharedPool(t *testing.T) {
	n := startNodes(t)
	ctx := context.Background()
	ctrl := n.controller
	shared := map[string]string{PoolParameter: PoolShared}

	// Even a scheduler's preference does not pin a shared volume.
	vol := ctrl.mustCreate(t, createReq("shared-template", shared, &csi.TopologyRequirement{
		Requisite: []*csi.Topology{topologyOf("node-3")}, Preferred: []*csi.Topology{topologyOf("node-3")},
	}, nil))
	if len(vol.AccessibleTopology) != 0 {
		t.Errorf("shared volume topology = %v, want none", vol.AccessibleTopology)
	}
	sharedPath := filepath.Join(n.sharedRoot, kindVolume, strings.TrimSuffix(vol.VolumeId, idPoolSeparator+sharedPool))
	if _, err := os.Stat(sharedPath); err != nil {
		t.Fatalf("shared volume is not in the shared pool: %v", err)
	}

	on2, err := n.node2.publish(vol.VolumeId, "shared")
	if err != nil {
		t.Fatalf("node-2 publishing a shared volume: %v", err)
	}
	on3, err := n.node3.publish(vol.VolumeId, "shared")
	if err != nil {
		t.Fatalf("node-3 publishing a shared volume: %v", err)
	}
	if err := os.WriteFile(filepath.Join(on2, "f"), []byte("written on node-2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(on3, "f")); err != nil || string(got) != "written on node-2" {
		t.Errorf("node-3 reading what node-2 wrote: %q, %v", got, err)
	}

	snap := ctrl.mustSnapshot(t, "shared-revision", vol.VolumeId)
	if !strings.HasSuffix(snap.SnapshotId, idPoolSeparator+sharedPool) {
		t.Errorf("snapshot of a shared volume = %s, want it in the shared pool", snap.SnapshotId)
	}
	clone := ctrl.mustCreate(t, createReq("shared-instance", shared, nil, fromSnapshot(snap.SnapshotId)))
	if len(clone.AccessibleTopology) != 0 {
		t.Errorf("clone of a shared snapshot has topology %v, want none", clone.AccessibleTopology)
	}

	_, err = ctrl.ctrl.CreateVolume(ctx, createReq("local-from-shared", nil, nil, fromSnapshot(snap.SnapshotId)))
	wantCode(t, "node-local clone of a shared snapshot", err, codes.InvalidArgument, "is in the shared pool")
	local := ctrl.mustCreate(t, createReq("local", nil, nil, nil))
	localSnap := ctrl.mustSnapshot(t, "local-revision", local.VolumeId)
	_, err = ctrl.ctrl.CreateVolume(ctx, createReq("shared-from-local", shared, nil, fromSnapshot(localSnap.SnapshotId)))
	wantCode(t, "shared clone of a node-local snapshot", err, codes.InvalidArgument, "can only be made from the shared pool")
}

// TestPoolParameterErrors checks what a wrong StorageClass gets back.
func TestPoolParameterErrors(t *testing.T) {
	h := startDriver(t) // --root only: no shared pool
	ctx := context.Background()
	tests := []struct {
		name    string
		params  map[string]string
		code    codes.Code
		message string
	}{
		{"unknown pool", map[string]string{PoolParameter: "nfs"}, codes.InvalidArgument, `parameter pool="nfs"`},
		{"no shared pool", map[string]string{PoolParameter: PoolShared}, codes.InvalidArgument, "this driver has no shared pool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.ctrl.CreateVolume(ctx, createReq("v", tt.params, nil, nil))
			wantCode(t, "CreateVolume", err, tt.code, tt.message)
		})
	}
	// Node-local by name or by default behaves as before pools existed.
	for _, params := range []map[string]string{nil, {PoolParameter: PoolNode}} {
		if got := topologyNode(h.mustCreate(t, createReq("local", params, nil, nil))); got != testNode {
			t.Errorf("node-local volume with parameters %v on %q, want %s", params, got, testNode)
		}
	}
}
