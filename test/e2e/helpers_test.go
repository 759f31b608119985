//go:build e2e

package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// The e2e suite drives the local cluster (make dev-cluster) as a user would: it applies objects,
// waits for conditions, reads Secrets and logs in to the databases over the pod network.

var (
	ctx        = context.Background()
	k8s        client.Client
	kubeconfig string
)

const (
	storageClass  = "myaas-btrfs"
	snapshotClass = "myaas-btrfs"
)

func TestMain(m *testing.M) {
	kubeconfig = os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		kubeconfig = "/var/lib/myaas-dev/kubeconfig"
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "no cluster (run `make dev-cluster`): %v\n", err)
		os.Exit(1)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(snapshotv1.AddToScheme(scheme))
	utilruntime.Must(myaasv1.AddToScheme(scheme))
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// kubectl runs the project's pinned kubectl against the test cluster.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return kubectlIn(t, "", args...)
}

// kubectlIn runs kubectl with stdin.
func kubectlIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	bin := os.Getenv("KUBECTL")
	if bin == "" {
		bin, _ = filepath.Abs("../../bin/k8s/kubectl")
		if _, err := os.Stat(bin); err != nil {
			bin = "kubectl"
		}
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newNamespace(t *testing.T) string {
	t.Helper()
	return namedNamespace(t, "e2e")
}

// namedNamespace makes a namespace whose name starts with prefix, removed after a passing test.
func namedNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("namespace %s kept for inspection", ns.Name)
			return
		}
		_ = k8s.Delete(ctx, ns)
	})
	return ns.Name
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func getTemplate(t *testing.T, ns, name string) *myaasv1.DatabaseTemplate {
	t.Helper()
	d := &myaasv1.DatabaseTemplate{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func getInstance(t *testing.T, ns, name string) *myaasv1.DatabaseInstance {
	t.Helper()
	d := &myaasv1.DatabaseInstance{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func waitForRevision(t *testing.T, ns, name string, n int32, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("template %s revision %d", name, n), func() error {
		d := getTemplate(t, ns, name)
		if d.Status.LatestRevision >= n {
			return nil
		}
		if f := d.Status.LastFailure; f != nil && f.Revision >= n {
			t.Fatalf("import of revision %d failed: %s", f.Revision, f.Message)
		}
		return fmt.Errorf("latest %d, progress %q", d.Status.LatestRevision, d.Status.Summary)
	})
}

// waitReady waits like `kubectl wait --for=condition=Ready`.
func waitReady(t *testing.T, ns, name string) {
	t.Helper()
	kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "--timeout=180s", "databaseinstance/"+name)
}

func newTemplate(t *testing.T, ns, name string, source myaasv1.DumpSource, mutate ...func(*myaasv1.DatabaseTemplate)) {
	t.Helper()
	d := &myaasv1.DatabaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: myaasv1.DatabaseTemplateSpec{
			Engine: myaasv1.EngineSpec{Type: myaasv1.EngineMariaDB, Image: "localhost/myaas/mariadb:10.11"},
			Source: source,
			Storage: myaasv1.TemplateStorage{
				StorageClassName:  ptr(storageClass),
				SnapshotClassName: ptr(snapshotClass),
				Size:              resource.MustParse("1Gi"),
			},
		},
	}
	for _, m := range mutate {
		m(d)
	}
	if err := k8s.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
}

func newInstance(t *testing.T, ns, name, template string, mutate ...func(*myaasv1.DatabaseInstance)) {
	t.Helper()
	d := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: template}},
	}
	for _, m := range mutate {
		m(d)
	}
	if err := k8s.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
}

// connect logs in with the instance's Secret, reaching the pod as the operator does.
func connect(t *testing.T, ns, instance string) *sql.DB {
	t.Helper()
	creds := secretData(t, ns, instance+"-credentials")
	return open(t, podAddr(t, ns, instance), creds["username"], creds["password"], creds["database"])
}

func open(t *testing.T, addr, user, password, database string) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", addr, database
	cfg.Timeout = 10 * time.Second
	cfg.MultiStatements = true
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

func podAddr(t *testing.T, ns, instance string) string {
	t.Helper()
	// An instance that claimed a warm pool member is served by the member's pod.
	inst := &myaasv1.DatabaseInstance{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: instance}, inst); err == nil {
		instance = inst.ServerName()
	}
	pod := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: instance + "-0"}, pod); err != nil {
		t.Fatal(err)
	}
	// The database container's port is the engine's.
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			return net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(p.ContainerPort)))
		}
	}
	t.Fatalf("pod %s/%s declares no port", ns, pod.Name)
	return ""
}

func secretData(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out
}

func queryInt(t *testing.T, db *sql.DB, query string) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRowContext(ctx, query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func conditionReason(conds []metav1.Condition, condType string) (metav1.ConditionStatus, string, string) {
	c := meta.FindStatusCondition(conds, condType)
	if c == nil {
		return "", "", ""
	}
	return c.Status, c.Reason, c.Message
}

func ptr[T any](v T) *T { return &v }

func lenList(list client.ObjectList) int { return meta.LenList(list) }
