package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

const (
	// importPollInterval is how often a running import's progress is read.
	importPollInterval = 5 * time.Second
	// templateKind names the owner in the controller references of a template's children.
	templateKind = "DatabaseTemplate"
)

// reconcileImport starts an import when one is due and moves the running one along:
// Provisioning/Loading (PVC and Job) → Snapshotting (VolumeSnapshot) → a new revision.
func (r *DatabaseTemplateReconciler) reconcileImport(ctx context.Context, s *templatePass) (*ctrl.Result, error) {
	t := s.t
	ci := t.Status.CurrentImport
	switch {
	case ci == nil:
		return nil, r.startImportIfDue(ctx, s)
	case ci.SpecHash != ImportSpecHash(t.Spec) && ci.Phase != myaasv1.ImportPhaseSnapshotting:
		return nil, r.supersedeImport(ctx, s)
	case ci.Phase == myaasv1.ImportPhaseSnapshotting:
		return nil, r.reconcileSnapshot(ctx, s)
	}
	return nil, r.reconcileImportJob(ctx, s)
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
	if newest := newestRefreshRequest(jobs.Items, t.CreationTimestamp); newest != nil && newest.Name != st.HandledRefreshJob {
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

// newestRefreshRequest is the newest refresh Job made for this template. Jobs older than the
// template were made for a deleted template of the same name: they request nothing of this one.
func newestRefreshRequest(jobs []batchv1.Job, templateCreated metav1.Time) *batchv1.Job {
	var newest *batchv1.Job
	for i := range jobs {
		j := &jobs[i]
		if j.CreationTimestamp.Before(&templateCreated) {
			continue
		}
		if newest == nil || newest.CreationTimestamp.Before(&j.CreationTimestamp) ||
			(newest.CreationTimestamp.Equal(&j.CreationTimestamp) && newest.Name < j.Name) {
			newest = j
		}
	}
	return newest
}

// startImportIfDue allocates the next revision number and records it in status before any child
// exists: the names of the children derive from that number, so a manager restarted at any point
// finds the same PVC, Job and snapshot again instead of creating duplicates.
func (r *DatabaseTemplateReconciler) startImportIfDue(ctx context.Context, s *templatePass) error {
	t := s.t
	trigger, refreshJob, err := r.importTrigger(ctx, t)
	if err != nil || trigger == "" {
		r.forgetRevertedFailure(t)
		return err
	}
	if blocked, err := r.importBlocked(ctx, t); err != nil || blocked {
		s.wakeIn(30 * time.Second)
		return err
	}
	if err := r.deleteFailedAttempt(ctx, t); err != nil {
		return err
	}
	_, image, _ := builder.EngineImage(t.Spec.Engine) // importBlocked checked the engine

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
		Attempt:   1,
		Server:    &myaasv1.RevisionServer{Image: image, Config: maps.Clone(t.Spec.Engine.Config), AgentImage: r.AgentImage},
	}
	log.FromContext(ctx).Info("starting import", "revision", n, "trigger", trigger)
	r.Recorder.Eventf(t, corev1.EventTypeNormal, EventImportStarted, "Importing revision %d (%s)", n, trigger)
	s.wakeIn(requeueSoon)
	return nil
}

// forgetRevertedFailure clears a failure whose spec is no longer asked for: a template edited back
// to the spec of its latest revision (a bad image tag reverted, say) is healthy again.
func (r *DatabaseTemplateReconciler) forgetRevertedFailure(t *myaasv1.DatabaseTemplate) {
	f := t.Status.LastFailure
	if f == nil || t.Status.LatestRevision == 0 || f.SpecHash == ImportSpecHash(t.Spec) || t.Status.LatestSpecHash != ImportSpecHash(t.Spec) {
		return
	}
	setCondition(&t.Status.Conditions, t.Generation, myaasv1.ConditionImportFailed, metav1.ConditionFalse, myaasv1.ReasonSpecReverted,
		fmt.Sprintf("the spec is back to that of revision %d; the failed import of revision %d no longer applies", t.Status.LatestRevision, f.Revision))
}

// supersedeImport abandons an import whose spec was edited while it loaded: it would produce a
// revision nobody asked for. The next pass starts one with the spec as it is now, if one is due.
func (r *DatabaseTemplateReconciler) supersedeImport(ctx context.Context, s *templatePass) error {
	t := s.t
	ci := t.Status.CurrentImport
	if err := r.deleteAttempt(ctx, t, ci.Revision); err != nil {
		return err
	}
	r.Recorder.Eventf(t, corev1.EventTypeNormal, EventImportSuperseded, "Import of revision %d abandoned: the spec changed while it ran", ci.Revision)
	t.Status.CurrentImport = nil
	s.wakeIn(requeueSoon)
	return nil
}

// importBlocked checks the references that can only be wrong at run time, so that a typo gives a
// condition naming the field instead of a PVC or snapshot stuck forever.
func (r *DatabaseTemplateReconciler) importBlocked(ctx context.Context, t *myaasv1.DatabaseTemplate) (bool, error) {
	block := func(reason, msg string) (bool, error) {
		setConditionAndNotify(r.Recorder, t, &t.Status.Conditions, t.Generation, notice{
			condType: myaasv1.ConditionImporting, status: metav1.ConditionFalse, reason: reason, message: msg,
			eventType: corev1.EventTypeWarning, event: EventImportBlocked,
		})
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
		// The user's claim carries none of the operator's labels: the cache never holds it.
		if err := r.uncached().Get(ctx, key, &corev1.PersistentVolumeClaim{}); apierrors.IsNotFound(err) {
			return block(myaasv1.ReasonSourceClaimNotFound, fmt.Sprintf("PersistentVolumeClaim %q named in spec.source.persistentVolumeClaim.claimName does not exist in namespace %s", src.ClaimName, t.Namespace))
		} else if err != nil {
			return false, fmt.Errorf("get source PVC %s: %w", src.ClaimName, err)
		}
	}
	return false, nil
}

// deleteFailedAttempt removes what is left of the last failed import (its Jobs, kept until now
// so that their logs could be read, and its volume if it was kept). They hold no revision, so
// nothing good is lost.
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
	return r.deleteAttempt(ctx, t, f.Revision)
}

// deleteAttempt deletes everything an import of revision n made.
func (r *DatabaseTemplateReconciler) deleteAttempt(ctx context.Context, t *myaasv1.DatabaseTemplate, n int32) error {
	if err := r.deleteImportJobs(ctx, t, n); err != nil {
		return err
	}
	return r.deleteVolume(ctx, t, n)
}

// deleteVolume deletes revision n's snapshot, if any, and its full-size template volume.
func (r *DatabaseTemplateReconciler) deleteVolume(ctx context.Context, t *myaasv1.DatabaseTemplate, n int32) error {
	ns := t.Namespace
	if err := r.deleteIfExists(ctx, &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: builder.SnapshotName(t.Name, n)}}); err != nil {
		return err
	}
	return r.deleteIfExists(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: builder.TemplatePVCName(t.Name, n)}})
}

// importJobs lists the Jobs of every attempt at revision n that belong to this template.
func (r *DatabaseTemplateReconciler) importJobs(ctx context.Context, t *myaasv1.DatabaseTemplate, n int32) ([]batchv1.Job, error) {
	jobs := &batchv1.JobList{}
	if err := r.List(ctx, jobs, client.InNamespace(t.Namespace), client.MatchingLabels(builder.TemplateLabels(t.Name, n, myaasv1.RoleImport))); err != nil {
		return nil, fmt.Errorf("list import Jobs of revision %d: %w", n, err)
	}
	own := jobs.Items[:0]
	for _, j := range jobs.Items {
		if ownershipOf(&j, t, templateKind) == owned {
			own = append(own, j)
		}
	}
	return own, nil
}

func (r *DatabaseTemplateReconciler) deleteImportJobs(ctx context.Context, t *myaasv1.DatabaseTemplate, n int32) error {
	jobs, err := r.importJobs(ctx, t, n)
	if err != nil {
		return err
	}
	for i := range jobs {
		if err := r.deleteIfExists(ctx, &jobs[i]); err != nil {
			return err
		}
	}
	return nil
}

// reconcileImportJob creates the revision's PVC and the Job of the current attempt, follows it to
// its end, and retries an attempt that something outside the data stopped.
func (r *DatabaseTemplateReconciler) reconcileImportJob(ctx context.Context, s *templatePass) error {
	t := s.t
	ci := t.Status.CurrentImport
	now := r.Clock.Now()
	if ci.RetryAt != nil {
		if wait := ci.RetryAt.Sub(now); wait > 0 {
			s.wakeIn(wait)
			return nil
		}
		ci.RetryAt = nil
	}
	ci.HoldReason, ci.HoldMessage = "", ""
	want, err := builder.ImportJob(t, ci.Revision, ci.Attempt, r.AgentImage)
	if err != nil {
		return r.failImport(ctx, t, myaasv1.ReasonUnknownEngine, err.Error())
	}
	if _, image, _ := builder.EngineImage(t.Spec.Engine); !imageAllowed(image, r.AllowedImages) {
		return r.failImport(ctx, t, myaasv1.ReasonImageNotAllowed, imageRefusal(image, r.AllowedImages))
	}
	if current, err := r.aboutToCreate(ctx, t, want); err != nil || !current {
		s.wakeIn(requeueSoon)
		return err
	}
	volume, volumeMade, ok, err := ensureTemplateChild(ctx, r, s, builder.TemplatePVC(t, ci.Revision), &corev1.PersistentVolumeClaim{})
	if err != nil || !ok {
		return err
	}
	if volumeMade {
		s.wakeIn(requeueSoon) // the API server fills in the default StorageClass: read it back
		return nil
	}
	if pending, err := bindsWithoutPodButNotYet(ctx, r.Client, volume); err != nil || pending {
		if pending {
			ci.HoldReason = myaasv1.ReasonWaitingForVolume
			ci.HoldMessage = fmt.Sprintf("PersistentVolumeClaim %s is being provisioned; the import starts once it is bound", volume.Name)
		}
		return err // the claim is the template's: its binding brings the next pass
	}
	job, made, ok, err := ensureTemplateChild(ctx, r, s, want, &batchv1.Job{})
	if err != nil || !ok {
		return err
	}
	if made {
		s.wakeIn(requeueSoon) // just created: the cache catches up
		return nil
	}
	pod, err := r.importPod(ctx, job)
	if err != nil {
		return err
	}

	switch {
	case jobHasCondition(job, batchv1.JobComplete):
		report := parseImportReport(terminationMessage(pod, builder.ImportContainer))
		ci.DumpBytes = report.BytesRead
		ci.AgentSHA256 = report.AgentSHA256
		if report.DatadirBytes > 0 {
			ci.DataSize = resource.NewQuantity(report.DatadirBytes, resource.BinarySI)
		}
		ci.Progress = nil
		ci.Phase = myaasv1.ImportPhaseSnapshotting
		snapStart := metav1.NewTime(now)
		ci.SnapshotStartedAt = &snapStart
		r.Recorder.Eventf(t, corev1.EventTypeNormal, EventImportSucceeded, "Import of revision %d loaded %d bytes%s; taking the snapshot", ci.Revision, report.BytesRead, droppedAccounts(report.AccountsDropped))
		s.wakeIn(requeueSoon)
		return nil
	case jobHasCondition(job, batchv1.JobFailed):
		return r.attemptEnded(ctx, s, classifyImportFailure(job, pod, t.Spec.Import.Resources))
	}
	if stuck := imagePullFailure(pod); stuck != "" {
		return r.imagePullStuck(ctx, s, job, pod, stuck)
	}
	if pod != nil && pod.Status.Phase == corev1.PodRunning {
		ci.Phase = myaasv1.ImportPhaseLoading
		r.readProgress(ctx, t, pod)
		s.wakeIn(importPollInterval)
	}
	return nil
}

// aboutToCreate says whether the children of the current import may be created now. Unless the
// child exists already, it reads the template from the API server rather than the cache: a cache
// that has not yet seen this import end (failed, superseded) would bring back what was deleted.
func (r *DatabaseTemplateReconciler) aboutToCreate(ctx context.Context, t *myaasv1.DatabaseTemplate, child client.Object) (bool, error) {
	if r.APIReader == nil {
		return true, nil
	}
	existing := child.DeepCopyObject().(client.Object)
	if err := r.Get(ctx, client.ObjectKeyFromObject(child), existing); err == nil {
		return true, nil
	} else if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("get %T %s: %w", child, child.GetName(), err)
	}
	live := &myaasv1.DatabaseTemplate{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(t), live); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	ci, lci := t.Status.CurrentImport, live.Status.CurrentImport
	return lci != nil && lci.Revision == ci.Revision && lci.Attempt == ci.Attempt && lci.Phase == ci.Phase, nil
}

// ensureTemplateChild creates want, a child of the template, unless it exists, and says whether
// the one that exists (read into blank) may be used, and whether this call made it. Children of a
// deleted template of the same name are waited out.
func ensureTemplateChild[P client.Object](ctx context.Context, r *DatabaseTemplateReconciler, s *templatePass, want, blank P) (obj P, made, ok bool, err error) {
	t := s.t
	obj, made, own, err := ensureChild(ctx, r.Client, r.uncached(), client.ObjectKeyFromObject(want), blank, controlledBy(t, templateKind),
		func() (P, error) { return want, nil })
	if err != nil || own == owned {
		return obj, made, err == nil, err
	}
	if own == pending {
		s.wakeIn(requeueSoon)
		return obj, false, false, nil
	}
	msg := fmt.Sprintf("%T %s exists and belongs to %s: waiting for it to be deleted", want, want.GetName(), map[ownership]string{
		stale: "a deleted template of the same name", foreign: "another owner; delete or rename it",
	}[own])
	ci := t.Status.CurrentImport
	if ci.HoldMessage != msg {
		r.Recorder.Event(t, corev1.EventTypeWarning, EventStaleChildren, msg)
	}
	ci.HoldReason, ci.HoldMessage = myaasv1.ReasonStaleChildren, msg
	s.wakeIn(2 * time.Second)
	return obj, false, false, nil
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

// importBackoff is the wait before attempt n (n ≥ 2): 10 s, 20 s, 40 s … at most 5 min.
func importBackoff(n int32) time.Duration {
	return min(10*time.Second<<max(n-2, 0), 5*time.Minute)
}

// attemptEnded retries an attempt that was interrupted, while attempts are left, and fails the
// import otherwise.
func (r *DatabaseTemplateReconciler) attemptEnded(ctx context.Context, s *templatePass, f attemptFailure) error {
	t := s.t
	ci := t.Status.CurrentImport
	maxAttempts := max(t.Spec.Import.MaxAttempts, 1)
	if !f.retryable || ci.Attempt >= maxAttempts {
		msg := f.message
		if f.retryable {
			msg = fmt.Sprintf("%s (attempt %d of %d)", msg, ci.Attempt, maxAttempts)
		}
		return r.failImport(ctx, t, f.reason, msg)
	}
	wait := importBackoff(ci.Attempt + 1)
	retryAt := metav1.NewTime(r.Clock.Now().Add(wait))
	ci.LastAttemptFailure = fmt.Sprintf("attempt %d: %s", ci.Attempt, f.message)
	ci.Attempt++
	ci.RetryAt = &retryAt
	ci.Phase = myaasv1.ImportPhaseProvisioning
	ci.Progress = nil
	ci.HoldReason = myaasv1.ReasonRetrying
	ci.HoldMessage = fmt.Sprintf("%s; attempt %d of %d starts at %s", ci.LastAttemptFailure, ci.Attempt, maxAttempts, retryAt.UTC().Format(time.RFC3339))
	r.Recorder.Eventf(t, corev1.EventTypeWarning, EventImportRetrying, "Import of revision %d: %s; attempt %d of %d starts in %s",
		ci.Revision, ci.LastAttemptFailure, ci.Attempt, maxAttempts, wait)
	s.wakeIn(wait)
	return nil
}

// imagePullGrace is how long an import pod may fail to pull its image before the import fails:
// long enough for a registry hiccup, short enough for a typo to show.
const imagePullGrace = 90 * time.Second

// imagePullStuck names a pull failure in the Importing condition at once, and fails the import
// once it has lasted imagePullGrace. The Job goes with it: its pod would back off forever.
func (r *DatabaseTemplateReconciler) imagePullStuck(ctx context.Context, s *templatePass, job *batchv1.Job, pod *corev1.Pod, stuck string) error {
	t := s.t
	if r.Clock.Since(pod.CreationTimestamp.Time) < imagePullGrace {
		t.Status.CurrentImport.HoldReason, t.Status.CurrentImport.HoldMessage = myaasv1.ReasonImagePullBackOff, stuck
		s.wakeIn(10 * time.Second)
		return nil
	}
	if err := r.deleteIfExists(ctx, job); err != nil {
		return err
	}
	return r.failImport(ctx, t, myaasv1.ReasonImagePullFailed, stuck)
}

// failImport records a failed import and deletes its full-size volume, unless it is to be kept for
// debugging. The import's Jobs go with it: their finished pods would hold the volume (PVC
// protection counts them as users). The previous revision keeps serving.
func (r *DatabaseTemplateReconciler) failImport(ctx context.Context, t *myaasv1.DatabaseTemplate, reason, msg string) error {
	ci := t.Status.CurrentImport
	if !t.Spec.Import.KeepFailedVolume {
		if err := r.deleteAttempt(ctx, t, ci.Revision); err != nil {
			return err
		}
	}
	t.Status.LastFailure = &myaasv1.FailedImport{
		Revision: ci.Revision,
		Reason:   reason,
		SpecHash: ci.SpecHash,
		Trigger:  ci.Trigger,
		Message:  msg,
		FailedAt: metav1.NewTime(r.Clock.Now()),
	}
	t.Status.CurrentImport = nil
	setCondition(&t.Status.Conditions, t.Generation, myaasv1.ConditionImportFailed, metav1.ConditionTrue, reason,
		fmt.Sprintf("revision %d: %s", ci.Revision, msg))
	r.Recorder.Eventf(t, corev1.EventTypeWarning, EventImportFailed, "Import of revision %d failed: %s", ci.Revision, msg)
	return nil
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
	if s := terminated(pod, container); s != nil {
		return s.Message
	}
	return ""
}

func terminated(pod *corev1.Pod, container string) *corev1.ContainerStateTerminated {
	if pod == nil {
		return nil
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container {
			if cs.State.Terminated != nil {
				return cs.State.Terminated
			}
			return cs.LastTerminationState.Terminated
		}
	}
	return nil
}

func parseImportReport(msg string) agentapi.Report {
	var rep agentapi.Report
	_ = json.Unmarshal([]byte(msg), &rep) // the report only adds figures to the status
	return rep
}

func (r *DatabaseTemplateReconciler) deleteIfExists(ctx context.Context, obj client.Object) error {
	if err := r.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

// sortedRevisions orders revisions oldest first.
func sortedRevisions(revs []myaasv1.TemplateRevision) {
	sort.Slice(revs, func(i, j int) bool { return revs[i].Revision < revs[j].Revision })
}

// droppedAccounts tells, in the import's event, how many accounts of the dumps no clone will have.
func droppedAccounts(n int) string {
	if n == 0 {
		return ""
	}
	plural := "s"
	if n == 1 {
		plural = ""
	}
	return fmt.Sprintf(" and dropped %d account%s the dump created (spec.import.keepAccounts keeps some)", n, plural)
}
