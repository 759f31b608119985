package controllers

import (
	"context"
	"fmt"
	"strconv"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// sharedCopyGrace keeps a copy made a moment ago that nothing seems to use: the instance that made
// it may not be in this controller's cache yet.
const sharedCopyGrace = 5 * time.Second

// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotcontents,verbs=get;list;watch;create;delete

// reconcileSharedCopies deletes the copies of the template's revisions (see
// builder.SharedSnapshotContent) made for a namespace where no instance and no clone uses that
// revision any more: the last instance there is gone, or the namespace itself. The copy's
// VolumeSnapshot goes first, then its content, whose Retain policy leaves the data to the
// revision's own snapshot.
func (r *DatabaseTemplateReconciler) reconcileSharedCopies(ctx context.Context, s *templatePass) (*ctrl.Result, error) {
	t := s.t
	snaps, contents, err := r.sharedCopies(ctx, t, 0)
	if err != nil {
		return nil, err
	}
	now := r.Clock.Now()
	unused := func(o client.Object, ns string) bool {
		n, err := strconv.Atoi(o.GetLabels()[myaasv1.LabelRevision])
		if err != nil || s.usedIn[int32(n)][ns] {
			return false
		}
		if left := o.GetCreationTimestamp().Add(sharedCopyGrace).Sub(now); left > 0 {
			s.wakeIn(left)
			return false
		}
		return true
	}
	remaining := map[string]bool{} // the copies' VolumeSnapshots still there, as namespace/name
	for i := range snaps {
		vs := &snaps[i]
		remaining[vs.Namespace+"/"+vs.Name] = true
		if !unused(vs, vs.Namespace) {
			continue
		}
		if vs.DeletionTimestamp.IsZero() {
			log.FromContext(ctx).Info("deleting unused copy of a revision", "namespace", vs.Namespace, "snapshot", vs.Name)
			if err := r.deleteIfExists(ctx, vs); err != nil {
				return nil, err
			}
		}
		s.wakeIn(2 * time.Second)
	}
	for i := range contents {
		c := &contents[i]
		ref := c.Spec.VolumeSnapshotRef
		if !unused(c, c.Labels[myaasv1.LabelSharedWith]) || remaining[ref.Namespace+"/"+ref.Name] || !c.DeletionTimestamp.IsZero() {
			continue
		}
		log.FromContext(ctx).Info("deleting unused copy of a revision", "content", c.Name)
		if err := r.deleteIfExists(ctx, c); err != nil {
			return nil, err
		}
		s.wakeIn(2 * time.Second)
	}
	return nil, nil
}

// deleteSharedCopies takes one step towards deleting every copy of revision n, in every
// namespace, and says whether they are all gone: the VolumeSnapshots first, then their contents.
func (r *DatabaseTemplateReconciler) deleteSharedCopies(ctx context.Context, t *myaasv1.DatabaseTemplate, n int32) (bool, error) {
	snaps, contents, err := r.sharedCopies(ctx, t, n)
	if err != nil {
		return false, err
	}
	for i := range snaps {
		if snaps[i].DeletionTimestamp.IsZero() {
			if err := r.deleteIfExists(ctx, &snaps[i]); err != nil {
				return false, err
			}
		}
	}
	if len(snaps) > 0 {
		return false, nil
	}
	for i := range contents {
		if contents[i].DeletionTimestamp.IsZero() {
			if err := r.deleteIfExists(ctx, &contents[i]); err != nil {
				return false, err
			}
		}
	}
	return len(contents) == 0, nil
}

// sharedCopies lists the copies of the template's revisions (of revision n only, unless 0) in
// every namespace, by their labels.
func (r *DatabaseTemplateReconciler) sharedCopies(ctx context.Context, t *myaasv1.DatabaseTemplate, n int32) ([]snapshotv1.VolumeSnapshot, []snapshotv1.VolumeSnapshotContent, error) {
	sel := client.MatchingLabels{
		myaasv1.LabelTemplate: t.Name, myaasv1.LabelTemplateNamespace: t.Namespace, myaasv1.LabelRole: myaasv1.RoleSharedSnapshot,
	}
	if n > 0 {
		sel[myaasv1.LabelRevision] = strconv.Itoa(int(n))
	}
	snaps := &snapshotv1.VolumeSnapshotList{}
	if err := r.List(ctx, snaps, sel); err != nil {
		return nil, nil, fmt.Errorf("list copies of the revisions of %s/%s: %w", t.Namespace, t.Name, err)
	}
	contents := &snapshotv1.VolumeSnapshotContentList{}
	if err := r.List(ctx, contents, sel); err != nil {
		return nil, nil, fmt.Errorf("list copied snapshot contents of %s/%s: %w", t.Namespace, t.Name, err)
	}
	return snaps.Items, contents.Items, nil
}

// isSharedCopy selects the copies of revisions among snapshots and their contents.
func isSharedCopy(o client.Object) bool {
	return o.GetLabels()[myaasv1.LabelRole] == myaasv1.RoleSharedSnapshot
}
