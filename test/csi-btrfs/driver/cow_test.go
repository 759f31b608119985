package driver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
)

const payloadSize = 256 << 20

// TestCopyOnWrite checks what a user of the driver relies on: snapshots and clones of a large
// volume are complete, independent copies, yet cost next to no space or time.
func TestCopyOnWrite(t *testing.T) {
	h := startDriver(t)
	ctx := context.Background()

	origin := h.createVolume(t, "origin", 1<<30, nil)
	originFile := filepath.Join(h.volumePath(origin.VolumeId), "data")
	want := writeRandom(t, originFile, payloadSize, 1)

	h.syncFS(t)
	before := usedBytes(t, h.root)
	start := time.Now()
	snapResp, err := h.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: origin.VolumeId})
	if err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	snap := snapResp.GetSnapshot()
	if !snap.GetReadyToUse() || snap.GetSizeBytes() != origin.CapacityBytes || snap.GetCreationTime() == nil {
		t.Errorf("snapshot = %v, want ready, size %d, creation time set", snap, origin.CapacityBytes)
	}
	clone := h.createVolume(t, "clone", 0, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.SnapshotId},
	}})
	elapsed := time.Since(start)
	h.syncFS(t)
	growth := usedBytes(t, h.root) - before
	t.Logf("snapshot and clone of %d MiB took %v and %d KiB", payloadSize>>20, elapsed, growth>>10)
	if growth > payloadSize/10 {
		t.Errorf("snapshot and clone used %d bytes, want < %d: they copied data", growth, payloadSize/10)
	}
	if clone.CapacityBytes < snap.SizeBytes {
		t.Errorf("clone capacity %d smaller than snapshot size %d", clone.CapacityBytes, snap.SizeBytes)
	}
	if got := clone.GetContentSource().GetSnapshot().GetSnapshotId(); got != snap.SnapshotId {
		t.Errorf("clone content source = %q, want snapshot %q", got, snap.SnapshotId)
	}

	cloneFile := filepath.Join(h.volumePath(clone.VolumeId), "data")
	snapFile := filepath.Join(h.subvolume(kindSnapshot, snap.SnapshotId), "data")
	if got := hashFile(t, cloneFile); got != want {
		t.Fatalf("clone content differs from origin")
	}

	// Overwrite the start of the clone: origin and snapshot must keep the original bytes.
	f, err := os.OpenFile(cloneFile, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xAB}, 1<<20), 0); err != nil {
		t.Fatalf("writing to clone: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if hashFile(t, cloneFile) == want {
		t.Errorf("write to clone did not change it")
	}
	if hashFile(t, originFile) != want {
		t.Errorf("write to clone changed the origin")
	}
	if hashFile(t, snapFile) != want {
		t.Errorf("write to clone changed the snapshot")
	}
	if err := os.WriteFile(snapFile, []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing into the snapshot: err = %v, want EROFS", err)
	}

	// A clone of a volume, as for a PVC with a PVC data source, is just as independent.
	volClone := h.createVolume(t, "volume-clone", 0, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: origin.VolumeId},
	}})
	if got := hashFile(t, filepath.Join(h.volumePath(volClone.VolumeId), "data")); got != want {
		t.Errorf("volume clone content differs from origin")
	}

	// Deleting the origin leaves snapshot and clone intact: btrfs shares extents, not ownership.
	if _, err := h.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: origin.VolumeId}); err != nil {
		t.Fatalf("DeleteVolume(origin): %v", err)
	}
	if hashFile(t, snapFile) != want {
		t.Errorf("snapshot changed after deleting its origin")
	}
}

// TestQuotaLimitsWrites checks that a volume's size is enforced, not merely reported.
func TestQuotaLimitsWrites(t *testing.T) {
	h := startDriver(t)
	vol := h.createVolume(t, "small", 64<<20, nil)
	f, err := os.Create(filepath.Join(h.volumePath(vol.VolumeId), "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{2})
	n, err := io.CopyN(f, rng, 128<<20)
	if err == nil {
		err = f.Sync()
	}
	if !errors.Is(err, unix.EDQUOT) && !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("writing 128 MiB into a 64 MiB volume: wrote %d bytes, err = %v, want EDQUOT or ENOSPC", n, err)
	}
	if n > 64<<20 {
		t.Errorf("wrote %d bytes into a 64 MiB volume", n)
	}
	t.Logf("write stopped after %d MiB: %v", n>>20, err)

	// Expanding raises the limit for the mounted volume at once.
	if _, err := h.ctrl.ControllerExpandVolume(context.Background(), &csi.ControllerExpandVolumeRequest{
		VolumeId: vol.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 256 << 20},
	}); err != nil {
		t.Fatalf("ControllerExpandVolume: %v", err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rng, 64<<20); err != nil {
		t.Errorf("writing after expansion to 256 MiB: %v", err)
	}
}

func (h *harness) createVolume(t *testing.T, name string, size int64, src *csi.VolumeContentSource) *csi.Volume {
	t.Helper()
	req := &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: mountCap(), VolumeContentSource: src}
	if size > 0 {
		req.CapacityRange = &csi.CapacityRange{RequiredBytes: size}
	}
	resp, err := h.ctrl.CreateVolume(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateVolume(%s): %v", name, err)
	}
	return resp.GetVolume()
}

func (h *harness) volumePath(id string) string { return h.subvolume(kindVolume, id) }

// subvolume is where a volume or snapshot of h's own pool lives, whichever pool its ID names:
// a test checking that it is in the right pool looks there.
func (h *harness) subvolume(kind, id string) string {
	local, _, _ := strings.Cut(id, idPoolSeparator)
	return filepath.Join(h.root, kind, local)
}

// syncFS commits the running transaction so that statfs reflects every write so far.
func (h *harness) syncFS(t *testing.T) {
	t.Helper()
	run(t, "btrfs", "filesystem", "sync", h.root)
}

func usedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatalf("statfs %s: %v", path, err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// writeRandom writes incompressible data, so that no filesystem trick can make copies look cheap.
func writeRandom(t *testing.T, path string, size int64, seed byte) [sha256.Size]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.NewChaCha8([32]byte{seed}), size); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("syncing %s: %v", path, err)
	}
	return [sha256.Size]byte(h.Sum(nil))
}

func hashFile(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return [sha256.Size]byte(h.Sum(nil))
}
