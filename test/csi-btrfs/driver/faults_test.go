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

// startDriverWithFaults runs the driver with fault injection enabled and returns it with its
// fault directory.
func startDriverWithFaults(t *testing.T) (*harness, string) {
	t.Helper()
	dir, root := newBtrfs(t)
	h := &harness{dir: dir, root: root, sock: filepath.Join(dir, "csi.sock")}
	faults := filepath.Join(dir, "faults")
	h.start(t, Config{FaultDir: faults})
	return h, faults
}

func setFault(t *testing.T, dir, namespace string, f Fault) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, namespace), []byte(string(f)+"\n"), 0o644); err != nil {
		t.Fatalf("writing fault file: %v", err)
	}
}

func clearFault(t *testing.T, dir, namespace string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, namespace)); err != nil {
		t.Fatalf("removing fault file: %v", err)
	}
}

// snapshotIn asks for a snapshot as csi-snapshotter does for a VolumeSnapshot in namespace.
func (h *harness) snapshotIn(namespace, name, volumeID string) (*csi.Snapshot, error) {
	resp, err := h.ctrl.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{
		Name:           name,
		SourceVolumeId: volumeID,
		Parameters: map[string]string{
			NamespaceParameter:                              namespace,
			"csi.storage.k8s.io/volumesnapshot/name":        name,
			"csi.storage.k8s.io/volumesnapshotcontent/name": "content-" + name,
		},
	})
	return resp.GetSnapshot(), err
}

func wantInjectedFailure(t *testing.T, err error, namespace string) {
	t.Helper()
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "injected snapshot failure for namespace "+namespace) {
		t.Fatalf("CreateSnapshot: err = %v, want the injected Internal failure for %s", err, namespace)
	}
}

func (h *harness) snapshotCount(t *testing.T) int {
	t.Helper()
	resp, err := h.ctrl.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatalf("ListSnapshots: %v", err)
	}
	return len(resp.GetEntries())
}

func TestFaultFail(t *testing.T) {
	h, faults := startDriverWithFaults(t)
	vol := h.createVolume(t, "data", 64<<20, nil)
	setFault(t, faults, "team-a", FaultFail)

	for range 3 {
		_, err := h.snapshotIn("team-a", "snap-a", vol.VolumeId)
		wantInjectedFailure(t, err, "team-a")
	}
	if n := h.snapshotCount(t); n != 0 {
		t.Fatalf("%d snapshots after failed creates, want none: a failure must leave nothing behind", n)
	}
	// Other namespaces are not affected.
	if snap, err := h.snapshotIn("team-b", "snap-b", vol.VolumeId); err != nil || !snap.GetReadyToUse() {
		t.Fatalf("snapshot in another namespace: %v, err %v; want ready", snap, err)
	}

	clearFault(t, faults, "team-a")
	if snap, err := h.snapshotIn("team-a", "snap-a", vol.VolumeId); err != nil || !snap.GetReadyToUse() {
		t.Fatalf("snapshot after clearing the fault: %v, err %v; want ready", snap, err)
	}
}

func TestFaultFailOnce(t *testing.T) {
	h, faults := startDriverWithFaults(t)
	vol := h.createVolume(t, "data", 64<<20, nil)
	setFault(t, faults, "team-a", FaultFailOnce)

	_, err := h.snapshotIn("team-a", "snap-a", vol.VolumeId)
	wantInjectedFailure(t, err, "team-a")
	if _, err := os.Stat(filepath.Join(faults, "team-a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("fault file after the one failure: %v, want it removed", err)
	}
	// The sidecar's retry of the same snapshot succeeds.
	snap, err := h.snapshotIn("team-a", "snap-a", vol.VolumeId)
	if err != nil || !snap.GetReadyToUse() {
		t.Fatalf("retry after fail-once: %v, err %v; want ready", snap, err)
	}
	if _, err := os.Stat(h.subvolume(kindSnapshot, snap.GetSnapshotId())); err != nil {
		t.Fatalf("snapshot subvolume: %v", err)
	}
}

func TestFaultStall(t *testing.T) {
	h, faults := startDriverWithFaults(t)
	vol := h.createVolume(t, "data", 64<<20, nil)
	if err := os.WriteFile(filepath.Join(h.volumePath(vol.VolumeId), "f"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	setFault(t, faults, "team-a", FaultStall)

	// The snapshot is taken at once; only its readiness is withheld, call after call.
	var id string
	for i := range 3 {
		snap, err := h.snapshotIn("team-a", "snap-a", vol.VolumeId)
		if err != nil {
			t.Fatalf("CreateSnapshot #%d while stalled: %v", i+1, err)
		}
		if snap.GetReadyToUse() || snap.GetSnapshotId() == "" {
			t.Fatalf("CreateSnapshot #%d while stalled = %v, want an ID and not ready", i+1, snap)
		}
		id = snap.GetSnapshotId()
	}
	if b, err := os.ReadFile(filepath.Join(h.subvolume(kindSnapshot, id), "f")); err != nil || string(b) != "content" {
		t.Fatalf("stalled snapshot's content: %q, %v", b, err)
	}
	list, err := h.ctrl.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{SnapshotId: id})
	if err != nil || len(list.GetEntries()) != 1 || list.GetEntries()[0].GetSnapshot().GetReadyToUse() {
		t.Fatalf("ListSnapshots while stalled: %v, err %v; want the snapshot, not ready", list, err)
	}

	clearFault(t, faults, "team-a")
	snap, err := h.snapshotIn("team-a", "snap-a", vol.VolumeId)
	if err != nil || !snap.GetReadyToUse() || snap.GetSnapshotId() != id {
		t.Fatalf("CreateSnapshot after the stall: %v, err %v; want %s ready", snap, err, id)
	}
}

func TestFaultFileChecked(t *testing.T) {
	h, faults := startDriverWithFaults(t)
	vol := h.createVolume(t, "data", 64<<20, nil)

	// A misspelt fault is an error, not silently no fault.
	setFault(t, faults, "team-a", "stal")
	if _, err := h.snapshotIn("team-a", "snap-a", vol.VolumeId); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "unknown fault") {
		t.Fatalf("CreateSnapshot with a misspelt fault: err = %v, want unknown fault", err)
	}

	// The namespace parameter cannot reach files outside the fault directory.
	setFault(t, h.dir, "outside", FaultFail)
	snap, err := h.snapshotIn("../outside", "snap-b", vol.VolumeId)
	if err != nil || !snap.GetReadyToUse() {
		t.Fatalf("snapshot in namespace ../outside: %v, err %v; want ready", snap, err)
	}

	// Without the parameter (a sidecar without --extra-create-metadata) nothing is injected.
	resp, err := h.ctrl.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "snap-c", SourceVolumeId: vol.VolumeId})
	if err != nil || !resp.GetSnapshot().GetReadyToUse() {
		t.Fatalf("snapshot without namespace: %v, err %v; want ready", resp, err)
	}
}
