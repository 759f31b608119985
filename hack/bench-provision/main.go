// Command bench-provision measures how fast the operator hands out databases on the local cluster
// (make bench-provision): for MariaDB, the floor outside Kubernetes, sequential and concurrent
// provisioning for a small and a large template, the same from another namespace (a template
// shared across namespaces), and the disk cost of clones; for PostgreSQL, sequential provisioning
// for a small and a large template. It prints figures; it asserts nothing.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/test/e2e/fixture"
)

const namespace = "myaas-bench"

type bench struct {
	c         client.WithWatch
	btrfsRoot string
	// databases are the instances' databases per template, where not the default.
	databases map[string]string
	// pool: measure the warm pool's rows after MariaDB's cold path.
	pool bool
	// steps is when each instance reached each step of the cold path.
	steps *milestones
}

// benchEngine is one engine's templates: its spec, the dump server's dialect of the generated
// dump, and the database its instances get credentials for.
type benchEngine struct {
	engine   myaasv1.EngineSpec
	dialect  string
	database string
}

var (
	mariadb    = benchEngine{engine: myaasv1.EngineSpec{Type: myaasv1.EngineMariaDB, Image: "localhost/myaas/mariadb:10.11"}, dialect: "mariadb"}
	postgresql = benchEngine{
		engine:  myaasv1.EngineSpec{Type: myaasv1.EngineType("postgresql"), Image: "localhost/myaas/postgres:15"},
		dialect: "postgresql",
		// The dump's own database: PostgreSQL has no queries across databases.
		database: "shop",
	}
)

func main() {
	kubeconfig := flag.String("kubeconfig", "/var/lib/myaas-dev/kubeconfig", "kubeconfig of the local cluster")
	btrfsRoot := flag.String("btrfs-root", "/var/lib/myaas-dev/btrfs", "mount point of the cluster's btrfs volume store")
	smallRows := flag.Int("small-rows", 100_000, "orders in the small template's dump (about 10 MB)")
	largeRows := flag.Int("large-rows", 20_000_000, "orders in the large template's dump (a datadir of 2 GB or more)")
	runs := flag.Int("runs", 20, "sequential instances per template")
	concurrent := flag.Int("concurrent", 20, "instances applied at once")
	pool := flag.Bool("pool", true, "with mariadb: also measure claims from a warm pool of the small template")
	poolOnly := flag.Bool("pool-only", false, "measure only the warm pool's rows, on the small template")
	crossOnly := flag.Bool("cross-namespace-only", false, "measure only the small template's instances, in its namespace and in others")
	nodesOnly := flag.Bool("nodes-only", false, "measure only the rows of a cluster of several nodes: the small template on the one node of its volume, and with a copy on every node")
	engines := flag.String("engines", "mariadb,postgresql", "engines to measure, comma-separated: mariadb (every figure), postgresql (sequential provisioning)")
	flag.Parse()
	measure := map[string]bool{}
	for e := range strings.SplitSeq(*engines, ",") {
		if e != "mariadb" && e != "postgresql" {
			log.Fatalf("--engines: unknown engine %q: valid engines are mariadb, postgresql", e)
		}
		measure[e] = true
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("no local cluster (make dev-cluster): %v", err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(snapshotv1.AddToScheme(scheme))
	utilruntime.Must(myaasv1.AddToScheme(scheme))
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	b := &bench{c: c, btrfsRoot: *btrfsRoot, databases: map[string]string{}, steps: watchMilestones(ctx, c, namespace), pool: *pool}
	run := func() error {
		// PostgreSQL first: MariaDB's last figures leave 20 clones running.
		if measure["postgresql"] {
			if err := b.runSequential(ctx, postgresql, *smallRows, *largeRows, *runs); err != nil {
				return fmt.Errorf("postgresql: %w", err)
			}
		}
		if measure["mariadb"] {
			return b.run(ctx, *smallRows, *largeRows, *runs, *concurrent)
		}
		return nil
	}
	if *crossOnly {
		run = func() error { return b.runCrossNamespace(ctx, *smallRows, *runs) }
	}
	if *nodesOnly {
		run = func() error { return b.runNodes(ctx, *smallRows, *runs, *concurrent) }
	}
	if *poolOnly {
		run = func() error {
			if err := b.template(ctx, mariadb, poolTemplate, *smallRows, "2Gi"); err != nil {
				return err
			}
			floor, err := b.floor(ctx, poolTemplate, 5)
			if err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			fmt.Printf("floor (btrfs snapshot of the small datadir → mariadbd answers, no Kubernetes): %s\n", secs(floor))
			return b.runPool(ctx, *smallRows, *runs, *concurrent, floor)
		}
	}
	if err := b.prepare(ctx); err != nil {
		log.Fatal(err)
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
	if err := b.c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		log.Fatal(err)
	}
}

// prepare makes the bench's namespace afresh, with the dump server in it.
func (b *bench) prepare(ctx context.Context) error {
	if err := b.freshNamespace(ctx); err != nil {
		return err
	}
	return b.dumpServer(ctx)
}

// benchTemplate is one template of a measurement: its name, the orders in its dump, its volume's size.
type benchTemplate struct {
	name string
	rows int
	size string
}

func sizedTemplates(prefix string, smallRows, largeRows int) []benchTemplate {
	return []benchTemplate{{prefix + "small", smallRows, "2Gi"}, {prefix + "large", largeRows, "16Gi"}}
}

// importTemplates imports each template's revision 1 and returns the size of its datadir.
func (b *bench) importTemplates(ctx context.Context, e benchEngine, templates []benchTemplate) (map[string]int64, error) {
	sizes := map[string]int64{}
	for _, t := range templates {
		start := time.Now()
		if err := b.template(ctx, e, t.name, t.rows, t.size); err != nil {
			return nil, err
		}
		size, err := b.templateBytes(ctx, t.name)
		if err != nil {
			return nil, err
		}
		sizes[t.name] = size
		log.Printf("%s template %s: revision 1 in %s, datadir %s", e.engine.Type, t.name, time.Since(start).Round(time.Second), mib(size))
	}
	return sizes, nil
}

// spread is a sequential row's p50 and p95.
type spread struct{ p50, p95 time.Duration }

// sequential provisions runs instances of the template one after the other, prints their p50
// and p95 (where, if not empty, says where the instances are) and the p50 of each step, and
// returns the p50 and p95.
func (b *bench) sequential(ctx context.Context, template string, runs int, where string) (spread, error) {
	var times []time.Duration
	var steps []map[string]time.Duration
	for i := range runs {
		name := fmt.Sprintf("%s-seq-%02d", template, i)
		// The kubelet looks at the runtime once a second: runs started one after the other would
		// all meet that tick at the same phase, and one row would fall in its fast or slow half
		// as a whole. A random pause (not timed) spreads the runs over the second.
		time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
		start := time.Now()
		d, _, err := b.provision(ctx, name, template)
		if err != nil {
			return spread{}, err
		}
		times = append(times, d)
		steps = append(steps, b.steps.since(name, start))
	}
	slices.Sort(times)
	p := spread{percentile(times, 50), percentile(times, 95)}
	fmt.Printf("%-6s template, %d sequential instances%s: p50 %s  p95 %s  (min %s, max %s)\n", template, runs, where,
		secs(p.p50), secs(p.p95), secs(times[0]), secs(times[len(times)-1]))
	fmt.Printf("       p50 of each step after apply: %s\n", breakdown(steps))
	return p, nil
}

// runSequential is an engine's row: apply → Ready, one instance at a time, for a small and a
// large template; the target is the same p50 for both (flat in template size).
func (b *bench) runSequential(ctx context.Context, e benchEngine, smallRows, largeRows, runs int) error {
	templates := sizedTemplates(string(e.engine.Type)+"-", smallRows, largeRows)
	sizes, err := b.importTemplates(ctx, e, templates)
	if err != nil {
		return err
	}
	p := map[string]spread{}
	for _, t := range templates {
		if p[t.name], err = b.sequential(ctx, t.name, runs, ""); err != nil {
			return err
		}
	}
	small, large := templates[0].name, templates[1].name
	fmt.Printf("%s: kubectl apply → Ready (credentials verified), p50: small %s (datadir %s), large %s (datadir %s); large/small %.2f\n\n",
		e.engine.Type, secs(p[small].p50), mib(sizes[small]), secs(p[large].p50), mib(sizes[large]), float64(p[large].p50)/float64(p[small].p50))
	return nil
}

func (b *bench) run(ctx context.Context, smallRows, largeRows, runs, concurrent int) error {
	templates := sizedTemplates("", smallRows, largeRows)
	sizes, err := b.importTemplates(ctx, mariadb, templates)
	if err != nil {
		return err
	}
	floor, err := b.floor(ctx, "large", 5)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}

	p := map[string]spread{}
	for _, t := range templates {
		if p[t.name], err = b.sequential(ctx, t.name, runs, ""); err != nil {
			return err
		}
	}
	if err := b.crossNamespace(ctx, "small", runs, p["small"].p50); err != nil {
		return err
	}

	if err := b.waitQuiet(ctx); err != nil {
		return err
	}
	usedBefore, err := b.btrfsUsed()
	if err != nil {
		return err
	}
	all, err := b.concurrent(ctx, "large", concurrent)
	if err != nil {
		return err
	}
	usedAfter, err := b.btrfsUsed()
	if err != nil {
		return err
	}
	added := usedAfter - usedBefore

	fmt.Println()
	fmt.Printf("floor (btrfs snapshot of the large datadir → mariadbd answers, no Kubernetes): %s\n", secs(floor))
	ratio := func(d time.Duration) string {
		return fmt.Sprintf("%s (%.1fx floor)", secs(d), float64(d)/float64(floor))
	}
	fmt.Printf("cold path, kubectl apply → Ready (credentials verified): small p50 %s, p95 %s; large p50 %s, p95 %s; large/small %.2f\n",
		ratio(p["small"].p50), ratio(p["small"].p95), ratio(p["large"].p50), ratio(p["large"].p95), float64(p["large"].p50)/float64(p["small"].p50))
	fmt.Printf("cold path, %d instances of the large template applied at once: all Ready in %s\n", concurrent, ratio(all))
	fmt.Printf("disk added by %d running clones of the large template: %s, %.2f%% of its %s\n",
		concurrent, mib(added), 100*float64(added)/float64(sizes["large"]), mib(sizes["large"]))
	if !b.pool {
		return nil
	}
	// The pool's rows on a node as quiet as the cold rows had: without the twenty clones above.
	for i := range concurrent {
		if err := b.c.Delete(ctx, b.instance(fmt.Sprintf("large-par-%02d", i), "large")); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	fmt.Println()
	return b.runPool(ctx, smallRows, runs, concurrent, floor)
}

// runCrossNamespace measures only what a template shared across namespaces costs: the small
// template's instances in its own namespace, then in others.
func (b *bench) runCrossNamespace(ctx context.Context, rows, runs int) error {
	if err := b.template(ctx, mariadb, "small", rows, "2Gi"); err != nil {
		return err
	}
	p, err := b.sequential(ctx, "small", runs, " in its namespace")
	if err != nil {
		return err
	}
	return b.crossNamespace(ctx, "small", runs, p.p50)
}

// benchSharingLabel selects the namespaces the bench's templates are shared with.
const benchSharingLabel = "myaas.io/bench-consumer"

// crossNamespace provisions instances of a template from other namespaces, each in a namespace of
// its own made just before (not timed), as a CI pipeline per pull request does: every run pays
// for the copy of the revision in a namespace that has none yet.
func (b *bench) crossNamespace(ctx context.Context, template string, runs int, sameNamespaceP50 time.Duration) error {
	// The operator writes the template's status meanwhile: read it again on a conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		t := &myaasv1.DatabaseTemplate{}
		if err := b.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: template}, t); err != nil {
			return err
		}
		t.Spec.Sharing = &myaasv1.SharingSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{benchSharingLabel: "true"}}}
		return b.c.Update(ctx, t)
	})
	if err != nil {
		return fmt.Errorf("share template %s: %w", template, err)
	}
	var times []time.Duration
	var steps []map[string]time.Duration
	for i := range runs {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: namespace + "-consumer-", Labels: map[string]string{benchSharingLabel: "true"}}}
		if err := b.c.Create(ctx, ns); err != nil {
			return err
		}
		watchCtx, stopWatching := context.WithCancel(ctx)
		seen := watchMilestones(watchCtx, b.c, ns.Name)
		// As in the same-namespace rows: spread the runs over the kubelet's one-second relist.
		time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
		d := b.instance(fmt.Sprintf("%s-cross-%02d", template, i), template)
		d.Namespace, d.Spec.TemplateRef.Namespace = ns.Name, namespace
		start := time.Now()
		if err := b.c.Create(ctx, d); err != nil {
			stopWatching()
			return err
		}
		err := poll(ctx, 5*time.Minute, d.Name+" Ready", func() (bool, error) { return b.readyIn(ctx, ns.Name, d.Name) })
		stopWatching()
		if err != nil {
			return err
		}
		times = append(times, time.Since(start))
		steps = append(steps, seen.since(d.Name, start))
		// The namespace goes with its instance, its clone and its copy of the revision.
		if err := b.c.Delete(ctx, ns); err != nil {
			return err
		}
	}
	slices.Sort(times)
	p50 := percentile(times, 50)
	fmt.Printf("%-6s template, %d sequential instances from another namespace (a new one each): p50 %s  p95 %s  (min %s, max %s)\n",
		template, runs, secs(p50), secs(percentile(times, 95)), secs(times[0]), secs(times[len(times)-1]))
	fmt.Printf("       p50 of each step after apply: %s\n", breakdown(steps))
	fmt.Printf("cross-namespace p50 - same-namespace p50: %+.2fs (target: within 0.30s)\n", (p50 - sameNamespaceP50).Seconds())
	return nil
}

// waitQuiet waits until the instances deleted by the rows before have stopped and their
// namespaces are gone: twenty instances applied at once are measured on a machine as quiet as a
// single one was, not beside servers shutting down and volumes being deleted.
func (b *bench) waitQuiet(ctx context.Context) error {
	return poll(ctx, 5*time.Minute, "the earlier rows' instances gone", func() (bool, error) {
		pods := &corev1.PodList{}
		if err := b.c.List(ctx, pods, client.MatchingLabels{myaasv1.LabelRole: myaasv1.RoleInstance}); err != nil {
			return false, err
		}
		namespaces := &corev1.NamespaceList{}
		if err := b.c.List(ctx, namespaces, client.HasLabels{benchSharingLabel}); err != nil {
			return false, err
		}
		return len(pods.Items) == 0 && len(namespaces.Items) == 0, nil
	})
}

func (b *bench) freshNamespace(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := b.c.Delete(ctx, ns); client.IgnoreNotFound(err) != nil {
		return err
	}
	for b.c.Get(ctx, client.ObjectKeyFromObject(ns), ns) == nil {
		time.Sleep(time.Second)
	}
	return b.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})
}

func (b *bench) dumpServer(ctx context.Context) error {
	// The large dump is generated while it is sent (/generated.sql): the server holds only a small one.
	dep, svc := fixture.DumpServer(namespace, 1000, 0)
	for _, o := range []client.Object{dep, svc} {
		if err := b.c.Create(ctx, o); err != nil {
			return err
		}
	}
	return poll(ctx, 2*time.Minute, "dump server ready", func() (bool, error) {
		err := b.c.Get(ctx, client.ObjectKeyFromObject(dep), dep)
		return err == nil && dep.Status.ReadyReplicas == 1, err
	})
}

func (b *bench) template(ctx context.Context, e benchEngine, name string, rows int, size string, mutate ...func(*myaasv1.DatabaseTemplate)) error {
	sc := "myaas-btrfs"
	if e.database != "" {
		b.databases[name] = e.database
	}
	t := &myaasv1.DatabaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: myaasv1.DatabaseTemplateSpec{
			Engine: e.engine,
			Source: myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{
				URL: fmt.Sprintf("http://dumpserver.%s.svc.cluster.local:8080/generated.sql?rows=%d&seed=1&dialect=%s", namespace, rows, e.dialect)}},
			Storage: myaasv1.TemplateStorage{StorageClassName: &sc, SnapshotClassName: &sc, Size: resource.MustParse(size)},
			Import:  myaasv1.ImportSpec{Timeout: &metav1.Duration{Duration: 2 * time.Hour}},
		},
	}
	for _, m := range mutate {
		m(t)
	}
	if err := b.c.Create(ctx, t); err != nil {
		return err
	}
	return poll(ctx, 2*time.Hour, "template "+name+" revision 1", func() (bool, error) {
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return false, err
		}
		if c := meta.FindStatusCondition(t.Status.Conditions, myaasv1.ConditionImportFailed); c != nil && c.Status == metav1.ConditionTrue {
			return false, fmt.Errorf("import failed: %s", c.Message)
		}
		return t.Status.LatestRevision >= 1, nil
	})
}

// snapshotPath is where the driver keeps the read-only subvolume behind the template's revision 1.
func (b *bench) snapshotPath(ctx context.Context, template string) (string, error) {
	t := &myaasv1.DatabaseTemplate{}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: template}, t); err != nil {
		return "", err
	}
	vs := &snapshotv1.VolumeSnapshot{}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: t.Status.Revisions[0].SnapshotName}, vs); err != nil {
		return "", err
	}
	content := &snapshotv1.VolumeSnapshotContent{}
	if vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil {
		return "", fmt.Errorf("snapshot %s is not bound", vs.Name)
	}
	if err := b.c.Get(ctx, client.ObjectKey{Name: *vs.Status.BoundVolumeSnapshotContentName}, content); err != nil {
		return "", err
	}
	if content.Status == nil || content.Status.SnapshotHandle == nil {
		return "", fmt.Errorf("snapshot content %s has no handle", content.Name)
	}
	// The handle names the pool after its "@"; node 1's pool is the one under btrfsRoot.
	subvolume, _, _ := strings.Cut(*content.Status.SnapshotHandle, "@")
	return filepath.Join(b.btrfsRoot, "snapshots", subvolume), nil
}

func (b *bench) templateBytes(ctx context.Context, template string) (int64, error) {
	path, err := b.snapshotPath(ctx, template)
	if err != nil {
		return 0, err
	}
	out, err := exec.CommandContext(ctx, "du", "-sb", path).Output()
	if err != nil {
		return 0, fmt.Errorf("du %s: %w", path, err)
	}
	return strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
}

// floor: what the hardware allows without Kubernetes: a writable btrfs snapshot of the template's
// datadir and a mariadbd started on it by hand, until its first answered query.
func (b *bench) floor(ctx context.Context, template string, runs int) (time.Duration, error) {
	snap, err := b.snapshotPath(ctx, template)
	if err != nil {
		return 0, err
	}
	var times []time.Duration
	for i := range runs {
		clone := filepath.Join(b.btrfsRoot, fmt.Sprintf("bench-floor-%d", i))
		sock := filepath.Join(os.TempDir(), fmt.Sprintf("bench-floor-%d.sock", i))
		start := time.Now()
		if out, err := exec.CommandContext(ctx, "btrfs", "subvolume", "snapshot", snap, clone).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("snapshot: %w: %s", err, out)
		}
		server := exec.CommandContext(ctx, "mariadbd", "--no-defaults", "--user=root", "--datadir="+clone+"/data",
			"--socket="+sock, "--skip-networking", "--skip-grant-tables", "--innodb-use-native-aio=0",
			"--innodb-buffer-pool-size=256M", "--pid-file="+clone+"/floor.pid")
		if err := server.Start(); err != nil {
			return 0, err
		}
		db, _ := sql.Open("mysql", "root@unix("+sock+")/")
		err := poll(ctx, time.Minute, "mariadbd on the snapshot", func() (bool, error) {
			return db.QueryRowContext(ctx, "SELECT 1").Scan(new(int)) == nil, nil
		})
		elapsed := time.Since(start)
		_ = db.Close()
		_ = server.Process.Kill()
		_ = server.Wait()
		if out, derr := exec.CommandContext(ctx, "btrfs", "subvolume", "delete", clone).CombinedOutput(); derr != nil {
			return 0, fmt.Errorf("delete %s: %w: %s", clone, derr, out)
		}
		if err != nil {
			return 0, err
		}
		times = append(times, elapsed)
	}
	slices.Sort(times)
	return percentile(times, 50), nil
}

func (b *bench) instance(name, template string) *myaasv1.DatabaseInstance {
	return &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: template}, Database: b.databases[template]},
	}
}

func (b *bench) readyIn(ctx context.Context, ns, name string) (bool, error) {
	d := &myaasv1.DatabaseInstance{}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
		return false, err
	}
	return meta.IsStatusConditionTrue(d.Status.Conditions, myaasv1.ConditionReady), nil
}

// provision applies one instance, waits for Ready and deletes it, so that every run starts alike;
// it returns the instance as it was when Ready.
func (b *bench) provision(ctx context.Context, name, template string) (time.Duration, *myaasv1.DatabaseInstance, error) {
	d := b.instance(name, template)
	start := time.Now()
	if err := b.c.Create(ctx, d); err != nil {
		return 0, nil, err
	}
	ready := &myaasv1.DatabaseInstance{}
	if err := poll(ctx, 5*time.Minute, name+" Ready", func() (bool, error) {
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(d), ready); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(ready.Status.Conditions, myaasv1.ConditionReady), nil
	}); err != nil {
		return 0, nil, err
	}
	elapsed := time.Since(start)
	return elapsed, ready, b.c.Delete(ctx, d)
}

// concurrent applies n instances at once and waits until all are Ready; they stay for the disk
// measurement and go with the namespace. It watches, as kubectl wait does: polling twenty
// instances would load the API server it measures.
func (b *bench) concurrent(ctx context.Context, template string, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	w, err := b.c.Watch(ctx, &myaasv1.DatabaseInstanceList{}, client.InNamespace(namespace))
	if err != nil {
		return 0, fmt.Errorf("watch instances: %w", err)
	}
	defer w.Stop()
	start := time.Now()
	pending := map[string]bool{}
	for i := range n {
		name := fmt.Sprintf("%s-par-%02d", template, i)
		if err := b.c.Create(ctx, b.instance(name, template)); err != nil {
			return 0, err
		}
		pending[name] = true
	}
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%d concurrent instances Ready: %d still not Ready: %w", n, len(pending), ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, fmt.Errorf("%d concurrent instances Ready: the watch ended with %d not Ready", n, len(pending))
			}
			if d, isInstance := ev.Object.(*myaasv1.DatabaseInstance); isInstance &&
				meta.IsStatusConditionTrue(d.Status.Conditions, myaasv1.ConditionReady) {
				delete(pending, d.Name)
			}
		}
	}
	elapsed := time.Since(start)
	var steps []map[string]time.Duration
	for i := range n {
		steps = append(steps, b.steps.since(fmt.Sprintf("%s-par-%02d", template, i), start))
	}
	fmt.Printf("       %d at once, p50 of each step after apply: %s\n", n, breakdownAt(steps, 50))
	fmt.Printf("       %d at once, slowest of each step:         %s\n", n, breakdownAt(steps, 100))
	return elapsed, nil
}

func (b *bench) btrfsUsed() (int64, error) {
	if out, err := exec.Command("btrfs", "filesystem", "sync", b.btrfsRoot).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("btrfs sync: %w: %s", err, out)
	}
	out, err := exec.Command("btrfs", "filesystem", "usage", "-b", b.btrfsRoot).Output()
	if err != nil {
		return 0, fmt.Errorf("btrfs usage: %w", err)
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Used:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no Used: line in btrfs filesystem usage")
}

func poll(ctx context.Context, timeout time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached within %s (last error: %w)", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
func mib(b int64) string          { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
