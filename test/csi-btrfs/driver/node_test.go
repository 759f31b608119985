package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// TestNodePublish checks what a pod sees: the volume's files at the target path, writable or
// read-only as asked, and nothing left behind after unpublishing.
func TestNodePublish(t *testing.T) {
	h := startDriver(t)
	ctx := context.Background()
	vol := h.createVolume(t, "published", 64<<20, nil)
	if err := os.WriteFile(filepath.Join(h.volumePath(vol.VolumeId), "hello"), []byte("from the volume"), 0o644); err != nil {
		t.Fatal(err)
	}

	// kubelet creates only the parent of the target: the driver makes the directory itself.
	podDir := filepath.Join(h.dir, "pods", "uid")
	if err := os.MkdirAll(podDir, 0o750); err != nil {
		t.Fatal(err)
	}
	rw, ro := filepath.Join(podDir, "rw"), filepath.Join(podDir, "ro")
	publish := func(target string, readOnly bool) error {
		_, err := h.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: vol.VolumeId, TargetPath: target, VolumeCapability: mountCap()[0], Readonly: readOnly,
		})
		return err
	}
	for range 2 { // the second call must be a no-op, not a second mount
		if err := publish(rw, false); err != nil {
			t.Fatalf("NodePublishVolume(rw): %v", err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(rw, "hello")); err != nil || string(got) != "from the volume" {
		t.Fatalf("reading through the mount: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(rw, "from-pod"), []byte("x"), 0o644); err != nil {
		t.Fatalf("writing through the mount: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.volumePath(vol.VolumeId), "from-pod")); err != nil {
		t.Errorf("write through the mount did not reach the volume: %v", err)
	}
	if err := publish(rw, true); status.Code(err) != codes.AlreadyExists {
		t.Errorf("republishing read-only on a read-write target: %v, want AlreadyExists", err)
	}

	if err := publish(ro, true); err != nil {
		t.Fatalf("NodePublishVolume(ro): %v", err)
	}
	if err := os.WriteFile(filepath.Join(ro, "nope"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing through a read-only mount: %v, want EROFS", err)
	}

	// Qgroup numbers change on transaction commit, which btrfs otherwise does every 30 s.
	h.syncFS(t)
	stats, err := h.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: vol.VolumeId, VolumePath: rw})
	if err != nil {
		t.Fatalf("NodeGetVolumeStats: %v", err)
	}
	u := stats.GetUsage()[0]
	if u.Total != 64<<20 || u.Used <= 0 || u.Available <= 0 || u.Used+u.Available > u.Total {
		t.Errorf("usage = %v, want total 64 MiB split into used and available", u)
	}

	for _, target := range []string{rw, ro, rw} { // the repeat must succeed on a gone target
		if _, err := h.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vol.VolumeId, TargetPath: target}); err != nil {
			t.Fatalf("NodeUnpublishVolume(%s): %v", target, err)
		}
		if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("target %s still there after unpublishing: %v", target, err)
		}
	}
	if _, err := os.Stat(filepath.Join(h.volumePath(vol.VolumeId), "from-pod")); err != nil {
		t.Errorf("unpublishing removed the volume's data: %v", err)
	}
}

// TestRegistrationAndRestart runs the driver as on a node: kubelet finds it through the
// registration socket, and a restarted driver still knows the volumes created before.
func TestRegistrationAndRestart(t *testing.T) {
	dir, root := newBtrfs(t)
	h := &harness{dir: dir, root: root, sock: filepath.Join(dir, "csi.sock")}
	registry := filepath.Join(dir, "plugins_registry")
	h.start(t, Config{RegistrationDir: registry})
	vol := h.createVolume(t, "survivor", 0, nil)

	regSock := filepath.Join(registry, Name+"-reg.sock")
	conn, err := grpc.NewClient("unix://"+regSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reg := registerapi.NewRegistrationClient(conn)
	info, err := reg.GetInfo(context.Background(), &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if info.Type != registerapi.CSIPlugin || info.Name != Name || info.Endpoint != h.sock || !slices.Equal(info.SupportedVersions, []string{"1.0.0"}) {
		t.Errorf("GetInfo = %v", info)
	}
	if _, err := reg.NotifyRegistrationStatus(context.Background(), &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Errorf("NotifyRegistrationStatus: %v", err)
	}

	if err := h.stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	// kubelet deregisters a plugin when its socket disappears.
	for _, sock := range []string{regSock, h.sock} {
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left after stop: %v", sock, err)
		}
	}

	h.start(t, Config{})
	list, err := h.ctrl.ListVolumes(context.Background(), &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatalf("ListVolumes after restart: %v", err)
	}
	if len(list.Entries) != 1 || list.Entries[0].Volume.VolumeId != vol.VolumeId || list.Entries[0].Volume.CapacityBytes != defaultCapacity {
		t.Errorf("volumes after restart = %v, want %s with %d bytes", list.Entries, vol.VolumeId, defaultCapacity)
	}
}
