// Command csi-btrfs runs the btrfs CSI driver as a host process beside kubelet, as root:
//
//	csi-btrfs --root /var/lib/myaas-btrfs
//
// It registers itself with kubelet through the plugin registry, so no node-driver-registrar is
// needed. csi-provisioner and csi-snapshotter run as host processes too and share the socket:
//
//	csi-provisioner --csi-address=/var/lib/kubelet/plugins/btrfs.csi.myaas.io/csi.sock --kubeconfig=... --feature-gates=Topology=true
//	csi-snapshotter --csi-address=/var/lib/kubelet/plugins/btrfs.csi.myaas.io/csi.sock --kubeconfig=... --extra-create-metadata
//
// On several nodes every node runs one process with its own pool as --root, and the one process
// whose socket the sidecars use also gets every other node's pool, so that it can create volumes
// on any node; --shared-root, given to all of them, adds the pool StorageClasses with parameter
// pool=shared use:
//
//	csi-btrfs --node-id node-1 --root /pools/node-1 --shared-root /pools/shared --node-roots node-2=/pools/node-2,node-3=/pools/node-3
//	csi-btrfs --node-id node-2 --root /pools/node-2 --shared-root /pools/shared
//
// With --fault-dir, tests make the snapshots of one namespace fail or stall by writing "fail",
// "fail-once" or "stall" into <fault-dir>/<namespace>; the namespace reaches the driver only with
// csi-snapshotter's --extra-create-metadata.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/myaas/myaas/test/csi-btrfs/driver"
)

func main() {
	hostname, _ := os.Hostname()
	cfg := driver.Config{}
	flag.StringVar(&cfg.Endpoint, "endpoint", "unix:///var/lib/kubelet/plugins/"+driver.Name+"/csi.sock", "CSI endpoint the sidecars and kubelet connect to")
	flag.StringVar(&cfg.Root, "root", "", "mount point of the btrfs filesystem holding this node's volumes (required)")
	flag.StringVar(&cfg.SharedRoot, "shared-root", "", "mount point of the btrfs filesystem every node sees, for StorageClasses with parameter pool=shared; empty: no shared pool")
	nodeRoots := flag.String("node-roots", "", "other nodes' pools as NAME=DIR,NAME=DIR, for the process the controller sidecars use")
	flag.StringVar(&cfg.NodeID, "node-id", hostname, "node name as kubelet knows it")
	flag.StringVar(&cfg.RegistrationDir, "registration-dir", driver.DefaultRegistrationDir, "kubelet plugin registry directory; empty disables registration")
	flag.StringVar(&cfg.FaultDir, "fault-dir", "", "directory of per-namespace files (fail, fail-once, stall) that make snapshots fail or stall, for tests; empty disables fault injection")
	flag.Parse()

	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	if cfg.Root == "" {
		fmt.Fprintln(os.Stderr, "--root is required")
		flag.Usage()
		os.Exit(2)
	}
	var err error
	if cfg.NodeRoots, err = driver.ParseNodeRoots(*nodeRoots); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := driver.Run(ctx, cfg); err != nil {
		cfg.Logger.Error("driver failed", "err", err)
		os.Exit(1)
	}
}
