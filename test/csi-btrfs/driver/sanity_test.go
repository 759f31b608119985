package driver

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
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
		sc.DialOptions = append(sc.DialOptions, grpc.WithStatsHandler(slowHandshake{}))
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

// slowHandshake holds each new client connection back a moment before it can become ready.
// csi-test's utils.Connect reads the channel's state after dialing and then waits for it to
// change: a channel that is already Ready by then never changes, and the suite fails a minute
// later with "Connection timed out". On a loaded machine that happened in most runs.
type slowHandshake struct{}

func (slowHandshake) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	time.Sleep(200 * time.Millisecond)
	return ctx
}

func (slowHandshake) HandleConn(context.Context, stats.ConnStats) {}

func (slowHandshake) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (slowHandshake) HandleRPC(context.Context, stats.RPCStats) {}
