// Command bench-plugin measures what a pipeline waits for: from `kubectl myaas create NAME
// --template T --wait -o uri` to a successful login with the URI it printed, over several runs on
// the running local cluster. It prints figures, never a verdict.
//
// This machine has no route to Service IPs, so the login goes to the instance pod's address with
// the URI's credentials; an in-cluster runner would use the Service address the URI names.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/test/e2e/fixture"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "/var/lib/myaas-dev/kubeconfig", "kubeconfig of the cluster")
	plugin := flag.String("plugin", "bin/kubectl-myaas", "the plugin binary")
	runs := flag.Int("runs", 10, "measured runs (after one warm-up)")
	rows := flag.Int("rows", 100000, "orders in the template's dump")
	flag.Parse()
	if err := run(context.Background(), *kubeconfig, *plugin, *runs, *rows); err != nil {
		fmt.Fprintln(os.Stderr, "bench-plugin:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, plugin string, runs, rows int) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(myaasv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-plugin-"}}
	if err := c.Create(ctx, ns); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	defer func() { _ = c.Delete(context.Background(), ns) }()
	b := &bench{c: c, ns: ns.Name, kubeconfig: kubeconfig, plugin: plugin}
	if err := b.template(ctx, rows); err != nil {
		return err
	}

	fmt.Printf("kubectl myaas create bench-N --template shop --wait -o uri, then a login with that URI (%d orders, namespace %s)\n", rows, ns.Name)
	var total, create []time.Duration
	for i := 0; i <= runs; i++ {
		t, cr, err := b.once(ctx, fmt.Sprintf("bench-%d", i))
		if err != nil {
			return err
		}
		label := fmt.Sprintf("run %2d", i)
		if i == 0 {
			label = "warm-up"
		} else {
			total, create = append(total, t), append(create, cr)
		}
		fmt.Printf("%-8s  to login %6s   create --wait returned %6s\n", label, ms(t), ms(cr))
	}
	fmt.Printf("\nover %d runs: to a successful login p50 %s  p90 %s  min %s  max %s;  create --wait alone p50 %s\n",
		runs, ms(pct(total, 50)), ms(pct(total, 90)), ms(pct(total, 0)), ms(pct(total, 100)), ms(pct(create, 50)))
	return nil
}

type bench struct {
	c                  client.Client
	ns                 string
	kubeconfig, plugin string
}

func (b *bench) template(ctx context.Context, rows int) error {
	dep, svc := fixture.DumpServer(b.ns, rows, 0)
	t := &myaasv1.DatabaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.ns, Name: "shop"},
		Spec: myaasv1.DatabaseTemplateSpec{
			Engine: myaasv1.EngineSpec{Type: myaasv1.EngineMariaDB, Image: "localhost/myaas/mariadb:10.11"},
			Source: myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: fmt.Sprintf("http://dumpserver.%s.svc.cluster.local:8080/shop.sql.gz", b.ns)}},
			Storage: myaasv1.TemplateStorage{
				StorageClassName: ptr("myaas-btrfs"), SnapshotClassName: ptr("myaas-btrfs"), Size: resource.MustParse("1Gi"),
			},
		},
	}
	for _, o := range []client.Object{dep, svc, t} {
		if err := b.c.Create(ctx, o); err != nil {
			return fmt.Errorf("create %T: %w", o, err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return err
		}
		if t.Status.LatestRevision >= 1 {
			return nil
		}
		if f := t.Status.LastFailure; f != nil {
			return fmt.Errorf("import failed: %s", f.Message)
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("no revision after 5m: %s", t.Status.Summary)
}

// once creates an instance with the plugin and logs in with the URI it printed; the instance is
// deleted afterwards, outside the measured time.
func (b *bench) once(ctx context.Context, name string) (total, create time.Duration, err error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, b.plugin, "--kubeconfig", b.kubeconfig, "-n", b.ns,
		"create", name, "--template", "shop", "--wait", "-o", "uri").Output()
	create = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("create %s: %w", name, err)
	}
	u, err := url.Parse(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, 0, fmt.Errorf("the plugin printed %q: %w", out, err)
	}
	pod := &corev1.Pod{}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: b.ns, Name: name + "-0"}, pod); err != nil {
		return 0, 0, err
	}
	password, _ := u.User.Password()
	m := mysql.NewConfig()
	m.User, m.Passwd, m.Net, m.DBName = u.User.Username(), password, "tcp", strings.TrimPrefix(u.Path, "/")
	m.Addr = net.JoinHostPort(pod.Status.PodIP, u.Port())
	m.Timeout = 2 * time.Second
	conn, err := mysql.NewConnector(m)
	if err != nil {
		return 0, 0, err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	for {
		var one int
		if err = db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err == nil {
			break
		}
		if time.Since(start) > time.Minute {
			return 0, 0, fmt.Errorf("login to %s: %w", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	total = time.Since(start)

	if out, err := exec.CommandContext(ctx, b.plugin, "--kubeconfig", b.kubeconfig, "-n", b.ns, "delete", name).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("delete %s: %w: %s", name, err, out)
	}
	return total, create, nil
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return s[i]
}

func ms(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

func ptr[T any](v T) *T { return &v }
