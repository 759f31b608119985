package driver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type node struct {
	csi.UnimplementedNodeServer
	d *driver
}

func (*node) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{
			Rpc: &csi.NodeServiceCapability_RPC{Type: t},
		}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (n *node) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{
		NodeId:             n.d.cfg.NodeID,
		AccessibleTopology: &csi.Topology{Segments: map[string]string{TopologyKey: n.d.cfg.NodeID}},
	}, nil
}

func (n *node) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	if err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	d := n.d
	vol, _, err := d.servedVolume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	readOnly := req.GetReadonly() || req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	target := filepath.Clean(req.GetTargetPath())

	// Serialised so that concurrent retries for one target cannot stack two bind mounts.
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, internal(fmt.Errorf("creating target %s: %w", target, err))
	}
	target, err = realPath(target)
	if err != nil {
		return nil, internal(err)
	}
	m, err := mountAt(target)
	if err != nil {
		return nil, internal(err)
	}
	if m != nil {
		if !strings.HasSuffix(m.root, "/"+kindVolume+"/"+vol.local) || m.readOnly != readOnly {
			return nil, status.Errorf(codes.AlreadyExists, "%s is already a mount of %s (read-only %t)", target, m.root, m.readOnly)
		}
		return &csi.NodePublishVolumeResponse{}, nil
	}
	if err := bindMount(vol.path(kindVolume), target, readOnly); err != nil {
		return nil, internal(err)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// bindMount needs two calls for read-only: the kernel ignores MS_RDONLY on the initial bind.
func bindMount(src, target string, readOnly bool) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting %s on %s: %w", src, target, err)
	}
	if !readOnly {
		return nil
	}
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		err = fmt.Errorf("making %s read-only: %w", target, err)
		if uerr := unix.Unmount(target, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undoing bind mount on %s: %w", target, uerr))
		}
		return err
	}
	return nil
}

func (n *node) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	n.d.mu.Lock()
	defer n.d.mu.Unlock()
	target, err := realPath(filepath.Clean(req.GetTargetPath()))
	if errors.Is(err, os.ErrNotExist) {
		return &csi.NodeUnpublishVolumeResponse{}, nil
	}
	if err != nil {
		return nil, internal(err)
	}
	// Loop because a mount stacked by an earlier crash would otherwise keep the target busy.
	for {
		m, err := mountAt(target)
		if err != nil {
			return nil, internal(err)
		}
		if m == nil {
			break
		}
		if err := unix.Unmount(target, 0); err != nil {
			return nil, internal(fmt.Errorf("unmounting %s: %w", target, err))
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, internal(fmt.Errorf("removing target %s: %w", target, err))
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (n *node) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume path is required")
	}
	d := n.d
	vol, rec, err := d.servedVolume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(req.GetVolumePath()); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume path %s: %v", req.GetVolumePath(), err)
	}
	// Qgroup accounting trails writes by up to one transaction commit (30 s by default), which
	// is fine for kubelet's periodic stats and cheaper than forcing a commit on every call.
	used, err := d.fs.referenced(ctx, vol.path(kindVolume))
	if err != nil {
		return nil, internal(err)
	}
	available := max(rec.Capacity-used, 0)
	// The limit is a promise only as far as the filesystem has room: volumes overcommit it.
	var st unix.Statfs_t
	if err := unix.Statfs(vol.pool.store.root, &st); err == nil {
		available = min(available, int64(st.Bavail)*st.Bsize)
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{
		Unit:      csi.VolumeUsage_BYTES,
		Total:     rec.Capacity,
		Used:      used,
		Available: available,
	}}}, nil
}

// realPath resolves symlinks because the mount table lists resolved paths: an unresolved
// target would never be found mounted and would get a second mount on every retry.
func realPath(path string) (string, error) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", path, err)
	}
	return p, nil
}

// mountEntry is the part of a /proc/self/mountinfo line that identifies a bind mount.
type mountEntry struct {
	root     string // path inside the mounted filesystem: the bound directory
	readOnly bool
}

// mountAt returns the topmost mount on target, nil when it is not a mount point.
func mountAt(target string) (*mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close()
	m, err := findMount(f, target)
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	return m, nil
}

// findMount keeps the last match: later lines are mounted on top of earlier ones.
func findMount(r io.Reader, target string) (*mountEntry, error) {
	var found *mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || unescapeMountPath(fields[4]) != target {
			continue
		}
		m := &mountEntry{root: unescapeMountPath(fields[3])}
		for _, opt := range strings.Split(fields[5], ",") {
			if opt == "ro" {
				m.readOnly = true
			}
		}
		found = m
	}
	return found, sc.Err()
}

// unescapeMountPath undoes the kernel's octal escapes (\040 for space and the like).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
