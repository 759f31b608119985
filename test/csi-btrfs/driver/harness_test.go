package driver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/myaas/myaas/internal/testdeps"
)

// requireBtrfs skips where a loop-mounted btrfs cannot be made, unless MYAAS_REQUIRE_BTRFS
// says this run exists to exercise it (see internal/testdeps).
func requireBtrfs(t *testing.T) {
	t.Helper()
	unavailable := func(reason string) {
		t.Helper()
		testdeps.Missing(t, testdeps.Btrfs, "btrfs is unavailable: "+reason+" (run hack/install-btrfs.sh as root)")
	}
	if os.Geteuid() != 0 {
		unavailable("not running as root")
	}
	for _, tool := range []string{"mkfs.btrfs", "btrfs", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(tool + " not found")
		}
	}
}

// newBtrfs mounts a fresh sparse 4 GiB btrfs on a loop device inside a temporary directory and
// returns that directory and the mount point. Everything tests mount must live inside the
// directory: cleanup unmounts whatever is mounted under it before the directory is removed,
// which would otherwise delete through bind mounts or fail on busy mount points.
func newBtrfs(t *testing.T) (dir, mnt string) {
	t.Helper()
	requireBtrfs(t)
	dir = t.TempDir()
	img := filepath.Join(dir, "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatalf("creating image: %v", err)
	}
	err = f.Truncate(4 << 30)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("sizing image: %v", err)
	}
	run(t, "mkfs.btrfs", "-q", img)
	mnt = filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatalf("creating mount point: %v", err)
	}
	// mount sets up the loop device with autoclear, so unmounting also detaches it.
	run(t, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() { unmountUnder(t, dir) })
	return dir, mnt
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unmountUnder unmounts everything below dir, deepest first, falling back to a lazy unmount
// so that a busy mount never outlives the test.
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("reading mount table: %v", err)
		return
	}
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountPath(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	f.Close()
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := unix.Unmount(p, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Logf("unmounting %s: %v; detaching lazily", p, err)
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				t.Errorf("detaching %s: %v", p, err)
			}
		}
	}
}

// harness is a running driver on a fresh filesystem with clients for its services.
type harness struct {
	dir, root, sock string
	ident           csi.IdentityClient
	ctrl            csi.ControllerClient
	node            csi.NodeClient
	stop            func() error
}

const testNode = "test-node"

func startDriver(t *testing.T) *harness {
	t.Helper()
	dir, root := newBtrfs(t)
	h := &harness{dir: dir, root: root, sock: filepath.Join(dir, "csi.sock")}
	h.start(t, Config{})
	return h
}

// start runs the driver on h's filesystem and socket; cfg supplies anything else.
func (h *harness) start(t *testing.T, cfg Config) {
	t.Helper()
	logs := io.Discard
	if testing.Verbose() {
		logs = os.Stderr
	}
	cfg.Endpoint, cfg.Root = "unix://"+h.sock, h.root
	if cfg.NodeID == "" {
		cfg.NodeID = testNode
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	var once sync.Once
	var runErr error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("driver: %v", err)
		}
	})

	conn, err := grpc.NewClient("unix://"+h.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("connecting to driver: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	h.ident, h.ctrl, h.node = csi.NewIdentityClient(conn), csi.NewControllerClient(conn), csi.NewNodeClient(conn)

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("driver exited during start: %v", err)
		default:
		}
		pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
		_, err := h.ident.Probe(pctx, &csi.ProbeRequest{})
		pcancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("driver not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mountCap() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
}
