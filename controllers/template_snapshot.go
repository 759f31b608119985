package controllers

import (
	"context"
	"fmt"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// defaultSnapshotTimeout applies to templates stored before spec.import.snapshotTimeout existed.
const defaultSnapshotTimeout = 10 * time.Minute

// snapshotErrorPoll is how often a snapshot that reported an error is looked at again: the
// snapshot controller retries it on its own, and may clear the error.
const snapshotErrorPoll = 5 * time.Second

// reconcileSnapshot snapshots the imported volume once the import pod has ended (the server shut
// down cleanly, so the snapshot is consistent) and turns a ready snapshot into the latest revision.
// Errors the snapshot reports are taken for transient until the snapshot timeout: a snapshot still
// not ready then fails the revision, so that it never blocks the next refresh.
func (r *DatabaseTemplateReconciler) reconcileSnapshot(ctx context.Context, s *templatePass) error {
	t := s.t
	ci := t.Status.CurrentImport
	now := r.Clock.Now()
	ci.HoldReason, ci.HoldMessage = "", ""
	if ci.SnapshotStartedAt == nil {
		started := metav1.NewTime(now)
		ci.SnapshotStartedAt = &started
	}
	want := builder.TemplateSnapshot(t, ci.Revision)
	if current, err := r.aboutToCreate(ctx, t, want); err != nil || !current {
		s.wakeIn(requeueSoon)
		return err
	}
	snap, _, ok, err := ensureTemplateChild(ctx, r, s, want, &snapshotv1.VolumeSnapshot{})
	if err != nil || !ok {
		return err
	}
	st := snap.Status
	if st != nil && st.ReadyToUse != nil && *st.ReadyToUse {
		r.addRevision(ctx, t, snap)
		return nil
	}

	timeout := defaultSnapshotTimeout
	if d := t.Spec.Import.SnapshotTimeout; d != nil && d.Duration > 0 {
		timeout = d.Duration
	}
	left := ci.SnapshotStartedAt.Add(timeout).Sub(now)
	lastError := ""
	if st != nil && st.Error != nil && st.Error.Message != nil {
		lastError = *st.Error.Message
	}
	if left <= 0 {
		msg := fmt.Sprintf("VolumeSnapshot %s was not ready after %s (spec.import.snapshotTimeout)", builder.SnapshotName(t.Name, ci.Revision), timeout)
		if lastError != "" {
			msg += "; its last error: " + lastError
		}
		return r.failImport(ctx, t, myaasv1.ReasonSnapshotTimeout, msg)
	}
	if lastError != "" {
		ci.HoldReason = myaasv1.ReasonSnapshotting
		ci.HoldMessage = fmt.Sprintf("the snapshot reported an error, retried until %s: %s", ci.SnapshotStartedAt.Add(timeout).UTC().Format(time.RFC3339), lastError)
		s.wakeIn(min(left, snapshotErrorPoll))
		return nil
	}
	s.wakeIn(left) // the snapshot watch brings us back sooner when it becomes ready
	return nil
}

// addRevision makes a ready snapshot the latest revision, recording the server it was imported
// with: instances run that, whatever the template's spec says later.
func (r *DatabaseTemplateReconciler) addRevision(ctx context.Context, t *myaasv1.DatabaseTemplate, snap *snapshotv1.VolumeSnapshot) {
	ci := t.Status.CurrentImport
	now := r.Clock.Now()
	rev := myaasv1.TemplateRevision{
		Revision:       ci.Revision,
		SnapshotName:   snap.Name,
		ImportedAt:     metav1.NewTime(now),
		ImportDuration: &metav1.Duration{Duration: now.Sub(ci.StartedAt.Time).Round(time.Second)},
		DumpBytes:      ci.DumpBytes,
		Size:           ci.DataSize,
		RestoreSize:    snap.Status.RestoreSize,
		AgentSHA256:    ci.AgentSHA256,
		Server:         ci.Server,
	}
	t.Status.Revisions = append(t.Status.Revisions, rev)
	t.Status.LatestRevision = ci.Revision
	t.Status.LatestSpecHash = ci.SpecHash
	t.Status.LastImportTime = &rev.ImportedAt
	t.Status.LastFailure = nil
	t.Status.CurrentImport = nil
	setCondition(&t.Status.Conditions, t.Generation, myaasv1.ConditionImportFailed, metav1.ConditionFalse, myaasv1.ReasonImportSucceeded,
		fmt.Sprintf("revision %d imported", rev.Revision))
	log.FromContext(ctx).Info("revision ready", "revision", rev.Revision, "snapshot", snap.Name, "duration", rev.ImportDuration.Duration)
	r.Recorder.Eventf(t, corev1.EventTypeNormal, EventRevisionReady, "Revision %d is ready (snapshot %s, import took %s)",
		rev.Revision, snap.Name, rev.ImportDuration.Duration)
}
