// Command myaas is the myaas operator. The same static binary runs the controllers (`myaas
// manager`) and, copied into the database pods by an init container, the agent that imports dumps
// and prepares cloned data directories (`myaas agent ...`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/controllers"
	"github.com/myaas/myaas/internal/agent"
)

// version names the build; a release sets it with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: myaas <command> [flags]

commands:
  manager            run the controllers (the default)
  agent import       load a template's dumps into a fresh data directory (import Job)
  agent start        prepare a cloned data directory and exec the server (instance pod)
  agent probe        log in with the instance's credentials (readiness probe)
  install DST        copy this binary to DST (init container of database pods)
  refresh-request    announce a refresh (the template's CronJob runs it)
  version            print the version this binary was built as
`

func main() {
	ctx := ctrl.SetupSignalHandler()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "myaas:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cmd := "manager"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "manager":
		return runManager(ctx, args)
	case "agent":
		return agent.Run(ctx, args)
	case "install":
		if len(args) != 1 {
			return errors.New("usage: myaas install DST")
		}
		return agent.Install(args[0])
	case "refresh-request":
		return refreshRequest(args)
	case "version", "--version":
		fmt.Println(version)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

// refreshRequest is what the refresh CronJob's pod runs. The request is the Job itself, which the
// operator watches; the pod only leaves a line in the Job's log saying what happens next.
func refreshRequest(args []string) error {
	fs := flag.NewFlagSet("refresh-request", flag.ContinueOnError)
	template := fs.String("template", "", "namespace/name of the DatabaseTemplate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Printf("refresh of DatabaseTemplate %s requested; the operator imports a new revision "+
		"(kubectl get databasetemplate shows its progress)\n", *template)
	return nil
}

func runManager(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	metricsAddr := fs.String("metrics-bind-address", ":8443", "address of the metrics endpoint (0 disables it)")
	metricsSecure := fs.Bool("metrics-secure", true,
		"serve metrics over HTTPS to clients whose token may get /metrics (false: plain HTTP to anyone)")
	metricsCertDir := fs.String("metrics-cert-dir", "",
		"directory holding tls.crt and tls.key for the metrics endpoint (default: a self-signed certificate)")
	watchNamespaces := fs.String("watch-namespaces", "",
		"comma-separated namespaces to reconcile, with a Role in each (default: every namespace, with a ClusterRole)")
	cacheEverything := fs.Bool("cache-unlabelled-objects", false,
		"cache every Secret, Pod, PVC... of the cluster, not only the operator's (for memory comparisons only)")
	probeAddr := fs.String("health-probe-bind-address", ":8081", "address of the health probes")
	leaderElect := fs.Bool("leader-elect", false, "elect a leader so that only one manager reconciles")
	agentImage := fs.String("agent-image", envOr("MYAAS_AGENT_IMAGE", "localhost/myaas/manager:dev"),
		"image holding this binary, copied into database pods (env MYAAS_AGENT_IMAGE)")
	allowedServiceTypes := fs.String("allowed-service-types", controllers.DefaultAllowedServiceTypes,
		"comma-separated Service types instances may ask for in spec.serviceType; others are refused with a condition")
	allowedImages := fs.String("allowed-images", "",
		"comma-separated engine images templates may use; one ending in '*' allows every image starting with the rest; empty allows any")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(snapshotv1.AddToScheme(scheme))
	utilruntime.Must(myaasv1.AddToScheme(scheme))

	namespaces, err := controllers.Namespaces(*watchNamespaces)
	if err != nil {
		return err
	}
	metrics := metricsserver.Options{BindAddress: *metricsAddr}
	if *metricsSecure {
		// Only a client whose token the API server authenticates, and which may get the
		// non-resource URL /metrics (ClusterRole metrics-reader), reads the metrics.
		metrics.SecureServing = true
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
		metrics.CertDir = *metricsCertDir
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(namespaces, *cacheEverything),
		Client:                 controllers.ClientOptions(),
		Metrics:                metrics,
		HealthProbeBindAddress: *probeAddr,
		LeaderElection:         *leaderElect,
		LeaderElectionID:       "manager.myaas.io",
		// A replaced manager pod hands over at once instead of after the lease expires.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := controllers.Setup(ctx, mgr, controllers.Options{
		AgentImage: *agentImage, Clock: clock.RealClock{}, AllowedServiceTypes: controllers.ServiceTypes(*allowedServiceTypes),
		AllowedImages: controllers.ImagePatterns(*allowedImages),
		// Set from the downward API in the manager's Deployment; unset when it runs on a node.
		OperatorNamespace: os.Getenv("POD_NAMESPACE"),
	}); err != nil {
		return err
	}
	if err := controllers.SetupMetrics(mgr, version); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}
	ctrl.Log.WithName("setup").Info("starting manager", "version", version, "agentImage", *agentImage,
		"watchNamespaces", namespaces)
	return mgr.Start(ctx)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
