package driver

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type controller struct {
	csi.UnimplementedControllerServer
	d *driver
}

func (*controller) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: t},
		}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// internal reports an unexpected failure as Internal but keeps its message: the sidecars copy it
// into Kubernetes events, where it is often the only clue to what btrfs refused.
func internal(err error) error {
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

func (c *controller) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()

	// A retry finds its volume even if the source has been deleted since.
	wantSource := req.GetVolumeContentSource().GetSnapshot().GetSnapshotId() + req.GetVolumeContentSource().GetVolume().GetVolumeId()
	id := idFor(kindVolume, req.GetName())
	existing, err := d.store.get(kindVolume, id)
	if err != nil {
		return nil, internal(err)
	}
	if existing != nil {
		if !fits(existing.Capacity, req.GetCapacityRange()) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with capacity %d, outside the requested range", req.GetName(), existing.Capacity)
		}
		if existing.Source != wantSource {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with content source %q, not %q", req.GetName(), existing.Source, wantSource)
		}
		return &csi.CreateVolumeResponse{Volume: d.volume(existing)}, nil
	}

	var sourceID, sourcePath string
	var sourceSize int64
	switch src := req.GetVolumeContentSource().GetType().(type) {
	case nil:
	case *csi.VolumeContentSource_Snapshot:
		snap, err := d.store.get(kindSnapshot, src.Snapshot.GetSnapshotId())
		if err != nil {
			return nil, internal(err)
		}
		if snap == nil {
			return nil, status.Errorf(codes.NotFound, "source snapshot %q not found", src.Snapshot.GetSnapshotId())
		}
		sourceID, sourceSize, sourcePath = snap.ID, snap.Capacity, d.store.path(kindSnapshot, snap.ID)
	case *csi.VolumeContentSource_Volume:
		vol, err := d.existingVolume(src.Volume.GetVolumeId(), "source volume")
		if err != nil {
			return nil, err
		}
		sourceID, sourceSize, sourcePath = vol.ID, vol.Capacity, d.store.path(kindVolume, vol.ID)
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unsupported volume content source %T", src)
	}

	size, err := capacityFor(req.GetCapacityRange(), sourceSize)
	if err != nil {
		return nil, err
	}
	path := d.store.path(kindVolume, id)
	if err := d.clearLeftover(ctx, path); err != nil {
		return nil, internal(err)
	}
	if sourcePath == "" {
		err = d.fs.create(ctx, path)
	} else {
		err = d.fs.snapshot(ctx, sourcePath, path, false)
	}
	if err != nil {
		return nil, internal(err)
	}
	rec := &record{ID: id, Name: req.GetName(), Capacity: size, Source: sourceID, Created: time.Now().UTC()}
	if err := d.fs.limit(ctx, path, size); err != nil {
		return nil, internal(d.undo(ctx, path, err))
	}
	if err := d.store.put(kindVolume, rec); err != nil {
		return nil, internal(d.undo(ctx, path, err))
	}
	return &csi.CreateVolumeResponse{Volume: d.volume(rec)}, nil
}

// clearLeftover removes a subvolume that has no metadata: a create interrupted between the two.
// Its ID is derived from the name, so the retry would otherwise collide with it forever.
func (d *driver) clearLeftover(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	d.log.Warn("removing subvolume left by an interrupted create", "path", path)
	return d.fs.delete(ctx, path)
}

// undo deletes a half-made subvolume so that the retry starts clean.
func (d *driver) undo(ctx context.Context, path string, cause error) error {
	if err := d.fs.delete(ctx, path); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

func (d *driver) volume(r *record) *csi.Volume {
	v := &csi.Volume{
		VolumeId:           r.ID,
		CapacityBytes:      r.Capacity,
		AccessibleTopology: []*csi.Topology{{Segments: map[string]string{TopologyKey: d.cfg.NodeID}}},
	}
	switch {
	case strings.HasPrefix(r.Source, "snap-"):
		v.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: r.Source},
		}}
	case strings.HasPrefix(r.Source, "vol-"):
		v.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: r.Source},
		}}
	}
	return v
}

func (c *controller) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if err := c.d.remove(ctx, kindVolume, req.GetVolumeId()); err != nil {
		return nil, internal(err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// remove deletes a volume or snapshot; an unknown ID is already gone. Snapshots and clones do
// not pin their origin in btrfs, so nothing has to be checked first.
func (d *driver) remove(ctx context.Context, kind, id string) error {
	if !validID(kind, id) {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	path := d.store.path(kind, id)
	if _, err := os.Lstat(path); err == nil {
		if err := d.fs.delete(ctx, path); err != nil {
			return err
		}
	}
	return d.store.remove(kind, id)
}

func (c *controller) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	if _, err := c.d.existingVolume(req.GetVolumeId(), "volume"); err != nil {
		return nil, err
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

func (c *controller) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	recs, err := c.d.store.list(kindVolume)
	if err != nil {
		return nil, internal(err)
	}
	page, next, err := paginate(recs, recordID, func(t string) bool { return validID(kindVolume, t) }, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, r := range page {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: c.d.volume(r)})
	}
	return resp, nil
}

func recordID(r *record) string { return r.ID }

func (c *controller) GetCapacity(context.Context, *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(c.d.cfg.Root, &st); err != nil {
		return nil, internal(&os.PathError{Op: "statfs", Path: c.d.cfg.Root, Err: err})
	}
	return &csi.GetCapacityResponse{AvailableCapacity: int64(st.Bavail) * st.Bsize}, nil
}

func (c *controller) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "capacity range is required")
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	rec, err := d.existingVolume(req.GetVolumeId(), "volume")
	if err != nil {
		return nil, err
	}
	// Shrinking below the data already written would leave a volume that refuses every write.
	size, err := capacityFor(req.GetCapacityRange(), rec.Capacity)
	if err != nil {
		return nil, err
	}
	if size != rec.Capacity {
		if err := d.fs.limit(ctx, d.store.path(kindVolume, rec.ID), size); err != nil {
			return nil, internal(err)
		}
		rec.Capacity = size
		if err := d.store.put(kindVolume, rec); err != nil {
			return nil, internal(err)
		}
	}
	// A qgroup limit applies at once, also to a mounted volume: nothing for the node to do.
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: rec.Capacity}, nil
}

func (c *controller) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume ID is required")
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	namespace := req.GetParameters()[NamespaceParameter]
	if err := d.injectSnapshotFailure(namespace); err != nil {
		return nil, err
	}
	id := idFor(kindSnapshot, req.GetName())
	existing, err := d.store.get(kindSnapshot, id)
	if err != nil {
		return nil, internal(err)
	}
	if existing != nil {
		if existing.Source != req.GetSourceVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %q exists for volume %q, not %q", req.GetName(), existing.Source, req.GetSourceVolumeId())
		}
		return &csi.CreateSnapshotResponse{Snapshot: d.snapshot(existing)}, nil
	}
	vol, err := d.existingVolume(req.GetSourceVolumeId(), "source volume")
	if err != nil {
		return nil, err
	}
	path := d.store.path(kindSnapshot, id)
	if err := d.clearLeftover(ctx, path); err != nil {
		return nil, internal(err)
	}
	if err := d.fs.snapshot(ctx, d.store.path(kindVolume, vol.ID), path, true); err != nil {
		return nil, internal(err)
	}
	rec := &record{ID: id, Name: req.GetName(), Capacity: vol.Capacity, Source: vol.ID, Created: time.Now().UTC(), Namespace: namespace}
	if err := d.store.put(kindSnapshot, rec); err != nil {
		return nil, internal(d.undo(ctx, path, err))
	}
	return &csi.CreateSnapshotResponse{Snapshot: d.snapshot(rec)}, nil
}

// snapshot describes a snapshot record. A btrfs snapshot is complete the moment it exists, so
// only an injected stall makes one not ready to use.
func (d *driver) snapshot(r *record) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     r.ID,
		SourceVolumeId: r.Source,
		SizeBytes:      r.Capacity,
		CreationTime:   timestamppb.New(r.Created),
		ReadyToUse:     !d.stalled(r.Namespace),
	}
}

func (c *controller) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot ID is required")
	}
	if err := c.d.remove(ctx, kindSnapshot, req.GetSnapshotId()); err != nil {
		return nil, internal(err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (c *controller) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	recs, err := c.d.store.list(kindSnapshot)
	if err != nil {
		return nil, internal(err)
	}
	var matching []*record
	for _, r := range recs {
		if id := req.GetSnapshotId(); id != "" && r.ID != id {
			continue
		}
		if src := req.GetSourceVolumeId(); src != "" && r.Source != src {
			continue
		}
		matching = append(matching, r)
	}
	page, next, err := paginate(matching, recordID, func(t string) bool { return validID(kindSnapshot, t) }, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, r := range page {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: c.d.snapshot(r)})
	}
	return resp, nil
}

// existingVolume is the record of a volume a request names, or the CSI error for a missing one;
// what says which volume it is in the message ("volume", "source volume").
func (d *driver) existingVolume(id, what string) (*record, error) {
	rec, err := d.store.get(kindVolume, id)
	if err != nil {
		return nil, internal(err)
	}
	if rec == nil {
		return nil, status.Errorf(codes.NotFound, "%s %q not found", what, id)
	}
	return rec, nil
}
