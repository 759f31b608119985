package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
)

// Triggers of an import, as shown in status.currentImport.trigger.
const (
	TriggerCreated     = "Created"
	TriggerSpecChanged = "SpecChanged"
)

// importPollInterval is how often a running import's progress is read.
const importPollInterval = 5 * time.Second

// reconcileImport starts an import when one is due and moves the running one along:
// Provisioning/Loading (PVC and Job) → Snapshotting (VolumeSnapshot) → a new revision.
func (r *DatabaseTemplateReconciler) reconcileImport(ctx context.Context, t *myaasv1.DatabaseTemplate) (ctrl.Result, error) {
	if t.Status.CurrentImport == nil {
		return r.startImportIfDue(ctx, t)
	}
	switch t.Status.CurrentImport.Phase {
	case myaasv1.ImportPhaseSnapshotting:
		return r.reconcileSnapshot(ctx, t)
	default:
		return r.reconcileImportJob(ctx, t)
	}
}

// ImportSpecHash identifies the parts of a spec that change what an import produces. Changing
// them starts a new import; changing anything else (schedule, retention) does not.
func ImportSpecHash(spec myaasv1.DatabaseTemplateSpec) string {
	relevant := struct {
		Engine     myaasv1.EngineSpec
		Source     myaasv1.DumpSource
		PostImport *myaasv1.PostImportSQL
		Storage    myaasv1.TemplateStorage
	}{spec.Engine, spec.Source, spec.PostImportSQL, spec.Storage}
	b, _ := json.Marshal(relevant) // a struct of plain fields always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// importTrigger says why an import is due, or "" when none is. A failed import is not retried with
// the same spec until a refresh is requested: retrying a broken dump only hides the error.
func (r *DatabaseTemplateReconciler) importTrigger(ctx context.Context, t *myaasv1.DatabaseTemplate) (trigger string, refreshJob string, err error) {
	hash := ImportSpecHash(t.Spec)
	st := t.Status

	jobs := &batchv1.JobList{}
	if err := r.List(ctx, jobs, client.InNamespace(t.Namespace), client.MatchingLabels{
		myaasv1.LabelTemplate: t.Name, myaasv1.LabelRole: myaasv1.RoleRefreshRequest,
	}); err != nil {
		return "", "", fmt.Errorf("list refresh jobs: %w", err)
	}
	if newest := newestJob(jobs.Items); newest != nil && newest.Name != st.HandledRefreshJob {
		return "refresh job " + newest.Name, newest.Name, nil
	}

	failedSameSpec := st.LastFailure != nil && st.LastFailure.SpecHash == hash
	switch {
	case failedSameSpec:
		return "", "", nil
	case st.LatestRevision == 0 && st.LastFailure == nil:
		return TriggerCreated, "", nil
	case st.LatestRevision == 0 || st.LatestSpecHash != hash:
		return TriggerSpecChanged, "", nil
	}
	return "", "", nil
}

func newestJob(jobs []batchv1.Job) *batchv1.Job {
	if len(jobs) == 0 {
		return nil
	}
	sort.Slice(jobs, func(i, j int) bool {
		ti, tj := jobs[i].CreationTimestamp, jobs[j].CreationTimestamp
		if ti.Equal(&tj) {
			return jobs[i].Name < jobs[j].Name
		}
		return ti.Before(&tj)
	})
	return &jobs[len(jobs)-1]
}

// startImportIfDue allocates the next revision number and records it in status before any child
// exists: the names of the children derive from that number, so a manager restarted at any point
// finds the same PVC, Job and snapshot again instead of creating duplicates.
func (r *DatabaseTemplateReconciler) startImportIfDue(ctx context.Context, t *myaasv1.DatabaseTemplate) (ctrl.Result, error) {
	trigger, refreshJob, err := r.importTrigger(ctx, t)
	if err != nil || trigger == "" {
		return ctrl.Result{}, err
	}
	if blocked, err := r.importBlocked(ctx, t); err != nil || blocked {
		return ctrl.Result{RequeueAfter: 30 * time.Second}, err
	}
	if err := r.deleteFailedAttempt(ctx, t); err != nil {
		return ctrl.Result{}, err
	}

	n := max(t.Status.NextRevision, 1)
	for _, rev := range t.Status.Revisions {
		n = max(n, rev.Revision+1)
	}
	t.Status.NextRevision = n + 1
	if refreshJob != "" {
		t.Status.HandledRefreshJob = refreshJob
	}
	t.Status.CurrentImport = &myaasv1.CurrentImport{
		Revision:  n,
		Phase:     myaasv1.ImportPhaseProvisioning,
		Trigger:   trigger,
		SpecHash:  ImportSpecHash(t.Spec),
		StartedAt: metav1.NewTime(r.Clock.Now()),
	}
	log.FromContext(ctx).Info("starting import", "revision", n, "trigger", trigger)
	r.Recorder.Eventf(t, corev1.EventTypeNormal, EventImportStarted, "Importing revision %d (%s)", n, trigger)
	return ctrl.Result{RequeueAfter: requeueSoon}, nil
}

// importBlocked checks the references that can only be wrong at run time, so that a typo gives a
// condition naming the field instead of a PVC or snapshot stuck forever.
func (r *DatabaseTemplateReconciler) importBlocked(ctx context.Context, t *myaasv1.DatabaseTemplate) (bool, error) {
	block := func(reason, msg string) (bool, error) {
		if c := meta.FindStatusCondition(t.Status.Conditions, myaasv1.ConditionImporting); c == nil || c.Reason != reason || c.Message != msg {
			r.Recorder.Event(t, corev1.EventTypeWarning, EventImportBlocked, msg)
		}
		setCondition(&t.Status.Conditions, t.Generation, myaasv1.ConditionImporting, metav1.ConditionFalse, reason, msg)
		return true, nil
	}
	if _, _, err := builder.EngineImage(t.Spec.Engine); err != nil {
		return block(myaasv1.ReasonUnknownEngine, "spec.engine.type: "+err.Error())
	}
	if sc := t.Spec.Storage.StorageClassName; sc != nil {
		if err := r.Get(ctx, client.ObjectKey{Name: *sc}, &storagev1.StorageClass{}); apierrors.IsNotFound(err) {
			return block(myaasv1.ReasonStorageClassNotFound, fmt.Sprintf("StorageClass %q named in spec.storage.storageClassName does not exist", *sc))
		} else if err != nil {
			return false, fmt.Errorf("get StorageClass %s: %w", *sc, err)
		}
	}
	if vsc := t.Spec.Storage.SnapshotClassName; vsc != nil {
		if err := r.Get(ctx, client.ObjectKey{Name: *vsc}, &snapshotv1.VolumeSnapshotClass{}); apierrors.IsNotFound(err) {
			return block(myaasv1.ReasonSnapshotClassNotFound, fmt.Sprintf("VolumeSnapshotClass %q named in spec.storage.snapshotClassName does not exist", *vsc))
		} else if err != nil {
			return false, fmt.Errorf("get VolumeSnapshotClass %s: %w", *vsc, err)
		}
	}
	if src := t.Spec.Source.PersistentVolumeClaim; src != nil {
		key := client.ObjectKey{Namespace: t.Namespace, Name: src.ClaimName}
		if err := r.Get(ctx, key, &corev1.PersistentVolumeClaim{}); apierrors.IsNotFound(err) {
			return block(myaasv1.ReasonSourceClaimNotFound, fmt.Sprintf("PersistentVolumeClaim %q named in spec.source.persistentVolumeClaim.claimName does not exist in namespace %s", src.ClaimName, t.Namespace))
		} else if err != nil {
			return false, fmt.Errorf("get source PVC %s: %w", src.ClaimName, err)
		}
	}
	return false, nil
}

// deleteFailedAttempt removes the Job and half-loaded PVC of the last failed import, kept until now
// so that its logs could be read. They hold no revision, so nothing good is lost.
func (r *DatabaseTemplateReconciler) deleteFailedAttempt(ctx context.Context, t *myaasv1.DatabaseTemplate) error {
	f := t.Status.LastFailure
	if f == nil {
		return nil
	}
	for _, rev := range t.Status.Revisions {
		if rev.Revision == f.Revision {
			return nil // the snapshot of a revision failed to delete later; GC owns it
		}
	}
	ns := t.Namespace
	if err := r.deleteIfExists(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: builder.ImportJobName(t.Name, f.Revision)}}); err != nil {
		return err
	}
	if err := r.deleteIfExists(ctx, &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: builder.SnapshotName(t.Name, f.Revision)}}); err != nil {
		return err
	}
	return r.deleteIfExists(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: builder.TemplatePVCName(t.Name, f.Revision)}})
}

// reconcileImportJob creates the revision's PVC and import Job and follows the Job to its end.
func (r *DatabaseTemplateReconciler) reconcileImportJob(ctx context.Context, t *myaasv1.DatabaseTemplate) (ctrl.Result, error) {
	ci := t.Status.CurrentImport
	if err := r.createIfMissing(ctx, builder.TemplatePVC(t, ci.Revision)); err != nil {
		return ctrl.Result{}, err
	}
	want, err := builder.ImportJob(t, ci.Revision, r.AgentImage)
	if err != nil {
		r.failImport(t, myaasv1.ReasonImportJobFailed, err.Error())
		return ctrl.Result{}, nil
	}
	if err := r.createIfMissing(ctx, want); err != nil {
		return ctrl.Result{}, err
	}
	job := &batchv1.Job{}
	if err := r.Get(ctx, client.ObjectKeyFromObject(want), job); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err) // just created: the cache catches up
	}
	pod, err := r.importPod(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}

	switch {
	case jobHasCondition(job, batchv1.JobComplete):
		report := parseImportReport(terminationMessage(pod, "import"))
		ci.DumpBytes = report.BytesRead
		ci.AgentSHA256 = report.AgentSHA256
		if report.DatadirBytes > 0 {
			ci.DataSize = resource.NewQuantity(report.DatadirBytes, resource.BinarySI)
		}
		ci.Progress = nil
		ci.Phase = myaasv1.ImportPhaseSnapshotting
		r.Recorder.Eventf(t, corev1.EventTypeNormal, EventImportSucceeded, "Import of revision %d loaded %d bytes; taking the snapshot", ci.Revision, report.BytesRead)
		return ctrl.Result{RequeueAfter: requeueSoon}, nil
	case jobHasCondition(job, batchv1.JobFailed):
		r.failImport(t, myaasv1.ReasonImportJobFailed, importFailureMessage(job, pod))
		return ctrl.Result{}, nil
	}

	if pod != nil && pod.Status.Phase == corev1.PodRunning {
		ci.Phase = myaasv1.ImportPhaseLoading
		r.readProgress(ctx, t, pod)
		return ctrl.Result{RequeueAfter: importPollInterval}, nil
	}
	return ctrl.Result{}, nil
}

// importPod is the newest pod of the import Job, or nil.
func (r *DatabaseTemplateReconciler) importPod(ctx context.Context, job *batchv1.Job) (*corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(job.Namespace), client.MatchingLabels{"batch.kubernetes.io/job-name": job.Name}); err != nil {
		return nil, fmt.Errorf("list pods of job %s: %w", job.Name, err)
	}
	var newest *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp) {
			newest = p
		}
	}
	return newest, nil
}

// failImport records a failed import. The previous revision keeps serving; the failed Job and PVC
// stay for inspection until the next import starts.
func (r *DatabaseTemplateReconciler) failImport(t *myaasv1.DatabaseTemplate, reason, msg string) {
	ci := t.Status.CurrentImport
	t.Status.LastFailure = &myaasv1.FailedImport{
		Revision: ci.Revision,
		SpecHash: ci.SpecHash,
		Trigger:  ci.Trigger,
		Message:  msg,
		FailedAt: metav1.NewTime(r.Clock.Now()),
	}
	t.Status.CurrentImport = nil
	setCondition(&t.Status.Conditions, t.Generation, myaasv1.ConditionImportFailed, metav1.ConditionTrue, reason,
		fmt.Sprintf("revision %d: %s", ci.Revision, msg))
	r.Recorder.Eventf(t, corev1.EventTypeWarning, EventImportFailed, "Import of revision %d failed: %s", ci.Revision, msg)
}

func jobHasCondition(job *batchv1.Job, condType batchv1.JobConditionType) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == condType && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// terminationMessage is what the container wrote to its termination log (or its last log lines).
func terminationMessage(pod *corev1.Pod, container string) string {
	if pod == nil {
		return ""
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Terminated != nil {
			return cs.State.Terminated.Message
		}
	}
	return ""
}

// importFailureMessage prefers the agent's own words (file, line, statement) over the Job's.
func importFailureMessage(job *batchv1.Job, pod *corev1.Pod) string {
	if msg := terminationMessage(pod, "import"); msg != "" {
		return msg
	}
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return fmt.Sprintf("import Job %s failed: %s: %s", job.Name, c.Reason, c.Message)
		}
	}
	return fmt.Sprintf("import Job %s failed", job.Name)
}

func parseImportReport(msg string) agentapi.Report {
	var rep agentapi.Report
	_ = json.Unmarshal([]byte(msg), &rep) // the report only adds figures to the status
	return rep
}

// createIfMissing creates obj unless an object of that name exists already, which is how a
// restarted manager picks up the children it created before.
func (r *DatabaseTemplateReconciler) createIfMissing(ctx context.Context, obj client.Object) error {
	if err := r.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

func (r *DatabaseTemplateReconciler) deleteIfExists(ctx context.Context, obj client.Object) error {
	if err := r.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); ignoreNotFound(err) != nil {
		return fmt.Errorf("delete %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}
