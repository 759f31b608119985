//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// snapshotFaultDir is where the local cluster's CSI driver looks for fault files (its
// --fault-dir, set by hack/dev-cluster.sh); the tests run on the cluster's host and write there
// directly. MYAAS_CSI_FAULT_DIR overrides it for a cluster started otherwise.
func snapshotFaultDir() string {
	if dir := os.Getenv("MYAAS_CSI_FAULT_DIR"); dir != "" {
		return dir
	}
	return "/run/myaas-dev/csi-faults"
}

// injectSnapshotFault makes the CSI driver fail or stall the snapshots of VolumeSnapshots in ns:
//
//	fail       every CreateSnapshot fails with "injected snapshot failure for namespace <ns>"
//	fail-once  the next CreateSnapshot fails; the driver then removes the fault by itself
//	stall      snapshots are taken but stay not ready to use until clearSnapshotFault
//
// The fault is cleared when the test ends.
func injectSnapshotFault(t *testing.T, ns, fault string) {
	t.Helper()
	switch fault {
	case "fail", "fail-once", "stall":
	default:
		t.Fatalf("unknown snapshot fault %q: want fail, fail-once or stall", fault)
	}
	dir := snapshotFaultDir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("snapshot fault directory: %v (is the cluster's CSI driver running with --fault-dir %s?)", err, dir)
	}
	// The driver reads the file on every call: it must never see a half-written one.
	tmp := filepath.Join(dir, "."+ns+".tmp")
	if err := os.WriteFile(tmp, []byte(fault+"\n"), 0o644); err != nil {
		t.Fatalf("writing snapshot fault: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ns)); err != nil {
		t.Fatalf("installing snapshot fault: %v", err)
	}
	t.Cleanup(func() { clearSnapshotFault(t, ns) })
}

// clearSnapshotFault restores normal snapshots in ns; a stalled snapshot becomes ready at the
// sidecar's next poll.
func clearSnapshotFault(t *testing.T, ns string) {
	t.Helper()
	if err := removeSnapshotFault(ns); err != nil {
		t.Errorf("clearing snapshot fault: %v", err)
	}
}

func removeSnapshotFault(ns string) error {
	err := os.Remove(filepath.Join(snapshotFaultDir(), ns))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return nil
}
