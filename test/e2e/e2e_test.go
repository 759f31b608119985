//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// 1-3: import from a PVC and from HTTP, progress while importing, Ready instances that log in with
// their own credentials, hold the dump's data, and are isolated from each other.
func TestImportCloneAndIsolation(t *testing.T) { forEachEngine(t, testImportCloneAndIsolation) }

func testImportCloneAndIsolation(t *testing.T, e engineCase) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 100<<10) // the 1.1 MB dump at 100 KB/s: the import lasts over 10 s
	claim := dumpsPVC(t, ns)

	newTemplate(t, ns, "shop-http", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: e.dump(url, "shop.sql.gz")}}, e.onEngine)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{PersistentVolumeClaim: &myaasv1.PVCDumpSource{ClaimName: claim, Path: e.dumps + "shop/*"}}, e.onEngine)

	sawProgress := false
	eventually(t, 300*time.Second, "HTTP template imported", func() error {
		d := getTemplate(t, ns, "shop-http")
		if ci := d.Status.CurrentImport; ci != nil && ci.Progress != nil && ci.Progress.BytesDone > 0 {
			sawProgress = true
		}
		if f := d.Status.LastFailure; f != nil {
			t.Fatalf("import failed: %s", f.Message)
		}
		if d.Status.LatestRevision != 1 {
			return fmt.Errorf("progress %q", d.Status.Summary)
		}
		return nil
	})
	if !sawProgress {
		t.Error("the status never showed the import's progress")
	}
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	out := kubectl(t, "-n", ns, "get", "databasetemplate", "shop")
	if !strings.Contains(out, e.name()) || !strings.Contains(out, "True") {
		t.Errorf("kubectl get shows:\n%s", out)
	}

	newInstance(t, ns, "alice", "shop", e.withDumpDatabase)
	newInstance(t, ns, "bob", "shop", e.withDumpDatabase)
	waitReady(t, ns, "alice")
	waitReady(t, ns, "bob")
	// The kubelet's readiness probe reaches the agent, which logs in with the Secret's
	// credentials: the pods turn Ready, as kubectl shows them.
	for _, name := range []string{"alice", "bob"} {
		eventually(t, 30*time.Second, name+"'s pod Ready", func() error {
			pod := &corev1.Pod{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: getInstance(t, ns, name).ServerName() + "-0"}, pod); err != nil {
				return err
			}
			for _, c := range pod.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("pod %s is not Ready: %v", pod.Name, pod.Status.Conditions)
		})
	}

	alice := e.connect(t, ns, "alice")
	want := shopDump.Expect()
	if got := queryInt(t, alice, "SELECT COUNT(*) FROM shop.orders"); got != int64(want.Orders) {
		t.Fatalf("orders %d, want %d", got, want.Orders)
	}
	if got := queryInt(t, alice, "SELECT SUM(total_cents) FROM shop.orders"); got != want.OrderTotalCents {
		t.Fatalf("order total %d, want %d", got, want.OrderTotalCents)
	}
	if got := queryInt(t, alice, "SELECT COUNT(*) FROM shop.settings WHERE v = 'yes'"); got != 1 {
		t.Fatal("the second dump file was not loaded after the first")
	}

	// Old and foreign credentials are refused.
	aliceCreds := secretData(t, ns, "alice-credentials")
	bobCreds := secretData(t, ns, "bob-credentials")
	e.checkCredentials(t, ns, "alice", aliceCreds)
	if aliceCreds["password"] == bobCreds["password"] {
		t.Fatal("two instances share a password")
	}
	addr := podAddr(t, ns, "bob")
	if err := e.open(t, addr, bobCreds["username"], aliceCreds["password"], "").PingContext(ctx); err == nil {
		t.Fatal("bob accepts alice's password")
	}
	if err := e.open(t, addr, e.superuser, "", "").PingContext(ctx); err == nil {
		t.Fatalf("bob accepts %s without a password (the template's credentials)", e.superuser)
	}
	if _, ok := bobCreds["root-password"]; ok {
		t.Fatal("the application's Secret holds root's password")
	}
	if err := e.open(t, addr, e.superuser, secretData(t, ns, "bob-admin")["root-password"], "").PingContext(ctx); err == nil {
		t.Fatalf("%s logs in over TCP", e.superuser)
	}

	// A write in one clone is in neither the other clone nor the template.
	if _, err := alice.ExecContext(ctx, "INSERT INTO shop.orders VALUES (9999999, 1, 1, 'alice only')"); err != nil {
		t.Fatal(err)
	}
	bob := e.connect(t, ns, "bob")
	if n := queryInt(t, bob, "SELECT COUNT(*) FROM shop.orders WHERE id = 9999999"); n != 0 {
		t.Fatal("alice's write is visible in bob")
	}
	newInstance(t, ns, "carol", "shop", e.withDumpDatabase)
	waitReady(t, ns, "carol")
	if n := queryInt(t, e.connect(t, ns, "carol"), "SELECT COUNT(*) FROM shop.orders WHERE id = 9999999"); n != 0 {
		t.Fatal("alice's write reached the template")
	}
	for _, name := range []string{"alice", "bob", "carol"} {
		if d := getInstance(t, ns, name).Status.TimeToReady; d != nil {
			t.Logf("%s: ready %s after creation", name, d.Duration)
		}
	}
}

// 4-5: refresh by hand and by schedule while an instance keeps serving; new instances get the new
// revision; the old one is collected after its last instance; reset in place keeps Secret and Service.
func TestRefreshGarbageCollectionAndReset(t *testing.T) {
	forEachEngine(t, testRefreshGarbageCollectionAndReset)
}

func testRefreshGarbageCollectionAndReset(t *testing.T, e engineCase) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: e.dump(url, "shop.sql.gz")}}, e.onEngine, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.RetainRevisions = 1
		d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *"}
	})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	newInstance(t, ns, "old", "shop", e.withDumpDatabase)
	waitReady(t, ns, "old")
	old := e.connect(t, ns, "old")
	if _, err := old.ExecContext(ctx, "CREATE TABLE shop.scratch (id int)"); err != nil {
		t.Fatal(err)
	}

	kubectl(t, "-n", ns, "create", "job", "--from=cronjob/shop-refresh", "refresh-now")
	waitForRevision(t, ns, "shop", 2, 300*time.Second)
	if n := queryInt(t, old, "SELECT COUNT(*) FROM shop.orders"); n == 0 {
		t.Fatal("the instance on revision 1 stopped serving during the refresh")
	}
	newInstance(t, ns, "new", "shop", e.withDumpDatabase)
	waitReady(t, ns, "new")
	if r := getInstance(t, ns, "new").Status.Revision; r != 2 {
		t.Fatalf("new instance on revision %d, want 2", r)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, &snapshotv1.VolumeSnapshot{}); err != nil {
		t.Fatalf("revision 1 collected while an instance uses it: %v", err)
	}

	// Reset: back to the latest data, same Secret and Service.
	secretBefore := secretData(t, ns, "old-credentials")
	svcBefore := &corev1.Service{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "old"}, svcBefore); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "-n", ns, "annotate", "databaseinstance", "old", "myaas.io/reset=1", "--overwrite")
	eventually(t, 120*time.Second, "reset to revision 2", func() error {
		d := getInstance(t, ns, "old")
		if d.Status.Revision != 2 || d.Status.Phase != myaasv1.InstanceReady {
			return fmt.Errorf("revision %d phase %s", d.Status.Revision, d.Status.Phase)
		}
		return nil
	})
	reset := e.connect(t, ns, "old")
	if n := queryInt(t, reset, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'shop' AND table_name = 'scratch'"); n != 0 {
		t.Fatal("the reset kept the old data")
	}
	if secretData(t, ns, "old-credentials")["password"] != secretBefore["password"] {
		t.Fatal("the reset changed the password")
	}
	svcAfter := &corev1.Service{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "old"}, svcAfter); err != nil || svcAfter.UID != svcBefore.UID {
		t.Fatalf("the reset replaced the Service: %v", err)
	}
	eventually(t, 120*time.Second, "revision 1 collected after its last instance moved", func() error {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, &snapshotv1.VolumeSnapshot{}); err == nil {
			return fmt.Errorf("snapshot shop-r1 still there")
		}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, &corev1.PersistentVolumeClaim{}); err == nil {
			return fmt.Errorf("PVC shop-r1 still there")
		}
		return nil
	})

	// A scheduled refresh: every minute, until revision 3 appears.
	d := getTemplate(t, ns, "shop")
	d.Spec.Refresh.Schedule = "* * * * *"
	if err := k8s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitForRevision(t, ns, "shop", 3, 240*time.Second)
}

// 6: an instance with a short TTL is deleted on time, with its PVC.
func TestTTL(t *testing.T) { forEachEngine(t, testTTL) }

func testTTL(t *testing.T, e engineCase) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: e.dump(url, "shop.sql.gz")}}, e.onEngine)
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	newInstance(t, ns, "short", "shop", e.withDumpDatabase, func(d *myaasv1.DatabaseInstance) { d.Spec.TTL = &metav1.Duration{Duration: 40 * time.Second} })
	waitReady(t, ns, "short")
	expires := getInstance(t, ns, "short").Status.ExpiresAt.Time
	eventually(t, 120*time.Second, "instance and its data gone", func() error {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "short"}, &myaasv1.DatabaseInstance{}); err == nil {
			return fmt.Errorf("instance still there")
		}
		pvcs := &corev1.PersistentVolumeClaimList{}
		if err := k8s.List(ctx, pvcs, client.InNamespace(ns), client.MatchingLabels{"myaas.io/instance": "short"}); err != nil {
			return err
		}
		if len(pvcs.Items) > 0 {
			return fmt.Errorf("%d PVCs left", len(pvcs.Items))
		}
		return nil
	})
	if late := time.Since(expires); late > 60*time.Second {
		t.Fatalf("deleted %s after expiry", late)
	}
}

// 7: broken dumps name the file and line; the previous revision keeps serving; nothing is deleted.
func TestBrokenDumpKeepsPreviousRevision(t *testing.T) {
	forEachEngine(t, testBrokenDumpKeepsPreviousRevision)
}

func testBrokenDumpKeepsPreviousRevision(t *testing.T, e engineCase) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: e.dump(url, "shop.sql.gz")}}, e.onEngine)
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	newInstance(t, ns, "dev", "shop", e.withDumpDatabase)
	waitReady(t, ns, "dev")

	for _, tc := range []struct{ path, want string }{
		{"broken/truncated.sql.gz", "truncated.sql.gz"},
		{"broken/bad-statement.sql", "line 5"},
	} {
		d := getTemplate(t, ns, "shop")
		d.Spec.Source.HTTP.URL = e.dump(url, tc.path)
		if err := k8s.Update(ctx, d); err != nil {
			t.Fatal(err)
		}
		eventually(t, 300*time.Second, "failure reported for "+tc.path, func() error {
			d := getTemplate(t, ns, "shop")
			status, reason, msg := conditionReason(d.Status.Conditions, myaasv1.ConditionImportFailed)
			if status != metav1.ConditionTrue || d.Status.LastFailure == nil || !strings.Contains(d.Status.LastFailure.Message, tc.path[strings.LastIndex(tc.path, "/")+1:]) {
				return fmt.Errorf("ImportFailed %s/%s: %s", status, reason, msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("failure message %q does not contain %q", msg, tc.want)
			}
			return nil
		})
		d = getTemplate(t, ns, "shop")
		if d.Status.LatestRevision != 1 {
			t.Fatalf("latest revision moved to %d", d.Status.LatestRevision)
		}
		if n := queryInt(t, e.connect(t, ns, "dev"), "SELECT COUNT(*) FROM shop.orders"); n == 0 {
			t.Fatal("the instance stopped serving")
		}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, &snapshotv1.VolumeSnapshot{}); err != nil {
			t.Fatalf("revision 1's snapshot is gone: %v", err)
		}
	}
	newInstance(t, ns, "after-failure", "shop", e.withDumpDatabase)
	waitReady(t, ns, "after-failure")
}

// 8: the manager is killed during an import and during a provisioning; everything converges
// without duplicate Jobs, PVCs or snapshots.
func TestManagerKilledMidway(t *testing.T) { forEachEngine(t, testManagerKilledMidway) }

func testManagerKilledMidway(t *testing.T, e engineCase) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 100<<10) // slow enough to kill the manager while it loads
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: e.dump(url, "shop.sql.gz")}}, e.onEngine)
	eventually(t, 180*time.Second, "import running", func() error {
		ci := getTemplate(t, ns, "shop").Status.CurrentImport
		if ci == nil || ci.Phase != myaasv1.ImportPhaseLoading {
			return fmt.Errorf("not loading yet")
		}
		return nil
	})
	killManager(t)
	waitForRevision(t, ns, "shop", 1, 300*time.Second)

	newInstance(t, ns, "dev", "shop", e.withDumpDatabase)
	killManager(t)
	waitReady(t, ns, "dev")

	counts := map[string]int{
		"import Jobs":   countOwned(t, ns, "shop", &batchv1.JobList{}),
		"template PVCs": countOwned(t, ns, "shop", &corev1.PersistentVolumeClaimList{}),
		"snapshots":     countOwned(t, ns, "shop", &snapshotv1.VolumeSnapshotList{}),
	}
	for what, n := range counts {
		if n != 1 {
			t.Errorf("%d %s, want 1", n, what)
		}
	}
	sts := &appsv1.StatefulSetList{}
	if err := k8s.List(ctx, sts, client.InNamespace(ns)); err != nil || len(sts.Items) != 1 {
		t.Errorf("%d StatefulSets, want 1 (%v)", len(sts.Items), err)
	}
}

// 9: a CI pipeline: one database per branch, a migration and a query through the Secret from a pod,
// then deletion; every child is gone afterwards.
func TestCIPipelineFlow(t *testing.T) { forEachEngine(t, testCIPipelineFlow) }

func testCIPipelineFlow(t *testing.T, e engineCase) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: e.dump(url, "shop.sql.gz")}}, e.onEngine)
	waitForRevision(t, ns, "shop", 1, 300*time.Second)

	branch := "feature-login-42"
	database := ""
	if e.database != "" {
		database = "\n  database: " + e.database
	}
	kubectlIn(t, fmt.Sprintf(`apiVersion: myaas.io/v1alpha1
kind: DatabaseInstance
metadata:
  name: %s
spec:
  templateRef:
    name: shop
  ttl: 2h%s
`, branch, database), "-n", ns, "apply", "-f", "-")
	waitReady(t, ns, branch)

	// The pipeline's job reads the Secret and migrates through the Service, as CI would in-cluster.
	// Like a CI job it waits for the database first: a NetworkPolicy lets a new pod in once the
	// enforcer has seen its address, a moment after the pod starts on some network plugins.
	migrate := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "migrate"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "migrate", Image: e.clientImage, ImagePullPolicy: corev1.PullIfNotPresent,
					EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: branch + "-credentials"}}}},
					Command: []string{"sh", "-ec", e.migrate},
					// The Secret as files too, as a servicebinding.io runtime mounts it: ca.crt is
					// the CA a verifying client names.
					VolumeMounts: []corev1.VolumeMount{{Name: "db", MountPath: "/etc/db", ReadOnly: true}},
				}},
				Volumes: []corev1.Volume{{Name: "db", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: branch + "-credentials"}}}},
			}},
		},
	}
	if err := k8s.Create(ctx, migrate); err != nil {
		t.Fatal(err)
	}
	eventually(t, 120*time.Second, "migration job", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(migrate), migrate); err != nil {
			return err
		}
		if migrate.Status.Failed > 0 {
			t.Fatalf("migration failed: %s", kubectl(t, "-n", ns, "logs", "job/migrate"))
		}
		if migrate.Status.Succeeded != 1 {
			return fmt.Errorf("running")
		}
		return nil
	})
	if logs := kubectl(t, "-n", ns, "logs", "job/migrate"); !strings.Contains(logs, "20261124") {
		t.Fatalf("migration output:\n%s", logs)
	}

	kubectl(t, "-n", ns, "delete", "databaseinstance", branch, "--wait=true", "--timeout=120s")
	eventually(t, 120*time.Second, "every child gone", func() error {
		sel := client.MatchingLabels{"myaas.io/instance": branch}
		for _, list := range []client.ObjectList{&appsv1.StatefulSetList{}, &corev1.ServiceList{}, &corev1.SecretList{}, &corev1.PersistentVolumeClaimList{}, &corev1.PodList{}} {
			if err := k8s.List(ctx, list, client.InNamespace(ns), sel); err != nil {
				return err
			}
			if n := lenList(list); n > 0 {
				return fmt.Errorf("%d %T left", n, list)
			}
		}
		return nil
	})
}

func killManager(t *testing.T) {
	t.Helper()
	kubectl(t, "-n", "myaas-system", "delete", "pod", "-l", "control-plane=controller-manager", "--grace-period=0", "--force", "--wait=false")
}
