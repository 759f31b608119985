package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Fault injection lets end-to-end tests provoke what a real storage system does now and then: a
// snapshot that fails, or one that takes long to become usable. A test writes one of the Fault
// values into <fault dir>/<namespace>; only snapshots of VolumeSnapshots in that namespace are
// affected, so tests running in parallel in their own namespaces do not disturb each other.

// Fault is what the fault file of a namespace asks for.
type Fault string

const (
	// FaultFail fails every CreateSnapshot while the file says so.
	FaultFail Fault = "fail"
	// FaultFailOnce fails one CreateSnapshot; the driver removes the file as it fails.
	FaultFailOnce Fault = "fail-once"
	// FaultStall takes the snapshot but reports it not ready to use while the file says so.
	FaultStall Fault = "stall"
)

// NamespaceParameter is the CreateSnapshot parameter naming the VolumeSnapshot's namespace;
// csi-snapshotter sends it when started with --extra-create-metadata.
const NamespaceParameter = "csi.storage.k8s.io/volumesnapshot/namespace"

// snapshotFault reads the fault file of a namespace. No fault directory, no namespace and no
// file all mean normal behaviour.
func (d *driver) snapshotFault(namespace string) (Fault, error) {
	if d.cfg.FaultDir == "" || !validNamespace(namespace) {
		return "", nil
	}
	b, err := os.ReadFile(filepath.Join(d.cfg.FaultDir, namespace))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading fault file of namespace %s: %w", namespace, err)
	}
	switch f := Fault(strings.TrimSpace(string(b))); f {
	case FaultFail, FaultFailOnce, FaultStall:
		return f, nil
	case "":
		return "", nil
	default:
		// A typo must not pass for a working fault: the test would then check nothing.
		return "", fmt.Errorf("fault file of namespace %s: unknown fault %q (want %s, %s or %s)", namespace, f, FaultFail, FaultFailOnce, FaultStall)
	}
}

// injectSnapshotFailure returns the error a fail or fail-once fault asks for, or nil. It runs
// with d.mu held, so that of two concurrent snapshots only one consumes a fail-once.
func (d *driver) injectSnapshotFailure(namespace string) error {
	f, err := d.snapshotFault(namespace)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	switch f {
	case FaultFailOnce:
		if err := os.Remove(filepath.Join(d.cfg.FaultDir, namespace)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return status.Errorf(codes.Internal, "consuming fail-once fault of namespace %s: %v", namespace, err)
		}
		fallthrough
	case FaultFail:
		d.log.Warn("injecting snapshot failure", "namespace", namespace, "fault", f)
		return status.Errorf(codes.Internal, "injected snapshot failure for namespace %s", namespace)
	}
	return nil
}

// stalled tells whether snapshots of the namespace are to be reported not ready. An unreadable
// fault file counts as no stall: the snapshot itself exists and is complete.
func (d *driver) stalled(namespace string) bool {
	f, err := d.snapshotFault(namespace)
	if err != nil {
		d.log.Warn("ignoring fault file", "err", err)
	}
	return f == FaultStall
}

// validNamespace accepts Kubernetes namespace names only, so that a parameter can never name a
// path outside the fault directory.
func validNamespace(ns string) bool {
	if ns == "" || len(ns) > 63 {
		return false
	}
	for _, c := range ns {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}
