package controllers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/internal/testdeps"
)

// The envtest suite runs the controllers against a real kube-apiserver and etcd (built by
// `make envtest`). No kubelet or built-in controller runs there: the tests play their part —
// a Job succeeds, a snapshot becomes ready, a pod becomes Ready — and check what the operator does next.

var (
	testEnv    *envtest.Environment
	testConfig *rest.Config
	testScheme = runtime.NewScheme()
	k8s        client.Client
	envSkip    string
)

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(snapshotv1.AddToScheme(testScheme))
	utilruntime.Must(myaasv1.AddToScheme(testScheme))
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel())))

	code := func() int {
		assets := os.Getenv("KUBEBUILDER_ASSETS")
		if assets == "" {
			if _, err := os.Stat("../bin/k8s/kube-apiserver"); err == nil {
				assets, _ = filepath.Abs("../bin/k8s")
			}
		}
		if assets == "" {
			envSkip = "no kube-apiserver/etcd: run `make envtest` or set KUBEBUILDER_ASSETS"
			if testdeps.Required(testdeps.Envtest) {
				fmt.Fprintln(os.Stderr, envSkip)
				return 1
			}
			return m.Run()
		}
		snapshotCRDs, err := snapshotCRDDir()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		testEnv = &envtest.Environment{
			CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases"), snapshotCRDs},
			ErrorIfCRDPathMissing: true,
			BinaryAssetsDirectory: assets,
		}
		testConfig, err = testEnv.Start()
		if err != nil {
			fmt.Fprintln(os.Stderr, "start envtest:", err)
			return 1
		}
		defer func() { _ = testEnv.Stop() }()
		k8s, err = client.New(testConfig, client.Options{Scheme: testScheme})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func zapLevel() zapcore.Level {
	if os.Getenv("MYAAS_TEST_VERBOSE") != "" {
		return -2
	}
	return 2 // errors only
}

// snapshotCRDDir is where the snapshot client module ships its CRDs: the same module the code
// uses, so the CRDs and the Go types always match.
func snapshotCRDDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kubernetes-csi/external-snapshotter/client/v6").Output()
	if err != nil {
		return "", fmt.Errorf("locate snapshot CRDs: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd"), nil
}

func requireEnv(t *testing.T) {
	t.Helper()
	if envSkip != "" {
		t.Skip(envSkip)
	}
}

// testManager runs both controllers until stopped; tests start and stop managers to check that a
// restart resumes where the last one left off.
type testManager struct {
	cancel context.CancelFunc
	done   chan error
}

func startManager(t *testing.T, o Options) *testManager {
	t.Helper()
	return startManagerAs(t, testConfig, nil, o)
}

// startManagerAs runs the controllers with the given credentials, watching the given namespaces
// (all when nil).
func startManagerAs(t *testing.T, cfg *rest.Config, namespaces []string, o Options) *testManager {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: testScheme,
		// What main.go gives the manager: a cache of the operator's own objects only.
		Cache:                  CacheOptions(namespaces, false),
		Client:                 ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.AgentSHA256 == "" {
		o.AgentSHA256 = testAgentSHA256
	}
	if o.AgentImage == "" {
		o.AgentImage = "localhost/myaas/manager:test"
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	// The test servers on loopback speak no TLS: logins are plain unless a test asks for the
	// operator's own verifier (the TLS tests, whose servers serve the issued certificate).
	if o.Verifier == nil {
		o.Verifier = plainLogin{}
	}
	if o.Sessions == nil {
		o.Sessions = plainLogin{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := Setup(ctx, mgr, o); err != nil {
		cancel()
		t.Fatal(err)
	}
	m := &testManager{cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- mgr.Start(ctx) }()
	t.Cleanup(m.stop)
	return m
}

func (m *testManager) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cancel = nil
}

// newNamespace gives each test its own namespace.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeOperatorObjects(t, ns.Name) })
	return ns.Name
}

// removeOperatorObjects deletes a finished test's templates and instances, finalizers and all.
// The API server here has no namespace or garbage collector, and every later test's manager
// watches all namespaces: what a test leaves would be reconciled, with that test's options, by
// every manager after it.
func removeOperatorObjects(t *testing.T, ns string) {
	lists := []client.ObjectList{&myaasv1.DatabaseInstanceList{}, &myaasv1.DatabaseTemplateList{}}
	for _, list := range lists {
		if err := k8s.List(bg, list, client.InNamespace(ns)); err != nil {
			t.Errorf("list %T in %s: %v", list, ns, err)
			continue
		}
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			obj := o.(client.Object)
			if err := k8s.Delete(bg, obj); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete %s/%s: %v", ns, obj.GetName(), err)
			}
			patch := []byte(`{"metadata":{"finalizers":null}}`)
			if err := k8s.Patch(bg, obj, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("remove finalizers of %s/%s: %v", ns, obj.GetName(), err)
			}
			return nil
		})
	}
}

// timeoutSlack stretches every eventually: a timeout bounds what a loaded machine may need, and
// a passing wait never runs it out, so a generous bound costs nothing where things are fast and
// keeps a slower machine (a new CI runner) from failing on time alone.
const timeoutSlack = 2

// eventually polls cond until it returns nil, failing with its last error after timeout (times
// timeoutSlack).
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	timeout *= timeoutSlack
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// consistently checks that cond holds for the whole duration.
func consistently(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// plainLogin logs in as the operator does, without TLS.
type plainLogin struct{ EngineLogin }

func (p plainLogin) Verify(ctx context.Context, eng engine.Engine, l engine.Login) error {
	l.TLS = nil
	return p.EngineLogin.Verify(ctx, eng, l)
}

func (p plainLogin) ClientSessions(ctx context.Context, eng engine.Engine, l engine.Login) (int, error) {
	l.TLS = nil
	return p.EngineLogin.ClientSessions(ctx, eng, l)
}
