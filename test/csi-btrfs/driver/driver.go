// Package driver is a CSI driver serving copy-on-write volumes from btrfs filesystems: volumes
// are subvolumes, snapshots read-only snapshots, clones writable ones. Each node has its own
// filesystem (its pool, see pools.go); an optional shared one plays network storage.
package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

const (
	// Name is the driver name StorageClasses and VolumeSnapshotClasses refer to.
	Name = "btrfs.csi.myaas.io"
	// Version is reported by GetPluginInfo.
	Version = "0.1.0"
	// TopologyKey pins volumes to the node that holds the filesystem.
	TopologyKey = "topology.btrfs.csi.myaas.io/node"

	// DefaultRegistrationDir is where kubelet's plugin watcher looks for registration sockets.
	DefaultRegistrationDir = "/var/lib/kubelet/plugins_registry"
)

// Config configures Run.
type Config struct {
	// Endpoint is the CSI socket, as unix:///path or a plain absolute path.
	Endpoint string
	// Root is the mount point of the btrfs filesystem holding this node's volumes: its pool.
	Root string
	// SharedRoot is the mount point of a btrfs filesystem every node sees: the shared pool, for
	// StorageClasses with parameter pool=shared. Empty means there is none.
	SharedRoot string
	// NodeRoots maps other nodes' names to their pools' mount points, for the one process the
	// controller sidecars use: it creates and deletes volumes on every node. An entry for NodeID
	// must name Root.
	NodeRoots map[string]string
	// NodeID identifies this node to Kubernetes; it must equal the kubelet's node name.
	NodeID string
	// RegistrationDir is kubelet's plugin registry; empty skips registration, e.g. in tests.
	RegistrationDir string
	// FaultDir holds the fault files that make snapshots fail or stall (see faults.go); empty
	// disables fault injection.
	FaultDir string
	// Logger defaults to slog.Default.
	Logger *slog.Logger
}

// driver holds what the three CSI services share.
type driver struct {
	cfg Config
	fs  fs
	// own is this node's pool, shared the shared pool or nil, pools every pool by name.
	own, shared *pool
	pools       map[string]*pool
	log         *slog.Logger
	// mu serialises mutations: subvolume creation and metadata updates are not atomic together,
	// and the sidecars retry concurrently.
	mu sync.Mutex
}

// socketPath turns a CSI endpoint into the socket's file path.
func socketPath(endpoint string) (string, error) {
	path := endpoint
	if rest, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		path = rest
	} else if strings.Contains(endpoint, "://") {
		return "", fmt.Errorf("endpoint %q: only unix sockets are supported", endpoint)
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("endpoint %q: socket path must be absolute", endpoint)
	}
	return path, nil
}

// Run serves the CSI services, and kubelet registration when configured, until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Root == "" {
		return errors.New("root of the btrfs filesystem is required")
	}
	if cfg.NodeID == "" {
		return errors.New("node ID is required")
	}
	sock, err := socketPath(cfg.Endpoint)
	if err != nil {
		return err
	}

	own, shared, pools, err := newPools(cfg)
	if err != nil {
		return err
	}
	d := &driver{cfg: cfg, own: own, shared: shared, pools: pools, log: cfg.Logger}
	for _, p := range d.poolList() {
		if err := d.fs.enableQuota(ctx, p.store.root); err != nil {
			// Volume sizes are qgroup limits, so without quotas every size would be a lie.
			return fmt.Errorf("enabling quotas on %s for %s: %w", p.store.root, p, err)
		}
		if err := p.store.init(); err != nil {
			return fmt.Errorf("preparing %s for %s: %w", p.store.root, p, err)
		}
	}
	if cfg.FaultDir != "" {
		// Tests write fault files without knowing whether anyone created the directory.
		if err := os.MkdirAll(cfg.FaultDir, 0o755); err != nil {
			return fmt.Errorf("creating fault directory: %w", err)
		}
	}

	lis, err := listenUnix(sock)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(d.logCalls))
	csi.RegisterIdentityServer(srv, &identity{d: d})
	csi.RegisterControllerServer(srv, &controller{d: d})
	csi.RegisterNodeServer(srv, &node{d: d})

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lis) }()
	servers := []*grpc.Server{srv}
	sockets := []string{sock}

	// Register only once the CSI socket accepts connections: kubelet dials it right after GetInfo.
	if cfg.RegistrationDir != "" {
		regSock := filepath.Join(cfg.RegistrationDir, Name+"-reg.sock")
		regLis, err := listenUnix(regSock)
		if err != nil {
			srv.Stop()
			_ = os.Remove(sock)
			return err
		}
		reg := grpc.NewServer()
		registerapi.RegisterRegistrationServer(reg, &registration{endpoint: sock, log: cfg.Logger})
		go func() { errc <- reg.Serve(regLis) }()
		servers = append(servers, reg)
		sockets = append(sockets, regSock)
		cfg.Logger.Info("registering with kubelet", "socket", regSock)
	}
	cfg.Logger.Info("serving CSI", "driver", Name, "endpoint", sock, "root", cfg.Root, "node", cfg.NodeID,
		"sharedRoot", cfg.SharedRoot, "nodeRoots", cfg.NodeRoots, "faultDir", cfg.FaultDir)

	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
		err = fmt.Errorf("serving gRPC: %w", err)
	}
	// The registration socket goes first so that kubelet stops routing to a driver on its way out.
	for i := len(servers) - 1; i >= 0; i-- {
		gracefulStop(servers[i], 10*time.Second)
		if rmErr := os.Remove(sockets[i]); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			cfg.Logger.Warn("removing socket", "socket", sockets[i], "err", rmErr)
		}
	}
	cfg.Logger.Info("stopped")
	return err
}

// listenUnix replaces a socket left by a previous run, which would otherwise make bind fail.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return lis, nil
}

// gracefulStop lets running calls finish, but not forever: a hung btrfs command must not keep
// the process from exiting on SIGTERM.
func gracefulStop(s *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
	}
}

// logCalls logs failures and changes, not the sidecars' and kubelet's constant polling.
func (d *driver) logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	switch {
	case err != nil:
		d.log.Warn("call failed", "method", method, "code", status.Code(err).String(), "err", err, "duration", time.Since(start))
	case method == "Probe" || strings.HasSuffix(method, "GetCapabilities") || method == "GetPluginInfo" || method == "NodeGetVolumeStats":
	default:
		d.log.Info("call", "method", method, "duration", time.Since(start))
	}
	return resp, err
}

type registration struct {
	registerapi.UnimplementedRegistrationServer
	endpoint string
	log      *slog.Logger
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              Name,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registration) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.PluginRegistered {
		r.log.Info("registered with kubelet")
	} else {
		r.log.Error("kubelet rejected registration", "err", s.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

type identity struct {
	csi.UnimplementedIdentityServer
	d *driver
}

func (*identity) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: Name, VendorVersion: Version}, nil
}

func (*identity) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	service := func(t csi.PluginCapability_Service_Type) *csi.PluginCapability {
		return &csi.PluginCapability{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: t}}}
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{
		service(csi.PluginCapability_Service_CONTROLLER_SERVICE),
		service(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS),
		{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{
			Type: csi.PluginCapability_VolumeExpansion_ONLINE,
		}}},
	}}, nil
}

func (i *identity) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	for _, p := range i.d.poolList() {
		if _, err := os.Stat(p.store.path(kindVolume, "")); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "volume directory of %s unavailable: %v", p, err)
		}
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
