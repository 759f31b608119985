package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

var bg = context.Background()

// newTemplate creates a template importing from a PVC that exists, with one retained revision
// unless changed by mutate.
func newTemplate(t *testing.T, ns, name string, mutate ...func(*myaasv1.DatabaseTemplate)) *myaasv1.DatabaseTemplate {
	t.Helper()
	src := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-dumps"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if err := k8s.Create(bg, src); err != nil {
		t.Fatal(err)
	}
	tmpl := &myaasv1.DatabaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: myaasv1.DatabaseTemplateSpec{
			Engine:  myaasv1.EngineSpec{Type: myaasv1.EngineMariaDB},
			Source:  myaasv1.DumpSource{PersistentVolumeClaim: &myaasv1.PVCDumpSource{ClaimName: src.Name, Path: "*.sql.gz"}},
			Storage: myaasv1.TemplateStorage{Size: resource.MustParse("2Gi")},
		},
	}
	for _, m := range mutate {
		m(tmpl)
	}
	if err := k8s.Create(bg, tmpl); err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func getTemplate(t *testing.T, ns, name string) *myaasv1.DatabaseTemplate {
	t.Helper()
	tmpl := &myaasv1.DatabaseTemplate{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, tmpl); err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func getInstance(t *testing.T, ns, name string) *myaasv1.DatabaseInstance {
	t.Helper()
	inst := &myaasv1.DatabaseInstance{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, inst); err != nil {
		t.Fatal(err)
	}
	return inst
}

// waitForImportJob waits until the operator created revision n's PVC and Job, and returns the Job.
func waitForImportJob(t *testing.T, ns, template string, n int32) *batchv1.Job {
	t.Helper()
	job := &batchv1.Job{}
	eventually(t, 20*time.Second, fmt.Sprintf("import job of revision %d", n), func() error {
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.TemplatePVCName(template, n)}, &corev1.PersistentVolumeClaim{}); err != nil {
			return err
		}
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.ImportJobName(template, n, 1)}, job)
	})
	return job
}

// playImportPod creates the Job's pod as the Job controller would, in the given state.
func playImportPod(t *testing.T, job *batchv1.Job, mutate func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	// The Job controller gives its pods the pod template's labels and the Job's name.
	labels := map[string]string{"batch.kubernetes.io/job-name": job.Name}
	for k, v := range job.Spec.Template.Labels {
		labels[k] = v
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: job.Namespace,
			Name:      job.Name + "-pod",
			Labels:    labels,
		},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	if err := k8s.Create(bg, pod); err != nil {
		t.Fatal(err)
	}
	mutate(pod)
	if err := k8s.Status().Update(bg, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

func terminatedPod(message string, exitCode int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		phase := corev1.PodSucceeded
		if exitCode != 0 {
			phase = corev1.PodFailed
		}
		p.Status.Phase = phase
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name:  "import",
			Image: p.Spec.Containers[0].Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, Message: message}},
		}}
	}
}

// playJobFinished marks a Job finished the way the Job controller does.
func playJobFinished(t *testing.T, job *batchv1.Job, succeeded bool) {
	t.Helper()
	now := metav1.Now()
	if err := k8s.Get(bg, client.ObjectKeyFromObject(job), job); err != nil {
		t.Fatal(err)
	}
	job.Status.StartTime = &now
	if succeeded {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &now
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
	} else {
		job.Status.Failed = 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: now},
		}
	}
	if err := k8s.Status().Update(bg, job); err != nil {
		t.Fatal(err)
	}
}

// playSnapshotReady marks revision n's snapshot ready, as the snapshot controller does.
func playSnapshotReady(t *testing.T, ns, template string, n int32, restoreSize string) {
	t.Helper()
	snap := &snapshotv1.VolumeSnapshot{}
	eventually(t, 20*time.Second, fmt.Sprintf("snapshot of revision %d", n), func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.SnapshotName(template, n)}, snap)
	})
	snap.Status = &snapshotv1.VolumeSnapshotStatus{
		ReadyToUse:   ptr.To(true),
		RestoreSize:  ptr.To(resource.MustParse(restoreSize)),
		CreationTime: ptr.To(metav1.Now()),
	}
	if err := k8s.Status().Update(bg, snap); err != nil {
		t.Fatal(err)
	}
}

// importRevision plays a whole successful import of revision n.
func importRevision(t *testing.T, ns, template string, n int32) {
	t.Helper()
	job := waitForImportJob(t, ns, template, n)
	playImportPod(t, job, terminatedPod(`{"outcome":"Succeeded","bytesRead":1048576,"files":1,"durationSeconds":3.5,"datadirBytes":52428800,"agentSHA256":"`+testAgentSHA256+`"}`, 0))
	playJobFinished(t, job, true)
	playSnapshotReady(t, ns, template, n, "2Gi")
	waitForLatestRevision(t, ns, template, n)
}

func waitForLatestRevision(t *testing.T, ns, template string, n int32) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("revision %d latest", n), func() error {
		tmpl := getTemplate(t, ns, template)
		if tmpl.Status.LatestRevision != n {
			return fmt.Errorf("latestRevision %d, status %+v", tmpl.Status.LatestRevision, tmpl.Status)
		}
		return nil
	})
}

// conditionIs checks a condition's status and reason, and that it describes the current generation.
func conditionIs(conds []metav1.Condition, generation int64, condType string, status metav1.ConditionStatus, reason string) error {
	c := meta.FindStatusCondition(conds, condType)
	switch {
	case c == nil:
		return fmt.Errorf("no %s condition in %+v", condType, conds)
	case c.Status != status || c.Reason != reason:
		return fmt.Errorf("%s is %s/%s (%s), want %s/%s", condType, c.Status, c.Reason, c.Message, status, reason)
	case c.ObservedGeneration != generation:
		return fmt.Errorf("%s observedGeneration %d, want %d", condType, c.ObservedGeneration, generation)
	}
	return nil
}

// countChildren counts the template's objects of one kind, to catch duplicates.
func countChildren(t *testing.T, ns, template string, list client.ObjectList) int {
	t.Helper()
	if err := k8s.List(bg, list, client.InNamespace(ns), client.MatchingLabels{myaasv1.LabelTemplate: template}); err != nil {
		t.Fatal(err)
	}
	return meta.LenList(list)
}

// eventsFor lists the events recorded for an object.
func eventsFor(t *testing.T, ns, name string) []corev1.Event {
	t.Helper()
	list := &corev1.EventList{}
	if err := k8s.List(bg, list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// waitForEvent fails the test unless an event with the reason comes for the object: the operator
// records events asynchronously, so one may land just after the status the test already saw.
func waitForEvent(t *testing.T, ns, name, reason string) {
	t.Helper()
	eventually(t, 10*time.Second, reason+" event for "+name, func() error {
		if !hasEvent(eventsFor(t, ns, name), reason) {
			return fmt.Errorf("no %s event", reason)
		}
		return nil
	})
}

func hasEvent(events []corev1.Event, reason string) bool {
	for _, e := range events {
		if e.Reason == reason {
			return true
		}
	}
	return false
}

func metaCondition(conds []metav1.Condition, condType string) *metav1.Condition {
	c := meta.FindStatusCondition(conds, condType)
	if c == nil {
		return &metav1.Condition{}
	}
	return c
}

func envHas(env []corev1.EnvVar, name, value string) bool {
	for _, e := range env {
		if e.Name == name && e.Value == value {
			return true
		}
	}
	return false
}

func addFinalizer(t *testing.T, obj client.Object, ns, name, finalizer string) {
	t.Helper()
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatal(err)
	}
	obj.SetFinalizers(append(obj.GetFinalizers(), finalizer))
	if err := k8s.Update(bg, obj); err != nil {
		t.Fatal(err)
	}
}

func removeFinalizer(t *testing.T, obj client.Object, ns, name, finalizer string) {
	t.Helper()
	eventually(t, 10*time.Second, "remove finalizer "+finalizer, func() error {
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
			return client.IgnoreNotFound(err)
		}
		var kept []string
		for _, f := range obj.GetFinalizers() {
			if f != finalizer {
				kept = append(kept, f)
			}
		}
		obj.SetFinalizers(kept)
		return k8s.Update(bg, obj)
	})
}

// tableRow asks the API server for the columns `kubectl get` prints, by the CRD's printer columns.
func tableRow(t *testing.T, ns, resource, name string) map[string]string {
	t.Helper()
	rc, err := rest.RESTClientFor(tableClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rc.Get().AbsPath("/apis/myaas.io/v1alpha1/namespaces", ns, resource, name).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(bg)
	if err != nil {
		t.Fatal(err)
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(raw, table); err != nil {
		t.Fatal(err)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("%d rows", len(table.Rows))
	}
	row := map[string]string{}
	for i, col := range table.ColumnDefinitions {
		v := table.Rows[0].Cells[i]
		if v == nil {
			row[col.Name] = ""
			continue
		}
		row[col.Name] = fmt.Sprint(v)
	}
	return row
}

func tableClientConfig() *rest.Config {
	cfg := rest.CopyConfig(testConfig)
	cfg.GroupVersion = &metav1.SchemeGroupVersion
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	return cfg
}

// playPVCProtection waits until the PVC is being deleted and then releases it, as the
// pvc-protection controller does once no pod uses it.
func playPVCProtection(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, 20*time.Second, "PVC "+name+" deleted", func() error {
		pvc := &corev1.PersistentVolumeClaim{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, pvc); err != nil {
			return client.IgnoreNotFound(err)
		}
		if pvc.DeletionTimestamp.IsZero() {
			return fmt.Errorf("not being deleted")
		}
		return nil
	})
	removeFinalizer(t, &corev1.PersistentVolumeClaim{}, ns, name, "kubernetes.io/pvc-protection")
}

// deleteInstance deletes an instance and plays the garbage collector, which envtest lacks: the
// clone PVCs it owns go too, past their protection finalizer, as they would once its pod is gone.
func deleteInstance(t *testing.T, inst *myaasv1.DatabaseInstance) {
	t.Helper()
	pvcs := &corev1.PersistentVolumeClaimList{}
	if err := k8s.List(bg, pvcs, client.InNamespace(inst.Namespace)); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(bg, inst); err != nil {
		t.Fatal(err)
	}
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		if owner := metav1.GetControllerOf(pvc); owner == nil || owner.UID != inst.UID {
			continue
		}
		if err := k8s.Delete(bg, pvc); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		playPVCProtection(t, pvc.Namespace, pvc.Name)
	}
}

// testAgentSHA256 stands for the manager's binary: imports played by the tests report it as the
// agent they kept in the template volume.
const testAgentSHA256 = "5e1f0000000000000000000000000000000000000000000000000000000000a1"
