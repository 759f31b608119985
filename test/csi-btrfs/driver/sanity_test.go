package driver

import (
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
)

// TestSanity runs the upstream CSI conformance suite, the same checks the sidecars rely on, in
// both modes: node-local volumes as before pools existed, and volumes in the shared pool.
// Ginkgo runs one suite per process, so both modes are containers of that one suite.
func TestSanity(t *testing.T) {
	var suites []*sanity.TestContext
	for _, mode := range []string{PoolNode, PoolShared} {
		dir, root := newBtrfs(t)
		h := &harness{dir: dir, root: root, sock: filepath.Join(dir, "csi.sock")}
		var cfg Config
		if mode == PoolShared {
			_, cfg.SharedRoot = newBtrfs(t)
		}
		h.start(t, cfg)
		sc := sanity.NewTestConfig()
		sc.Address = "unix://" + h.sock
		sc.TargetPath = filepath.Join(h.dir, "target")
		sc.StagingPath = filepath.Join(h.dir, "staging")
		sc.TestVolumeParameters = map[string]string{PoolParameter: mode}
		// Sizes are qgroup limits, so these need no real space; kept small all the same.
		sc.TestVolumeSize = 64 << 20
		sc.TestVolumeExpandSize = 128 << 20
		ginkgo.Describe("pool="+mode, func() { suites = append(suites, sanity.GinkgoTest(&sc)) })
	}
	gomega.RegisterFailHandler(ginkgo.Fail)
	ginkgo.RunSpecs(t, "CSI Driver Test Suite")
	for _, s := range suites {
		s.Finalize()
	}
}
