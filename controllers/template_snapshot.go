package controllers

import (
	"context"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// reconcileSnapshot snapshots the imported volume once the import pod has ended (the server shut
// down cleanly, so the snapshot is consistent) and turns a ready snapshot into the latest revision.
func (r *DatabaseTemplateReconciler) reconcileSnapshot(ctx context.Context, t *myaasv1.DatabaseTemplate) (ctrl.Result, error) {
	ci := t.Status.CurrentImport
	want := builder.TemplateSnapshot(t, ci.Revision)
	if err := r.createIfMissing(ctx, want); err != nil {
		return ctrl.Result{}, err
	}
	snap := &snapshotv1.VolumeSnapshot{}
	if err := r.Get(ctx, client.ObjectKeyFromObject(want), snap); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	st := snap.Status
	if st != nil && st.Error != nil && st.Error.Message != nil && (st.ReadyToUse == nil || !*st.ReadyToUse) {
		r.failImport(t, myaasv1.ReasonSnapshotFailed, fmt.Sprintf("VolumeSnapshot %s: %s", snap.Name, *st.Error.Message))
		return ctrl.Result{}, nil
	}
	if st == nil || st.ReadyToUse == nil || !*st.ReadyToUse {
		return ctrl.Result{}, nil // the snapshot watch brings us back
	}

	now := r.Clock.Now()
	rev := myaasv1.TemplateRevision{
		Revision:       ci.Revision,
		SnapshotName:   snap.Name,
		ImportedAt:     metav1.NewTime(now),
		ImportDuration: &metav1.Duration{Duration: now.Sub(ci.StartedAt.Time).Round(1e9)},
		DumpBytes:      ci.DumpBytes,
		Size:           ci.DataSize,
		RestoreSize:    st.RestoreSize,
		AgentSHA256:    ci.AgentSHA256,
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
	return ctrl.Result{}, nil
}
