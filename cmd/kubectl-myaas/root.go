package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

type streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// env is what every subcommand shares: the kubeconfig flags, resolved the way kubectl resolves
// them, and the clients built from them on first use.
type env struct {
	streams
	loading   *clientcmd.ClientConfigLoadingRules
	overrides *clientcmd.ConfigOverrides

	restConfig *rest.Config
	namespace  string
	c          client.Client
	cs         kubernetes.Interface
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(myaasv1.AddToScheme(s))
	return s
}()

func newRootCmd(s streams) *cobra.Command {
	root, _ := newRoot(s)
	return root
}

// newRoot is the command tree and the env its flags fill in.
func newRoot(s streams) (*cobra.Command, *env) {
	e := &env{
		streams:   s,
		loading:   clientcmd.NewDefaultClientConfigLoadingRules(),
		overrides: &clientcmd.ConfigOverrides{},
	}
	root := &cobra.Command{
		Use:   "kubectl-myaas",
		Short: "Throw-away MariaDB, MySQL and PostgreSQL databases cloned from nightly dumps",
		Long: `kubectl myaas creates, reaches, resets and deletes myaas database instances, and refreshes
their templates. It reads the kubeconfig as kubectl does (--kubeconfig, --context, -n).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// The plugin is invoked as `kubectl myaas`: the usage lines should say so.
	root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl myaas"}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	bindKubeFlags(root.PersistentFlags(), e)

	root.AddCommand(
		newCreateCmd(e), newListCmd(e), newStatusCmd(e), newConnectCmd(e), newPortForwardCmd(e),
		newResetCmd(e), newExtendCmd(e), newDeleteCmd(e), newRefreshCmd(e), newLogsCmd(e),
		newCleanupCmd(e), newNameCmd(e), newCICmd(e),
	)
	return root, e
}

// bindKubeFlags registers the flags kubectl users expect, with kubectl's names.
func bindKubeFlags(fs *pflag.FlagSet, e *env) {
	fs.StringVar(&e.loading.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "Path to the kubeconfig file to use")
	names := clientcmd.RecommendedConfigOverrideFlags("")
	// -n as kubectl has it; the remaining overrides keep their long names only.
	names.ContextOverrideFlags.Namespace.ShortName = "n"
	clientcmd.BindOverrideFlags(e.overrides, fs, names)
}

// connectCluster builds the clients once per invocation.
func (e *env) connectCluster() error {
	if e.c != nil {
		return nil
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(e.loading, e.overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	// A pipeline polls while it waits; the default 5 QPS would slow every wait down.
	cfg.QPS, cfg.Burst = 50, 100
	ns, _, err := cc.Namespace()
	if err != nil {
		return fmt.Errorf("resolve namespace: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("connect to the cluster: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("connect to the cluster: %w", err)
	}
	e.restConfig, e.namespace, e.c, e.cs = cfg, ns, c, cs
	return nil
}

// pollInterval paces every wait: short enough that a pipeline notices Ready within a fraction of
// a second, long enough not to load the API server.
const pollInterval = 250 * time.Millisecond
