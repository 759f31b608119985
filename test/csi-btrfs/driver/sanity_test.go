package driver

import (
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
)

// TestSanity runs the upstream CSI conformance suite, the same checks the sidecars rely on.
func TestSanity(t *testing.T) {
	h := startDriver(t)
	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + h.sock
	cfg.TargetPath = filepath.Join(h.dir, "target")
	cfg.StagingPath = filepath.Join(h.dir, "staging")
	// Sizes are qgroup limits, so these need no real space; kept small all the same.
	cfg.TestVolumeSize = 64 << 20
	cfg.TestVolumeExpandSize = 128 << 20
	sanity.Test(t, cfg)
}
