package controllers

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
)

func TestTemplatePipelineReportsProgressAndBecomesReady(t *testing.T) {
	requireEnv(t)
	// The agent's progress endpoint, reached the way the controller reaches a pod.
	progress, _ := json.Marshal(agentapi.Progress{Step: "Loading", BytesDone: 42 << 20, BytesTotal: 100 << 20, Percent: 42, ETASeconds: 80, CurrentFile: "shop.sql.gz"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/progress" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(progress)
	}))
	defer srv.Close()
	portNum := srv.Listener.Addr().(*net.TCPAddr).Port

	startManager(t, Options{Progress: HTTPProgressReader{Port: portNum}})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")

	job := waitForImportJob(t, ns, "shop", 1)
	if owner := metav1.GetControllerOf(job); owner == nil || owner.Kind != "DatabaseTemplate" || owner.Name != "shop" {
		t.Fatalf("import job is not owned by the template: %+v", job.OwnerReferences)
	}
	tmpl := getTemplate(t, ns, "shop")
	if ci := tmpl.Status.CurrentImport; ci == nil || ci.Revision != 1 || ci.Trigger != TriggerCreated {
		t.Fatalf("currentImport = %+v, want revision 1 triggered by creation", ci)
	}
	if !controllerutil.ContainsFinalizer(tmpl, templateFinalizer) {
		t.Fatalf("template has no %s finalizer: %v", templateFinalizer, tmpl.Finalizers)
	}

	// While the import pod runs, the agent's progress shows in the status and in `kubectl get`.
	playImportPod(t, job, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = "127.0.0.1"
	})
	eventually(t, 20*time.Second, "progress in status", func() error {
		tmpl := getTemplate(t, ns, "shop")
		ci := tmpl.Status.CurrentImport
		if ci == nil || ci.Progress == nil || ci.Progress.Percent != "42%" || ci.Progress.CurrentFile != "shop.sql.gz" {
			return fmt.Errorf("currentImport %+v", ci)
		}
		if tmpl.Status.Summary != "r1 Loading 42%" {
			return fmt.Errorf("progress column %q", tmpl.Status.Summary)
		}
		return conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionImporting, metav1.ConditionTrue, myaasv1.ReasonLoading)
	})
	row := tableRow(t, ns, "databasetemplates", "shop")
	if row["Progress"] != "r1 Loading 42%" || row["Engine"] != "mariadb" || row["Ready"] != "False" {
		t.Fatalf("kubectl get columns while importing: %v", row)
	}

	// The import succeeds: the snapshot is taken only now, from the revision's PVC.
	pod := &corev1.Pod{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: job.Name + "-pod"}, pod); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.SnapshotName("shop", 1)}, &snapshotv1.VolumeSnapshot{}); err == nil {
		t.Fatal("snapshot taken while the import was still running")
	}
	terminatedPod(`{"bytesRead":104857600,"files":2,"durationSeconds":12.5,"datadirBytes":314572800}`, 0)(pod)
	if err := k8s.Status().Update(bg, pod); err != nil {
		t.Fatal(err)
	}
	playJobFinished(t, job, true)
	snap := &snapshotv1.VolumeSnapshot{}
	eventually(t, 20*time.Second, "snapshot", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, snap)
	})
	if src := snap.Spec.Source.PersistentVolumeClaimName; src == nil || *src != "shop-r1" {
		t.Fatalf("snapshot source %v, want PVC shop-r1", src)
	}
	playSnapshotReady(t, ns, "shop", 1, "2Gi")
	waitForLatestRevision(t, ns, "shop", 1)

	tmpl = getTemplate(t, ns, "shop")
	if err := conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonRevisionAvailable); err != nil {
		t.Fatal(err)
	}
	if err := conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionImporting, metav1.ConditionFalse, myaasv1.ReasonIdle); err != nil {
		t.Fatal(err)
	}
	rev := tmpl.Status.Revisions[0]
	if rev.Revision != 1 || rev.SnapshotName != "shop-r1" || rev.DumpBytes != 104857600 || rev.Size.String() != "300Mi" ||
		rev.RestoreSize.String() != "2Gi" || rev.ImportDuration == nil {
		t.Fatalf("revision record %+v", rev)
	}
	if tmpl.Status.CurrentImport != nil || tmpl.Status.ObservedGeneration != tmpl.Generation {
		t.Fatalf("status after import: %+v", tmpl.Status)
	}
	row = tableRow(t, ns, "databasetemplates", "shop")
	if row["Latest"] != "1" || row["Ready"] != "True" || row["Progress"] != "" {
		t.Fatalf("kubectl get columns after import: %v", row)
	}
	waitForEvent(t, ns, "shop", EventRevisionReady)
	// Nothing more happens without a reason: no second import.
	consistently(t, 1500*time.Millisecond, "no second import", func() error {
		if n := countChildren(t, ns, "shop", &batchv1.JobList{}); n != 1 {
			return fmt.Errorf("%d jobs", n)
		}
		return nil
	})
}

func TestFailedImportKeepsPreviousRevisionAndNamesTheError(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop", func(d *myaasv1.DatabaseTemplate) { d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *"} })
	importRevision(t, ns, "shop", 1)

	// A refresh by hand, as `kubectl create job --from=cronjob/shop-refresh` does it.
	requestRefresh(t, ns, "shop", "manual-1")
	job := waitForImportJob(t, ns, "shop", 2)
	agentError := "nightly/shop.sql.gz: line 1234 (byte 56789): ERROR 1064 (42000): You have an error in your SQL syntax; statement starts: INSERT INTO orders VALUES (…)"
	report, _ := json.Marshal(agentapi.Report{Outcome: agentapi.OutcomeFailed, Reason: agentapi.ReasonSQLError, Message: agentError})
	playImportPod(t, job, terminatedPod(string(report), 1))
	playJobFinished(t, job, false)

	eventually(t, 20*time.Second, "import failure reported", func() error {
		tmpl := getTemplate(t, ns, "shop")
		if err := conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionImportFailed, metav1.ConditionTrue, agentapi.ReasonSQLError); err != nil {
			return err
		}
		return nil
	})
	tmpl := getTemplate(t, ns, "shop")
	msg := metaCondition(tmpl.Status.Conditions, myaasv1.ConditionImportFailed).Message
	if !strings.Contains(msg, "nightly/shop.sql.gz: line 1234") || !strings.Contains(msg, "statement starts: INSERT INTO orders") {
		t.Fatalf("failure message does not name file, line and statement: %q", msg)
	}
	if tmpl.Status.LatestRevision != 1 || tmpl.Status.LastFailure == nil || tmpl.Status.LastFailure.Revision != 2 {
		t.Fatalf("status after failure: latest %d, lastFailure %+v", tmpl.Status.LatestRevision, tmpl.Status.LastFailure)
	}
	if err := conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonRevisionAvailable); err != nil {
		t.Fatalf("the previous revision must keep serving: %v", err)
	}
	waitForEvent(t, ns, "shop", EventImportFailed)
	// No snapshot of the failed import; revision 1 stays, the failed attempt's full-size volume
	// goes, with its Job (whose finished pod would otherwise hold the volume).
	for _, obj := range []client.Object{
		&snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "shop-r1"}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "shop-r1"}},
	} {
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: obj.GetName()}, obj); err != nil || !obj.GetDeletionTimestamp().IsZero() {
			t.Fatalf("%T %s must be kept: %v", obj, obj.GetName(), err)
		}
	}
	eventually(t, 10*time.Second, "the failed import's volume and Job deleted", func() error {
		for _, obj := range []client.Object{&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "shop-r2"}}, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "shop-import-r2"}}} {
			if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: obj.GetName()}, obj); err == nil && obj.GetDeletionTimestamp().IsZero() {
				return fmt.Errorf("%T %s still there", obj, obj.GetName())
			}
		}
		return nil
	})
	consistently(t, time.Second, "no snapshot of a failed import, no retry", func() error {
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r2"}, &snapshotv1.VolumeSnapshot{}); err == nil {
			return fmt.Errorf("snapshot shop-r2 exists")
		}
		for _, name := range []string{"shop-import-r2-a2", "shop-import-r3"} {
			if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, &batchv1.Job{}); err == nil {
				return fmt.Errorf("a broken dump was tried again: Job %s", name)
			}
		}
		return nil
	})

	// The next refresh starts revision 3 and clears away the failed attempt.
	requestRefresh(t, ns, "shop", "manual-2")
	waitForImportJob(t, ns, "shop", 3)
	eventually(t, 20*time.Second, "failed attempt removed", func() error {
		for _, obj := range []client.Object{&corev1.PersistentVolumeClaim{}, &batchv1.Job{}} {
			name := "shop-r2"
			if _, ok := obj.(*batchv1.Job); ok {
				name = "shop-import-r2"
			}
			if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, obj); err == nil && obj.GetDeletionTimestamp().IsZero() {
				return fmt.Errorf("%s still there", name)
			}
		}
		return nil
	})
	importRevision(t, ns, "shop", 3)
	tmpl = getTemplate(t, ns, "shop")
	if tmpl.Status.LastFailure != nil {
		t.Fatalf("lastFailure not cleared: %+v", tmpl.Status.LastFailure)
	}
	if err := conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionImportFailed, metav1.ConditionFalse, myaasv1.ReasonImportSucceeded); err != nil {
		t.Fatal(err)
	}
}

func TestSpecChangeStartsImportButScheduleChangeDoesNot(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)

	tmpl := getTemplate(t, ns, "shop")
	tmpl.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "@daily"}
	tmpl.Spec.RetainRevisions = 3
	if err := k8s.Update(bg, tmpl); err != nil {
		t.Fatal(err)
	}
	cron := &batchv1.CronJob{}
	eventually(t, 20*time.Second, "refresh CronJob", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-refresh"}, cron)
	})
	if cron.Spec.Schedule != "@daily" || metav1.GetControllerOf(cron) == nil {
		t.Fatalf("cronjob %+v", cron.Spec)
	}
	consistently(t, time.Second, "no import for a schedule change", func() error {
		if getTemplate(t, ns, "shop").Status.CurrentImport != nil {
			return fmt.Errorf("an import started")
		}
		return nil
	})

	tmpl = getTemplate(t, ns, "shop")
	tmpl.Spec.PostImportSQL = &myaasv1.PostImportSQL{Statements: []string{"UPDATE users SET email = CONCAT(id, '@example.invalid')"}}
	tmpl.Spec.Refresh = nil
	if err := k8s.Update(bg, tmpl); err != nil {
		t.Fatal(err)
	}
	job := waitForImportJob(t, ns, "shop", 2)
	if got := getTemplate(t, ns, "shop").Status.CurrentImport; got == nil || got.Trigger != TriggerSpecChanged {
		t.Fatalf("trigger = %+v", got)
	}
	if !envHas(job.Spec.Template.Spec.Containers[0].Env, "MYAAS_POST_IMPORT_SQL", "UPDATE users SET email = CONCAT(id, '@example.invalid');\n") {
		t.Fatalf("post-import SQL not passed: %+v", job.Spec.Template.Spec.Containers[0].Env)
	}
	eventually(t, 20*time.Second, "CronJob removed with spec.refresh", func() error {
		err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-refresh"}, cron)
		if err == nil && cron.DeletionTimestamp.IsZero() {
			return fmt.Errorf("still there")
		}
		return nil
	})
}

func TestManagerRestartMidPipelineCreatesNoDuplicates(t *testing.T) {
	requireEnv(t)
	first := startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	job := waitForImportJob(t, ns, "shop", 1)
	first.stop()

	// The Job finishes while no manager runs.
	playImportPod(t, job, terminatedPod(`{"bytesRead":10}`, 0))
	playJobFinished(t, job, true)

	second := startManager(t, Options{})
	eventually(t, 20*time.Second, "snapshot after restart", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, &snapshotv1.VolumeSnapshot{})
	})
	second.stop()
	startManager(t, Options{})
	playSnapshotReady(t, ns, "shop", 1, "2Gi")
	waitForLatestRevision(t, ns, "shop", 1)

	consistently(t, time.Second, "one of each child", func() error {
		counts := map[string]int{
			"PVC":      countChildren(t, ns, "shop", &corev1.PersistentVolumeClaimList{}),
			"Job":      countChildren(t, ns, "shop", &batchv1.JobList{}),
			"Snapshot": countChildren(t, ns, "shop", &snapshotv1.VolumeSnapshotList{}),
		}
		for kind, n := range counts {
			if n != 1 {
				return fmt.Errorf("%d %s objects, want 1", n, kind)
			}
		}
		return nil
	})
	if st := getTemplate(t, ns, "shop").Status; st.NextRevision != 2 || len(st.Revisions) != 1 {
		t.Fatalf("status after restarts: %+v", st)
	}
}

func TestGarbageCollectionWaitsForInstancesAndDeletesSnapshotBeforeVolume(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop", func(d *myaasv1.DatabaseTemplate) { d.Spec.RetainRevisions = 1 })
	importRevision(t, ns, "shop", 1)

	// An instance of revision 1 pins it.
	inst := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dev"},
		Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: "shop"}},
	}
	if err := k8s.Create(bg, inst); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "instance pinned to revision 1 and counted", func() error {
		if getInstance(t, ns, "dev").Status.Revision != 1 {
			return fmt.Errorf("not pinned")
		}
		if revs := getTemplate(t, ns, "shop").Status.Revisions; len(revs) != 1 || revs[0].Instances != 1 {
			return fmt.Errorf("revisions %+v", revs)
		}
		return nil
	})
	// The snapshot controller puts a finalizer on snapshots; keep one so the order can be seen.
	addFinalizer(t, &snapshotv1.VolumeSnapshot{}, ns, "shop-r1", "test.myaas.io/hold")

	requestRefresh(t, ns, "shop", "manual-1")
	importRevision(t, ns, "shop", 2)
	consistently(t, 1500*time.Millisecond, "revision 1 kept while an instance uses it", func() error {
		revs := getTemplate(t, ns, "shop").Status.Revisions
		if len(revs) != 2 {
			return fmt.Errorf("revisions %+v", revs)
		}
		snap := &snapshotv1.VolumeSnapshot{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, snap); err != nil || !snap.DeletionTimestamp.IsZero() {
			return fmt.Errorf("snapshot shop-r1 deleted while in use")
		}
		return nil
	})

	deleteInstance(t, inst)
	eventually(t, 20*time.Second, "snapshot of revision 1 deleted", func() error {
		snap := &snapshotv1.VolumeSnapshot{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, snap); err != nil || snap.DeletionTimestamp.IsZero() {
			return fmt.Errorf("not being deleted: %w", err)
		}
		return nil
	})
	consistently(t, 1500*time.Millisecond, "volume outlives its snapshot", func() error {
		pvc := &corev1.PersistentVolumeClaim{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, pvc); err != nil || !pvc.DeletionTimestamp.IsZero() {
			return fmt.Errorf("PVC shop-r1 deleted before its snapshot was gone")
		}
		return nil
	})
	removeFinalizer(t, &snapshotv1.VolumeSnapshot{}, ns, "shop-r1", "test.myaas.io/hold")
	playPVCProtection(t, ns, "shop-r1")
	eventually(t, 20*time.Second, "revision 1 collected", func() error {
		if revs := getTemplate(t, ns, "shop").Status.Revisions; len(revs) != 1 || revs[0].Revision != 2 {
			return fmt.Errorf("revisions %+v", revs)
		}
		return nil
	})
	waitForEvent(t, ns, "shop", EventRevisionDeleted)
}

func TestTemplateDeletionWaitsForInstances(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	inst := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dev"},
		Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: "shop"}},
	}
	if err := k8s.Create(bg, inst); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "instance pinned", func() error {
		if getInstance(t, ns, "dev").Status.Revision != 1 {
			return fmt.Errorf("not pinned")
		}
		return nil
	})
	if err := k8s.Delete(bg, getTemplate(t, ns, "shop")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "deletion waits for the instance", func() error {
		tmpl := getTemplate(t, ns, "shop")
		c := metaCondition(tmpl.Status.Conditions, myaasv1.ConditionReady)
		if c == nil || c.Reason != myaasv1.ReasonWaitingForInstances || !strings.Contains(c.Message, "DatabaseInstance/dev") {
			return fmt.Errorf("ready condition %+v", c)
		}
		return nil
	})
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, &snapshotv1.VolumeSnapshot{}); err != nil {
		t.Fatalf("snapshot deleted while an instance uses it: %v", err)
	}
	deleteInstance(t, inst)
	playPVCProtection(t, ns, "shop-r1")
	eventually(t, 20*time.Second, "template gone", func() error {
		err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop"}, &myaasv1.DatabaseTemplate{})
		if err == nil {
			return fmt.Errorf("still there")
		}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, &snapshotv1.VolumeSnapshot{}); err == nil {
			return fmt.Errorf("snapshot left behind")
		}
		return nil
	})
}

func TestRunTimeReferenceErrorsBlockImportWithActionableCondition(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Storage.SnapshotClassName = ptr.To("no-such-class")
		d.Spec.Import.SnapshotTimeout = &metav1.Duration{Duration: 4 * time.Second}
	})
	eventually(t, 20*time.Second, "blocked on the snapshot class", func() error {
		tmpl := getTemplate(t, ns, "shop")
		if err := conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionImporting, metav1.ConditionFalse, myaasv1.ReasonSnapshotClassNotFound); err != nil {
			return err
		}
		if msg := metaCondition(tmpl.Status.Conditions, myaasv1.ConditionImporting).Message; !strings.Contains(msg, `"no-such-class"`) || !strings.Contains(msg, "spec.storage.snapshotClassName") {
			return fmt.Errorf("message %q does not name the class and field", msg)
		}
		return conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonNoRevisionYet)
	})
	if n := countChildren(t, ns, "shop", &corev1.PersistentVolumeClaimList{}); n != 0 {
		t.Fatalf("%d PVCs created for a blocked import", n)
	}
	waitForEvent(t, ns, "shop", EventImportBlocked)

	// Creating the class unblocks the import (the next periodic check or any change picks it up).
	class := &snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "no-such-class"}, Driver: "test.csi", DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete}
	if err := k8s.Create(bg, class); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k8s.Delete(bg, class) }()
	tmpl := getTemplate(t, ns, "shop")
	tmpl.Annotations = map[string]string{"touch": "1"}
	if err := k8s.Update(bg, tmpl); err != nil {
		t.Fatal(err)
	}
	job := waitForImportJob(t, ns, "shop", 1)
	playImportPod(t, job, terminatedPod(`{"bytesRead":10}`, 0))
	playJobFinished(t, job, true)

	// A snapshot error is taken for transient and retried until the snapshot timeout...
	snap := &snapshotv1.VolumeSnapshot{}
	eventually(t, 20*time.Second, "snapshot", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, snap)
	})
	snap.Status = &snapshotv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(false), Error: &snapshotv1.VolumeSnapshotError{Message: ptr.To("driver test.csi: out of space")}}
	if err := k8s.Status().Update(bg, snap); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "snapshot error shown while retried", func() error {
		tmpl := getTemplate(t, ns, "shop")
		if tmpl.Status.LastFailure != nil {
			return fmt.Errorf("failed at the first error: %+v", tmpl.Status.LastFailure)
		}
		if c := metaCondition(tmpl.Status.Conditions, myaasv1.ConditionImporting); c == nil || !strings.Contains(c.Message, "out of space") {
			return fmt.Errorf("importing condition %+v", c)
		}
		return nil
	})
	// ...then fails the revision, naming the timeout and the last error, and deletes the volume.
	eventually(t, 20*time.Second, "snapshot timeout reported", func() error {
		tmpl := getTemplate(t, ns, "shop")
		if err := conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionImportFailed, metav1.ConditionTrue, myaasv1.ReasonSnapshotTimeout); err != nil {
			return err
		}
		if msg := metaCondition(tmpl.Status.Conditions, myaasv1.ConditionImportFailed).Message; !strings.Contains(msg, "out of space") || !strings.Contains(msg, "snapshotTimeout") {
			return fmt.Errorf("message %q", msg)
		}
		return nil
	})
	eventually(t, 10*time.Second, "the failed revision's snapshot and volume deleted", func() error {
		for _, obj := range []client.Object{&corev1.PersistentVolumeClaim{}, &snapshotv1.VolumeSnapshot{}} {
			if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, obj); err == nil && obj.GetDeletionTimestamp().IsZero() {
				return fmt.Errorf("%T shop-r1 still there", obj)
			}
		}
		return nil
	})
	// The next refresh goes ahead.
	requestRefresh(t, ns, "shop", "after-timeout")
	waitForImportJob(t, ns, "shop", 2)
}

// requestRefresh creates a refresh-request Job as `kubectl create job --from=cronjob/<t>-refresh`
// does: with the CronJob's job template labels.
func requestRefresh(t *testing.T, ns, template, name string) {
	t.Helper()
	tmpl := getTemplate(t, ns, template)
	if tmpl.Spec.Refresh == nil {
		tmpl.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "@daily"}
	}
	cron := builder.RefreshCronJob(tmpl, "localhost/myaas/manager:test")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: cron.Spec.JobTemplate.Labels,
			Annotations: map[string]string{"cronjob.kubernetes.io/instantiate": "manual"}},
		Spec: cron.Spec.JobTemplate.Spec,
	}
	if err := k8s.Create(bg, job); err != nil {
		t.Fatal(err)
	}
}
