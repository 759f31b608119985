package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// An instance may clone a template of another namespace that shares itself with the instance's
// namespace (the template's spec.sharing). Its clone is made from a copy of the revision in its own
// namespace (builder.SharedSnapshot); the template controller deletes the copy once no instance
// there uses the revision.

// checkGrant says why an instance may not clone a template of another namespace, or "" when it
// may. getErr is the result of reading the template. An instance already cloned keeps running
// whatever the template says now: revoking a grant refuses new instances only. A missing template
// and one not shared get the same answer, so that nothing tells the instance's namespace which
// templates exist elsewhere.
func (r *DatabaseInstanceReconciler) checkGrant(ctx context.Context, inst *myaasv1.DatabaseInstance, t *myaasv1.DatabaseTemplate, getErr error) (string, error) {
	if inst.Status.Revision != 0 {
		return "", nil
	}
	refused := fmt.Sprintf("DatabaseTemplate %s/%s does not exist or is not shared with namespace %s: "+
		"its owners must list %s in its spec.sharing.namespaces or select it with spec.sharing.namespaceSelector",
		inst.TemplateNamespace(), inst.Spec.TemplateRef.Name, inst.Namespace, inst.Namespace)
	if apierrors.IsNotFound(getErr) {
		return refused, nil
	}
	if getErr != nil {
		return "", fmt.Errorf("get template %s: %w", inst.TemplateKey(), getErr)
	}
	ok, err := r.sharesWith(ctx, inst, t)
	if err != nil || !ok {
		return refused, err
	}
	// The cache may not have seen a grant revoked a moment ago, and the grant is what lets
	// another namespace read the data: it is confirmed with the API server before the first clone.
	live := &myaasv1.DatabaseTemplate{}
	if err := r.reader().Get(ctx, inst.TemplateKey(), live); apierrors.IsNotFound(err) {
		return refused, nil
	} else if err != nil {
		return "", fmt.Errorf("get template %s: %w", inst.TemplateKey(), err)
	}
	if ok, err := r.sharesWith(ctx, inst, live); err != nil || !ok {
		return refused, err
	}
	return "", nil
}

// sharesWith: t's spec.sharing lets inst's namespace use it.
func (r *DatabaseInstanceReconciler) sharesWith(ctx context.Context, inst *myaasv1.DatabaseInstance, t *myaasv1.DatabaseTemplate) (bool, error) {
	var nsLabels map[string]string
	if t.NeedsNamespaceLabels(inst.Namespace) {
		ns := &corev1.Namespace{}
		if err := r.reader().Get(ctx, client.ObjectKey{Name: inst.Namespace}, ns); err != nil {
			return false, fmt.Errorf("get namespace %s for the sharing of %s: %w", inst.Namespace, inst.TemplateKey(), err)
		}
		nsLabels = ns.Labels
	}
	return t.SharesWith(inst.Namespace, nsLabels)
}

func (r *DatabaseInstanceReconciler) reader() client.Reader { return liveOr(r.APIReader, r.Client) }

// reconcileSharedSnapshot makes the copy of the revision in the instance's namespace, when the
// template is another namespace's, and waits for it to be ready: a clone requested earlier would
// only be retried by the provisioner, later and with a back-off.
func (r *DatabaseInstanceReconciler) reconcileSharedSnapshot(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst, src := s.inst, s.src
	if !inst.CrossNamespace() {
		return nil, nil
	}
	t := src.template
	copyOf := builder.SharedRevision{TemplateNamespace: t.Namespace, Template: t.Name, Revision: src.revision.Revision, Namespace: inst.Namespace}
	key := client.ObjectKey{Namespace: copyOf.Namespace, Name: builder.SharedSnapshotName(copyOf.TemplateNamespace, copyOf.Template, copyOf.Revision)}
	snap, made, own, err := ensureChild(ctx, r.Client, r.reader(), key, &snapshotv1.VolumeSnapshot{}, labelled(builder.SharedSnapshotLabels(copyOf)),
		func() (*snapshotv1.VolumeSnapshot, error) {
			if err := r.ensureSharedContent(ctx, src, copyOf); err != nil {
				return nil, err
			}
			return builder.SharedSnapshot(copyOf), nil
		})
	switch {
	case errors.Is(err, errContentReplaced):
		return r.waitForSharedSnapshot(inst, key.Name, "being made")
	case err != nil:
		return nil, fmt.Errorf("copy revision %d into this namespace: %w", copyOf.Revision, err)
	case made || own == pending:
		return r.waitForSharedSnapshot(inst, key.Name, "being made")
	case own == foreign:
		return r.waitForSharedSnapshot(inst, key.Name, "not the operator's copy (it lacks the operator's labels) and is never used: delete or rename it")
	}
	if !snap.DeletionTimestamp.IsZero() {
		// The last instance here that used it went away a moment ago: a new copy follows.
		return r.waitForSharedSnapshot(inst, snap.Name, "being deleted; a new one follows")
	}
	if st := snap.Status; st == nil || st.ReadyToUse == nil || !*st.ReadyToUse {
		return r.waitForSharedSnapshot(inst, snap.Name, "not ready yet")
	}
	src.cloneSnapshot = snap.Name
	inst.Status.SnapshotName = snap.Name
	return nil, nil
}

// errContentReplaced: the content of an earlier copy is being deleted; the copy is made once it is gone.
var errContentReplaced = errors.New("the content of an earlier copy is being deleted")

// ensureSharedContent creates the content the copy's VolumeSnapshot binds to. A content left by
// an earlier copy whose VolumeSnapshot is gone stays bound to that one (by UID): it is deleted
// (its Retain policy keeps the data) and made again (errContentReplaced meanwhile).
func (r *DatabaseInstanceReconciler) ensureSharedContent(ctx context.Context, src *revisionSource, copyOf builder.SharedRevision) error {
	key := client.ObjectKey{Name: builder.SharedContentName(copyOf.Namespace, copyOf.TemplateNamespace, copyOf.Template, copyOf.Revision)}
	have, made, own, err := ensureChild(ctx, r.Client, r.reader(), key, &snapshotv1.VolumeSnapshotContent{}, labelled(builder.SharedSnapshotLabels(copyOf)),
		func() (*snapshotv1.VolumeSnapshotContent, error) {
			if err := r.fillSharedSource(ctx, src, &copyOf); err != nil {
				return nil, err
			}
			return builder.SharedSnapshotContent(copyOf), nil
		})
	switch {
	case err != nil || made || own == pending:
		return err
	case own == foreign:
		// Binding the copy to it would hand this namespace somebody else's data.
		return fmt.Errorf("VolumeSnapshotContent %s exists without the operator's labels: it is never used; delete it", key.Name)
	case have.Spec.VolumeSnapshotRef.UID != "" || !have.DeletionTimestamp.IsZero():
		if have.DeletionTimestamp.IsZero() {
			if err := r.Delete(ctx, have); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete stale VolumeSnapshotContent %s: %w", key.Name, err)
			}
		}
		return errContentReplaced
	}
	return nil
}

// fillSharedSource reads the snapshot handle, driver and class of the revision's own snapshot
// content. That content is the snapshot controller's, not labelled by the operator: it is read
// from the API server.
func (r *DatabaseInstanceReconciler) fillSharedSource(ctx context.Context, src *revisionSource, copyOf *builder.SharedRevision) error {
	t := src.template
	snap := &snapshotv1.VolumeSnapshot{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: src.revision.SnapshotName}, snap); err != nil {
		return fmt.Errorf("get VolumeSnapshot %s/%s of revision %d: %w", t.Namespace, src.revision.SnapshotName, src.revision.Revision, err)
	}
	if snap.Status == nil || snap.Status.BoundVolumeSnapshotContentName == nil {
		return fmt.Errorf("VolumeSnapshot %s/%s of revision %d is bound to no content", t.Namespace, snap.Name, src.revision.Revision)
	}
	content := &snapshotv1.VolumeSnapshotContent{}
	if err := r.reader().Get(ctx, client.ObjectKey{Name: *snap.Status.BoundVolumeSnapshotContentName}, content); err != nil {
		return fmt.Errorf("get VolumeSnapshotContent of revision %d: %w", src.revision.Revision, err)
	}
	if content.Status == nil || content.Status.SnapshotHandle == nil || *content.Status.SnapshotHandle == "" {
		return fmt.Errorf("VolumeSnapshotContent %s of revision %d has no snapshot handle", content.Name, src.revision.Revision)
	}
	copyOf.Driver = content.Spec.Driver
	copyOf.SnapshotHandle = *content.Status.SnapshotHandle
	copyOf.SnapshotClassName = content.Spec.VolumeSnapshotClassName
	copyOf.SourceVolumeMode = content.Spec.SourceVolumeMode
	return nil
}

func (r *DatabaseInstanceReconciler) waitForSharedSnapshot(inst *myaasv1.DatabaseInstance, name, state string) (*ctrl.Result, error) {
	inst.Status.Phase = myaasv1.InstanceCloning
	setCondition(&inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonWaitingForSharedSnapshot,
		fmt.Sprintf("the copy of revision %d of %s in this namespace (VolumeSnapshot %s) is %s", inst.Status.Revision, inst.TemplateKey(), name, state))
	// The watch on the copy brings us back as soon as it is ready.
	return stop(time.Second), nil
}

// instancesOfSharedCopy maps a copy of a revision to the instances of its namespace that clone
// that template.
func (r *DatabaseInstanceReconciler) instancesOfSharedCopy(ctx context.Context, o client.Object) []reconcile.Request {
	key, ok := templateOfLabels(o)
	if !ok {
		return nil
	}
	list, err := instancesOfTemplate(ctx, r.Client, key.Namespace, key.Name)
	if err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, inst := range list.Items {
		if inst.Namespace == o.GetNamespace() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&inst)})
		}
	}
	return reqs
}
