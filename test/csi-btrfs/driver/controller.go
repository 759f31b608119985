package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
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
	poolKind, err := poolParameter(req.GetParameters())
	if err != nil {
		return nil, err
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()

	// A retry finds its volume even if the source has been deleted since.
	wantSource := d.canonicalID(req.GetVolumeContentSource().GetSnapshot().GetSnapshotId() + req.GetVolumeContentSource().GetVolume().GetVolumeId())
	existingRef, existing, err := d.findByName(kindVolume, idFor(kindVolume, req.GetName()))
	if err != nil {
		return nil, internal(err)
	}
	if existing != nil {
		if !fits(existing.Capacity, req.GetCapacityRange()) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with capacity %d, outside the requested range", req.GetName(), existing.Capacity)
		}
		if d.canonicalID(existing.Source) != wantSource {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with content source %q, not %q", req.GetName(), existing.Source, wantSource)
		}
		return &csi.CreateVolumeResponse{Volume: d.volume(existingRef, existing)}, nil
	}

	var source *ref
	var sourceKind string
	var sourceSize int64
	switch src := req.GetVolumeContentSource().GetType().(type) {
	case nil:
	case *csi.VolumeContentSource_Snapshot:
		r, snap, err := d.existing(kindSnapshot, src.Snapshot.GetSnapshotId(), "source snapshot")
		if err != nil {
			return nil, err
		}
		source, sourceKind, sourceSize = &r, kindSnapshot, snap.Capacity
	case *csi.VolumeContentSource_Volume:
		r, vol, err := d.existingVolume(src.Volume.GetVolumeId(), "source volume")
		if err != nil {
			return nil, err
		}
		source, sourceKind, sourceSize = &r, kindVolume, vol.Capacity
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unsupported volume content source %T", src)
	}
	target, err := d.placeVolume(poolKind, source, req.GetAccessibilityRequirements())
	if err != nil {
		return nil, err
	}

	size, err := capacityFor(req.GetCapacityRange(), sourceSize)
	if err != nil {
		return nil, err
	}
	vol := ref{pool: target, local: idFor(kindVolume, req.GetName())}
	path := vol.path(kindVolume)
	if err := d.clearLeftover(ctx, path); err != nil {
		return nil, internal(err)
	}
	rec := &record{ID: vol.local, Name: req.GetName(), Capacity: size, Created: time.Now().UTC()}
	if source == nil {
		err = d.fs.create(ctx, path)
	} else {
		rec.Source = source.id()
		err = d.fs.snapshot(ctx, source.path(sourceKind), path, false)
	}
	if err != nil {
		return nil, internal(err)
	}
	if err := d.fs.limit(ctx, path, size); err != nil {
		return nil, internal(d.undo(ctx, path, err))
	}
	if err := target.store.put(kindVolume, rec); err != nil {
		return nil, internal(d.undo(ctx, path, err))
	}
	return &csi.CreateVolumeResponse{Volume: d.volume(vol, rec)}, nil
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

func (d *driver) volume(at ref, r *record) *csi.Volume {
	v := &csi.Volume{
		VolumeId:           at.id(),
		CapacityBytes:      r.Capacity,
		AccessibleTopology: at.pool.topology(),
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
	r, ok, err := d.resolve(kind, id)
	if err != nil || !ok {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	path := r.path(kind)
	if _, err := os.Lstat(path); err == nil {
		if err := d.fs.delete(ctx, path); err != nil {
			return err
		}
	}
	return r.pool.store.remove(kind, r.local)
}

func (c *controller) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	if _, _, err := c.d.existingVolume(req.GetVolumeId(), "volume"); err != nil {
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
	recs, err := c.d.list(kindVolume)
	if err != nil {
		return nil, internal(err)
	}
	page, next, err := paginate(recs, located.id, c.d.validToken(kindVolume), req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, l := range page {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: c.d.volume(l.at, l.rec)})
	}
	return resp, nil
}

// located is a record with the pool it was found in.
type located struct {
	at  ref
	rec *record
}

func (l located) id() string { return l.at.id() }

// list returns the records of a kind in every pool, by ID, for stable pagination.
func (d *driver) list(kind string) ([]located, error) {
	var out []located
	for _, p := range d.poolList() {
		recs, err := p.store.list(kind)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, r := range recs {
			out = append(out, located{at: ref{pool: p, local: r.ID}, rec: r})
		}
	}
	slices.SortFunc(out, func(a, b located) int { return strings.Compare(a.id(), b.id()) })
	return out, nil
}

// GetCapacity answers for the pool a volume with these parameters and topology would go to; a
// node this driver has no pool for has no room.
func (c *controller) GetCapacity(_ context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	poolKind, err := poolParameter(req.GetParameters())
	if err != nil {
		return nil, err
	}
	var reqs *csi.TopologyRequirement
	if t := req.GetAccessibleTopology(); t != nil {
		reqs = &csi.TopologyRequirement{Preferred: []*csi.Topology{t}}
	}
	p, err := c.d.placeVolume(poolKind, nil, reqs)
	if status.Code(err) == codes.ResourceExhausted {
		return &csi.GetCapacityResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p.store.root, &st); err != nil {
		return nil, internal(&os.PathError{Op: "statfs", Path: p.store.root, Err: err})
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
	vol, rec, err := d.existingVolume(req.GetVolumeId(), "volume")
	if err != nil {
		return nil, err
	}
	// Shrinking below the data already written would leave a volume that refuses every write.
	size, err := capacityFor(req.GetCapacityRange(), rec.Capacity)
	if err != nil {
		return nil, err
	}
	if size != rec.Capacity {
		if err := d.fs.limit(ctx, vol.path(kindVolume), size); err != nil {
			return nil, internal(err)
		}
		rec.Capacity = size
		if err := vol.pool.store.put(kindVolume, rec); err != nil {
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
	existingRef, existing, err := d.findByName(kindSnapshot, idFor(kindSnapshot, req.GetName()))
	if err != nil {
		return nil, internal(err)
	}
	if existing != nil {
		if d.canonicalID(existing.Source) != d.canonicalID(req.GetSourceVolumeId()) {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %q exists for volume %q, not %q", req.GetName(), existing.Source, req.GetSourceVolumeId())
		}
		return &csi.CreateSnapshotResponse{Snapshot: d.snapshot(existingRef, existing)}, nil
	}
	vol, volRec, err := d.existingVolume(req.GetSourceVolumeId(), "source volume")
	if err != nil {
		return nil, err
	}
	// A snapshot lives in its volume's pool: btrfs snapshots cannot leave their filesystem.
	snap := ref{pool: vol.pool, local: idFor(kindSnapshot, req.GetName())}
	path := snap.path(kindSnapshot)
	if err := d.clearLeftover(ctx, path); err != nil {
		return nil, internal(err)
	}
	if err := d.fs.snapshot(ctx, vol.path(kindVolume), path, true); err != nil {
		return nil, internal(err)
	}
	rec := &record{ID: snap.local, Name: req.GetName(), Capacity: volRec.Capacity, Source: vol.id(), Created: time.Now().UTC(), Namespace: namespace}
	if err := snap.pool.store.put(kindSnapshot, rec); err != nil {
		return nil, internal(d.undo(ctx, path, err))
	}
	return &csi.CreateSnapshotResponse{Snapshot: d.snapshot(snap, rec)}, nil
}

// snapshot describes a snapshot record. A btrfs snapshot is complete the moment it exists, so
// only an injected stall makes one not ready to use.
func (d *driver) snapshot(at ref, r *record) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     at.id(),
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
	d := c.d
	recs, err := d.list(kindSnapshot)
	if err != nil {
		return nil, internal(err)
	}
	var matching []located
	for _, l := range recs {
		if id := req.GetSnapshotId(); id != "" && l.id() != d.canonicalID(id) {
			continue
		}
		if src := req.GetSourceVolumeId(); src != "" && d.canonicalID(l.rec.Source) != d.canonicalID(src) {
			continue
		}
		matching = append(matching, l)
	}
	page, next, err := paginate(matching, located.id, d.validToken(kindSnapshot), req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, l := range page {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: d.snapshot(l.at, l.rec)})
	}
	return resp, nil
}

// existingVolume is the record of a volume a request names, or the CSI error for a missing one;
// what says which volume it is in the message ("volume", "source volume").
func (d *driver) existingVolume(id, what string) (ref, *record, error) {
	return d.existing(kindVolume, id, what)
}

// existing finds a volume or snapshot in the pool its ID names.
func (d *driver) existing(kind, id, what string) (ref, *record, error) {
	r, ok, err := d.resolve(kind, id)
	if err != nil {
		return ref{}, nil, err
	}
	var rec *record
	if ok {
		if rec, err = r.pool.store.get(kind, r.local); err != nil {
			return ref{}, nil, internal(err)
		}
	}
	if rec == nil {
		return ref{}, nil, status.Errorf(codes.NotFound, "%s %q not found", what, id)
	}
	return r, rec, nil
}
