//go:build e2e

package e2e

import (
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// Guarantees under faults, checked as a user would: `kubectl get`, conditions, events, logins.

// switchDump makes the dump server's /current.sql.gz serve another of its files, as a nightly
// backup job replacing the dump at a fixed location would.
func switchDump(t *testing.T, ns, file string) {
	t.Helper()
	// The pod's own address: this machine reaches pods, while Service addresses are for pods.
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "dumpserver"}); err != nil || len(pods.Items) != 1 {
		t.Fatalf("dump server pods: %d, %v", len(pods.Items), err)
	}
	resp, err := http.Post(fmt.Sprintf("http://%s:8080/current?file=%s", pods.Items[0].Status.PodIP, file), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("switch dump to %s: %s", file, resp.Status)
	}
}

// refresh starts a refresh by hand, as the README tells users to.
func refresh(t *testing.T, ns, template, name string) {
	t.Helper()
	kubectl(t, "-n", ns, "create", "job", "--from=cronjob/"+template+"-refresh", name)
}

// waitForFailure waits until the import of a revision above `after` fails, and returns it.
func waitForFailure(t *testing.T, ns, template string, after int32, timeout time.Duration) *myaasv1.FailedImport {
	t.Helper()
	var f *myaasv1.FailedImport
	eventually(t, timeout, fmt.Sprintf("an import after revision %d fails", after), func() error {
		d := getTemplate(t, ns, template)
		if d.Status.LastFailure == nil || d.Status.LastFailure.Revision <= after {
			return fmt.Errorf("progress %q", d.Status.Summary)
		}
		f = d.Status.LastFailure
		return nil
	})
	return f
}

// checkFailureMessage: what a user reads in status and events is short, names its cause, and
// holds no row of the (possibly unmasked production) data.
func checkFailureMessage(t *testing.T, f *myaasv1.FailedImport, wantReason string, wantIn ...string) {
	t.Helper()
	if f.Reason != wantReason {
		t.Errorf("revision %d failed with reason %s (%s), want %s", f.Revision, f.Reason, f.Message, wantReason)
	}
	if len(f.Message) > 1100 {
		t.Errorf("failure message is %d bytes: %q", len(f.Message), f.Message)
	}
	for _, row := range []string{"@example.com", "quoted", "José"} {
		if strings.Contains(f.Message, row) {
			t.Errorf("failure message holds row data (%q): %q", row, f.Message)
		}
	}
	for _, w := range wantIn {
		if !strings.Contains(f.Message, w) {
			t.Errorf("failure message %q does not name %q", f.Message, w)
		}
	}
}

// Bad nightly dumps never become revisions, and with retainRevisions 1 the last good revision
// survives any number of failed refreshes: its snapshot stays and new instances clone it.
func TestBadDumpsNeverReplaceTheLastGoodRevision(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	claim := dumpsPVC(t, ns)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/current.sql.gz"}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.RetainRevisions = 1
		d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *"}
		d.Spec.Import.MaxAttempts = 1
	})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	newInstance(t, ns, "keeper", "shop")
	waitReady(t, ns, "keeper")
	want := shopDump.Expect()

	// Three nightly dumps that went wrong, each refreshed by hand.
	for i, tc := range []struct {
		file, reason string
		says         []string
	}{
		{"broken/boundary.sql.gz", "TruncatedDump", []string{"Dump completed", "current.sql.gz"}},
		{"broken/truncated.sql.gz", "TruncatedDump", []string{"current.sql.gz"}},
		{"broken/empty.sql.gz", "EmptyResponse", []string{"current.sql.gz", "answered 200 OK with an empty body"}},
	} {
		switchDump(t, ns, tc.file)
		before := getTemplate(t, ns, "shop").Status.NextRevision
		refresh(t, ns, "shop", fmt.Sprintf("bad-%d", i))
		f := waitForFailure(t, ns, "shop", before-1, 300*time.Second)
		checkFailureMessage(t, f, tc.reason, tc.says...)
		t.Logf("%s: %s: %s", tc.file, f.Reason, f.Message)
		// The failed import's full-size volume is deleted once the failure is recorded.
		eventually(t, 60*time.Second, "failed volume deleted", func() error {
			pvc := &corev1.PersistentVolumeClaim{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("shop-r%d", f.Revision)}, pvc); err == nil {
				return fmt.Errorf("PVC %s still there", pvc.Name)
			}
			return nil
		})
	}
	// A 0-byte file in the volume source.
	d := getTemplate(t, ns, "shop")
	d.Spec.Source = myaasv1.DumpSource{PersistentVolumeClaim: &myaasv1.PVCDumpSource{ClaimName: claim, Path: "broken/empty.sql"}}
	if err := k8s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	f := waitForFailure(t, ns, "shop", d.Status.NextRevision-1, 300*time.Second)
	checkFailureMessage(t, f, "EmptySource", "empty.sql")

	// An S3 prefix under which the nightly job wrote nothing.
	endpoint := startS3Server(t, ns)
	s3Upload(t, ns, "backups", map[string][]byte{"other/shop.sql.gz": []byte("not under the prefix")})
	d = getTemplate(t, ns, "shop")
	d.Spec.Source = myaasv1.DumpSource{S3: &myaasv1.S3DumpSource{Endpoint: endpoint, Bucket: "backups", Prefix: "nightly/", Insecure: true,
		CredentialsSecretRef: &corev1.LocalObjectReference{Name: s3CredentialsSecret}}}
	if err := k8s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	f = waitForFailure(t, ns, "shop", d.Status.NextRevision-1, 300*time.Second)
	checkFailureMessage(t, f, "NoSourceFile", "nightly/")

	d = getTemplate(t, ns, "shop")
	if d.Status.LatestRevision != 1 || len(d.Status.Revisions) != 1 {
		t.Fatalf("latest revision %d, revisions %+v: a bad dump replaced the last good one", d.Status.LatestRevision, d.Status.Revisions)
	}
	if status, _, _ := conditionReason(d.Status.Conditions, myaasv1.ConditionReady); status != metav1.ConditionTrue {
		t.Fatalf("the template is not Ready with its last good revision")
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, &snapshotv1.VolumeSnapshot{}); err != nil {
		t.Fatalf("the last good snapshot is gone: %v", err)
	}
	if n := queryInt(t, connect(t, ns, "keeper"), "SELECT COUNT(*) FROM shop.orders"); n != int64(want.Orders) {
		t.Fatalf("the running instance has %d orders, want %d", n, want.Orders)
	}
	newInstance(t, ns, "after", "shop")
	waitReady(t, ns, "after")
	if got := getInstance(t, ns, "after").Status.Revision; got != 1 {
		t.Fatalf("new instance cloned revision %d", got)
	}
	if n := queryInt(t, connect(t, ns, "after"), "SELECT COUNT(*) FROM shop.orders"); n != int64(want.Orders) {
		t.Fatalf("a new clone of the last good revision has %d orders, want %d", n, want.Orders)
	}
}

// An import pod deleted while it loads is retried, and the import succeeds; a memory limit too
// small for the server is named as an OOM kill with the field to raise.
func TestImportPodFaultsAreRetriedAndNamed(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 200<<10) // slow: the import lasts long enough to be interrupted
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}})
	newTemplate(t, ns, "tiny", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Import.MaxAttempts = 2
		d.Spec.Import.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("48Mi")}
	})

	eventually(t, 180*time.Second, "import loading", func() error {
		ci := getTemplate(t, ns, "shop").Status.CurrentImport
		if ci == nil || ci.Phase != myaasv1.ImportPhaseLoading || ci.Progress == nil || ci.Progress.BytesDone == 0 {
			return fmt.Errorf("not loading yet")
		}
		return nil
	})
	kubectl(t, "-n", ns, "delete", "pod", "-l", "batch.kubernetes.io/job-name=shop-import-r1", "--wait=false")
	eventually(t, 120*time.Second, "second attempt announced", func() error {
		d := getTemplate(t, ns, "shop")
		if d.Status.LastFailure != nil {
			t.Fatalf("the import failed instead of being retried: %s", d.Status.LastFailure.Message)
		}
		if ci := d.Status.CurrentImport; ci == nil || ci.Attempt < 2 {
			return fmt.Errorf("attempt %v", ci)
		}
		return nil
	})
	ci := getTemplate(t, ns, "shop").Status.CurrentImport
	t.Logf("retry: %s", ci.LastAttemptFailure)
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	if d := getTemplate(t, ns, "shop"); d.Status.Revisions[0].Revision != 1 {
		t.Fatalf("revisions %+v", d.Status.Revisions)
	}
	if out := kubectl(t, "-n", ns, "get", "events", "--field-selector", "reason=ImportRetrying"); !strings.Contains(out, "shop") {
		t.Errorf("no ImportRetrying event:\n%s", out)
	}

	f := waitForFailure(t, ns, "tiny", 0, 300*time.Second)
	checkFailureMessage(t, f, "OOMKilled", "OOMKilled: raise spec.import.resources.limits.memory", "attempt 2 of 2")
	_, _, msg := conditionReason(getTemplate(t, ns, "tiny").Status.Conditions, myaasv1.ConditionImportFailed)
	if !strings.Contains(msg, "OOMKilled") {
		t.Errorf("ImportFailed condition: %q", msg)
	}
}

// A snapshot the storage driver fails to cut is retried until spec.import.snapshotTimeout; one
// that never becomes ready fails its revision then, and the next refresh goes ahead.
func TestSnapshotFaultsNeverBlockRefreshes(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *"}
		d.Spec.Import.SnapshotTimeout = &metav1.Duration{Duration: 40 * time.Second}
	})
	// A first error is transient: the snapshot is retried and becomes revision 1.
	injectSnapshotFault(t, ns, "fail-once")
	waitForRevision(t, ns, "shop", 1, 300*time.Second)

	// A snapshot that never becomes ready fails revision 2 after the timeout.
	injectSnapshotFault(t, ns, "stall")
	refresh(t, ns, "shop", "stalled")
	f := waitForFailure(t, ns, "shop", 1, 300*time.Second)
	checkFailureMessage(t, f, "SnapshotTimeout", "snapshotTimeout")
	if d := getTemplate(t, ns, "shop"); d.Status.LatestRevision != 1 {
		t.Fatalf("latest revision %d", d.Status.LatestRevision)
	}

	clearSnapshotFault(t, ns)
	refresh(t, ns, "shop", "after-stall")
	waitForRevision(t, ns, "shop", 3, 300*time.Second)
}

// startShopWithInstance imports the shop dump over HTTP into template shop and waits for an
// instance of it to be Ready.
func startShopWithInstance(t *testing.T, ns, instance string) {
	t.Helper()
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	newInstance(t, ns, instance, "shop")
	waitReady(t, ns, instance)
}

// podRun is an instance pod's identity and restarts: equal before and after means untouched.
type podRun struct {
	uid      string
	restarts int32
}

func instancePod(t *testing.T, ns, instance string) podRun {
	t.Helper()
	pod := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: instance + "-0"}, pod); err != nil {
		t.Fatal(err)
	}
	r := podRun{uid: string(pod.UID)}
	for _, cs := range pod.Status.ContainerStatuses {
		r.restarts += cs.RestartCount
	}
	return r
}

// A template's image edited to one that does not exist starts an import, never a restart of the
// instances running older revisions; the import names the pull failure, and reverting heals it.
func TestTemplateEditsRestartNoInstance(t *testing.T) {
	ns := newNamespace(t)
	startShopWithInstance(t, ns, "dev")
	before := instancePod(t, ns, "dev")

	d := getTemplate(t, ns, "shop")
	good := d.Spec.Engine.Image
	d.Spec.Engine.Image = "localhost/myaas/mariadb:does-not-exist"
	d.Spec.Engine.Config = map[string]string{"max_connections": "77"}
	if err := k8s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	eventually(t, 120*time.Second, "the import names the pull failure", func() error {
		_, reason, msg := conditionReason(getTemplate(t, ns, "shop").Status.Conditions, myaasv1.ConditionImporting)
		if reason != myaasv1.ReasonImagePullBackOff || !strings.Contains(msg, "does-not-exist") {
			return fmt.Errorf("Importing %s: %s", reason, msg)
		}
		return nil
	})
	if status, _, _ := conditionReason(getInstance(t, ns, "dev").Status.Conditions, myaasv1.ConditionReady); status != metav1.ConditionTrue {
		t.Fatal("the running instance lost Ready")
	}
	if after := instancePod(t, ns, "dev"); after != before {
		t.Fatalf("the running instance restarted: %+v -> %+v", before, after)
	}
	var maxConn int64
	if maxConn = queryInt(t, connect(t, ns, "dev"), "SELECT @@max_connections"); maxConn == 77 {
		t.Fatal("the running instance took the template's new config")
	}

	d = getTemplate(t, ns, "shop")
	d.Spec.Engine.Image, d.Spec.Engine.Config = good, nil
	if err := k8s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "reverting heals the template", func() error {
		d := getTemplate(t, ns, "shop")
		if d.Status.CurrentImport != nil {
			return fmt.Errorf("still importing: %q", d.Status.Summary)
		}
		if status, _, msg := conditionReason(d.Status.Conditions, myaasv1.ConditionImportFailed); status == metav1.ConditionTrue {
			return fmt.Errorf("ImportFailed: %s", msg)
		}
		if status, _, _ := conditionReason(d.Status.Conditions, myaasv1.ConditionReady); status != metav1.ConditionTrue || d.Status.LatestRevision != 1 {
			return fmt.Errorf("not Ready on revision 1")
		}
		return nil
	})
	// The abandoned import's Job and volume are gone.
	eventually(t, 60*time.Second, "the abandoned import cleaned up", func() error {
		if n := countOwned(t, ns, "shop", &corev1.PersistentVolumeClaimList{}); n != 1 {
			return fmt.Errorf("%d template PVCs", n)
		}
		if n := countOwned(t, ns, "shop", &batchv1.JobList{}); n != 1 {
			return fmt.Errorf("%d import Jobs", n)
		}
		return nil
	})
	if after := instancePod(t, ns, "dev"); after != before {
		t.Fatalf("the running instance restarted: %+v -> %+v", before, after)
	}
}

// usableWithin waits until the instance is Ready and a login with its Secret, as it is now,
// works, and checks that this came within limit of the change made at since.
func usableWithin(t *testing.T, ns, name string, since time.Time, limit time.Duration) {
	t.Helper()
	eventually(t, limit+20*time.Second, name+" Ready with the Secret's password", func() error {
		inst := &myaasv1.DatabaseInstance{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, inst); err != nil {
			return err
		}
		if status, reason, msg := conditionReason(inst.Status.Conditions, myaasv1.ConditionReady); status != metav1.ConditionTrue || inst.Status.ObservedGeneration != inst.Generation {
			return fmt.Errorf("Ready %s/%s: %s", status, reason, msg)
		}
		pod := &corev1.Pod{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-0"}, pod); err != nil || pod.Status.PodIP == "" {
			return fmt.Errorf("pod: %v", err)
		}
		s := &corev1.Secret{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-credentials"}, s); err != nil {
			return err
		}
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.DBName = string(s.Data["username"]), string(s.Data["password"]), "tcp", string(s.Data["database"])
		cfg.Addr, cfg.Timeout = pod.Status.PodIP+":3306", 2*time.Second
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		return db.PingContext(ctx)
	})
	took := time.Since(since)
	t.Logf("%s usable %s after the change", name, took.Round(10*time.Millisecond))
	if took > limit {
		t.Errorf("%s took %s to be usable with its Secret, want at most %s", name, took, limit)
	}
}

// loginWorks logs in with the Secret as it is now and reads the template's data.
func loginWorks(t *testing.T, ns, instance string) {
	t.Helper()
	creds := secretData(t, ns, instance+"-credentials")
	db := open(t, podAddr(t, ns, instance), creds["username"], creds["password"], creds["database"])
	eventually(t, 10*time.Second, "login with the Secret's password", func() error { return db.PingContext(ctx) })
	if n := queryInt(t, db, "SELECT COUNT(*) FROM shop.orders"); n != int64(shopDump.Expect().Orders) {
		t.Fatalf("%d orders", n)
	}
}

// The Secret is the source of truth: deleted, edited, or left behind by a deleted instance of
// the same name, the server follows it and the instance is Ready again within 10 s. A Secret the
// instance does not own is never adopted.
func TestSecretIsTheSourceOfTruth(t *testing.T) {
	ns := newNamespace(t)
	startShopWithInstance(t, ns, "dev")
	pod := instancePod(t, ns, "dev")

	// Deleted: a new Secret with new passwords, which the running server takes.
	old := secretData(t, ns, "dev-credentials")
	changed := time.Now()
	kubectl(t, "-n", ns, "delete", "secret", "dev-credentials")
	eventually(t, 10*time.Second, "a new Secret", func() error {
		s := &corev1.Secret{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dev-credentials"}, s); err != nil {
			return err
		}
		if string(s.Data["password"]) == old["password"] {
			return fmt.Errorf("same password")
		}
		return nil
	})
	usableWithin(t, ns, "dev", changed, 10*time.Second)
	loginWorks(t, ns, "dev")

	// Edited: the password a user sets is the password, and the keys derived from it follow.
	changed = time.Now()
	kubectl(t, "-n", ns, "patch", "secret", "dev-credentials", "--type=merge", "-p", `{"stringData":{"password":"chosen-by-the-user-42"}}`)
	usableWithin(t, ns, "dev", changed, 10*time.Second)
	loginWorks(t, ns, "dev")
	creds := secretData(t, ns, "dev-credentials")
	if !strings.Contains(creds["uri"], "chosen-by-the-user-42") || !strings.Contains(creds["jdbc-uri"], "chosen-by-the-user-42") {
		t.Errorf("derived keys did not follow the password: uri %q", creds["uri"])
	}
	if err := open(t, podAddr(t, ns, "dev"), "app", old["password"], "app").PingContext(ctx); err == nil {
		t.Error("the first password still works")
	}
	if after := instancePod(t, ns, "dev"); after != pod {
		t.Errorf("the server was restarted to take the Secret: %+v -> %+v", pod, after)
	}

	// Deleted and re-created under the same name at once, as a CI pipeline does.
	changed = time.Now()
	kubectl(t, "-n", ns, "delete", "databaseinstance", "dev", "--wait=false")
	newInstance(t, ns, "dev", "shop")
	usableWithin(t, ns, "dev", changed, 10*time.Second)
	loginWorks(t, ns, "dev")
	inst := getInstance(t, ns, "dev")
	s := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dev-credentials"}, s); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(s); ref == nil || ref.UID != inst.UID {
		t.Fatalf("the re-created instance uses a Secret owned by %+v", ref)
	}

	// A Secret of the name that this instance does not own is never adopted.
	kubectlIn(t, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: mine-credentials\nstringData:\n  password: not-yours\n", "-n", ns, "apply", "-f", "-")
	newInstance(t, ns, "mine", "shop")
	eventually(t, 30*time.Second, "SecretNotOwned", func() error {
		_, reason, msg := conditionReason(getInstance(t, ns, "mine").Status.Conditions, myaasv1.ConditionReady)
		if reason != myaasv1.ReasonSecretNotOwned || !strings.Contains(msg, "mine-credentials") {
			return fmt.Errorf("Ready reason %s: %s", reason, msg)
		}
		return nil
	})
	if got := secretData(t, ns, "mine-credentials"); len(got) != 1 || got["password"] != "not-yours" {
		t.Fatalf("a foreign Secret was changed: %v", got)
	}
}

// A template deleted and re-created under the same name imports afresh: none of the objects its
// predecessor left for the garbage collector (Jobs, CronJob, refresh requests) is adopted.
func TestRecreatedTemplateAdoptsNothingStale(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	mutate := func(d *myaasv1.DatabaseTemplate) { d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *"} }
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}}, mutate)
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	refresh(t, ns, "shop", "old-request")
	waitForRevision(t, ns, "shop", 2, 300*time.Second)
	oldUID := getTemplate(t, ns, "shop").UID

	kubectl(t, "-n", ns, "delete", "databasetemplate", "shop", "--wait=true", "--timeout=120s")
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}}, mutate)
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	d := getTemplate(t, ns, "shop")
	if d.UID == oldUID {
		t.Fatal("the template was not re-created")
	}
	if d.Status.LatestRevision != 1 || d.Status.HandledRefreshJob != "" {
		t.Fatalf("the new template took its predecessor's refresh request: latest %d, handled %q", d.Status.LatestRevision, d.Status.HandledRefreshJob)
	}
	for _, list := range []client.ObjectList{&batchv1.JobList{}, &corev1.PersistentVolumeClaimList{}, &snapshotv1.VolumeSnapshotList{}, &batchv1.CronJobList{}} {
		if err := k8s.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{myaasv1.LabelTemplate: "shop"}); err != nil {
			t.Fatal(err)
		}
		items, _ := metaItems(list)
		for _, o := range items {
			ref := metav1.GetControllerOf(o)
			if ref != nil && ref.UID == oldUID && o.GetDeletionTimestamp().IsZero() {
				// Left by the predecessor and not yet collected: allowed, as long as it is not used.
				continue
			}
			if ref != nil && ref.Kind == "DatabaseTemplate" && ref.UID != d.UID && ref.UID != oldUID {
				t.Errorf("%T %s owned by an unknown template %s", o, o.GetName(), ref.UID)
			}
		}
	}
	rev := d.Status.Revisions[0]
	snap := &snapshotv1.VolumeSnapshot{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: rev.SnapshotName}, snap); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(snap); ref == nil || ref.UID != d.UID {
		t.Fatalf("revision 1's snapshot belongs to %+v, not to the new template", ref)
	}
	newInstance(t, ns, "dev", "shop")
	waitReady(t, ns, "dev")
	loginWorks(t, ns, "dev")
}

// metaItems lists the objects of a typed list.
func metaItems(list client.ObjectList) ([]client.Object, error) {
	objs, err := apimeta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	out := make([]client.Object, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(client.Object))
	}
	return out, nil
}

const (
	managerNamespace  = "myaas-system"
	managerDeployment = "myaas-controller-manager"
)

// deployManager rolls the operator out with image, as an upgrade with `kubectl apply` would.
func deployManager(t *testing.T, image string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"manager","image":%q,"env":[{"name":"MYAAS_AGENT_IMAGE","value":%q}]}]}}}}`, image, image)
	kubectl(t, "-n", managerNamespace, "patch", "deployment", managerDeployment, "--type=strategic", "-p", patch)
	kubectl(t, "-n", managerNamespace, "rollout", "status", "deployment/"+managerDeployment, "--timeout=180s")
}

func agentColumn(t *testing.T, ns, name string) string {
	t.Helper()
	return strings.TrimSpace(kubectl(t, "-n", ns, "get", "dbi", name, "-o", "custom-columns=AGENT:.status.agent", "--no-headers"))
}

// An operator upgrade restarts no running instance; `kubectl get dbi` shows which instances run
// an older agent, and a reset moves them to the new one.
func TestOperatorUpgradeRestartsNoInstance(t *testing.T) {
	upgrade := os.Getenv("MYAAS_E2E_UPGRADE_IMAGE")
	if upgrade == "" {
		t.Fatal("MYAAS_E2E_UPGRADE_IMAGE names another build of the manager (hack/e2e.sh builds it)")
	}
	ns := newNamespace(t)
	startShopWithInstance(t, ns, "dev")
	if got := agentColumn(t, ns, "dev"); got != string(myaasv1.AgentCurrent) {
		t.Fatalf("Agent column %q before the upgrade", got)
	}
	before := instancePod(t, ns, "dev")

	dep := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: managerDeployment}, dep); err != nil {
		t.Fatal(err)
	}
	current := dep.Spec.Template.Spec.Containers[0].Image
	t.Cleanup(func() { deployManager(t, current) })
	deployManager(t, upgrade)

	eventually(t, 60*time.Second, "the new operator marks the instance's agent outdated", func() error {
		if got := agentColumn(t, ns, "dev"); got != string(myaasv1.AgentOutdated) {
			return fmt.Errorf("Agent column %q", got)
		}
		return nil
	})
	if out := kubectl(t, "-n", ns, "get", "dbi"); !strings.Contains(out, "AGENT") || !strings.Contains(out, "Outdated") {
		t.Errorf("kubectl get dbi does not show the outdated agent:\n%s", out)
	}
	time.Sleep(5 * time.Second) // a restart triggered by the new operator would show by now
	if after := instancePod(t, ns, "dev"); after != before {
		t.Fatalf("the upgrade restarted the instance: %+v -> %+v", before, after)
	}
	if status, _, _ := conditionReason(getInstance(t, ns, "dev").Status.Conditions, myaasv1.ConditionReady); status != metav1.ConditionTrue {
		t.Fatal("the instance lost Ready in the upgrade")
	}
	loginWorks(t, ns, "dev")

	// A reset moves the instance to the running operator's agent.
	kubectl(t, "-n", ns, "annotate", "dbi", "dev", "--overwrite", myaasv1.AnnotationReset+"="+time.Now().Format("150405"))
	eventually(t, 120*time.Second, "reset onto the current agent", func() error {
		inst := getInstance(t, ns, "dev")
		if status, _, _ := conditionReason(inst.Status.Conditions, myaasv1.ConditionReady); status != metav1.ConditionTrue || inst.Status.Resets != 1 {
			return fmt.Errorf("phase %s, resets %d", inst.Status.Phase, inst.Status.Resets)
		}
		if inst.Status.Agent != myaasv1.AgentCurrent {
			return fmt.Errorf("agent %s", inst.Status.Agent)
		}
		return nil
	})
	loginWorks(t, ns, "dev")
}
