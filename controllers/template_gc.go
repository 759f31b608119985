package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// revisionUsers maps a revision to the names of the instances and clone PVCs that still use it.
type revisionUsers map[int32][]string

// revisionNamespaces maps a revision to the namespaces where something still uses it.
type revisionNamespaces map[int32]map[string]bool

// revisionNodes maps a revision to the nodes where something still uses it.
type revisionNodes = revisionNamespaces

func (n revisionNamespaces) add(rev int32, ns string) {
	if n[rev] == nil {
		n[rev] = map[string]bool{}
	}
	n[rev][ns] = true
}

// reconcileUsage counts, per revision, the instances cloned from it, in every namespace. A
// revision is in use while an instance points at it or while a clone PVC of it still exists (an
// instance being deleted leaves its PVC behind for a moment, and on ZFS that clone still pins the
// snapshot).
func (r *DatabaseTemplateReconciler) reconcileUsage(ctx context.Context, s *templatePass) (*ctrl.Result, error) {
	users, usedIn, usedOn, err := r.revisionUsers(ctx, s.t)
	s.users, s.usedIn, s.usedOn = users, usedIn, usedOn
	return nil, err
}

// Besides the users' names, it returns where each revision is in use: in which namespaces, and on
// which nodes ("" for a user whose node is not recorded).
func (r *DatabaseTemplateReconciler) revisionUsers(ctx context.Context, t *myaasv1.DatabaseTemplate) (revisionUsers, revisionNamespaces, revisionNodes, error) {
	instances, err := instancesOfTemplate(ctx, r.Client, t.Namespace, t.Name)
	if err != nil {
		return nil, nil, nil, err
	}
	users := revisionUsers{}
	usedIn := revisionNamespaces{}
	usedOn := revisionNodes{}
	counts := map[int32]int32{}
	instanceNamespaces := revisionNamespaces{}
	for _, inst := range instances.Items {
		rev := pinnedRevision(&inst)
		if rev == 0 {
			// It will clone the latest revision, and may have made its copy already: the copy
			// of that revision in its namespace is in use.
			if t.Status.LatestRevision > 0 {
				usedIn.add(t.Status.LatestRevision, inst.Namespace)
			}
			continue
		}
		counts[rev]++
		users[rev] = append(users[rev], userName(t, inst.Namespace, "DatabaseInstance", inst.Name))
		usedIn.add(rev, inst.Namespace)
		usedOn.add(rev, inst.Status.Node)
		instanceNamespaces.add(rev, inst.Namespace)
	}
	clones, err := r.clonePVCs(ctx, t)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, pvc := range clones {
		n, err := strconv.Atoi(pvc.Labels[myaasv1.LabelRevision])
		if err != nil {
			continue
		}
		users[int32(n)] = append(users[int32(n)], userName(t, pvc.Namespace, "PersistentVolumeClaim", pvc.Name))
		usedIn.add(int32(n), pvc.Namespace)
		usedOn.add(int32(n), pvc.Annotations[myaasv1.AnnotationNode])
	}
	var usage []string
	for i := range t.Status.Revisions {
		rev := &t.Status.Revisions[i]
		rev.Instances = counts[rev.Revision]
		rev.Namespaces = int32(len(instanceNamespaces[rev.Revision]))
		if rev.Instances > 0 {
			usage = append(usage, fmt.Sprintf("r%d: %d in %d ns", rev.Revision, rev.Instances, rev.Namespaces))
		}
	}
	slices.Reverse(usage) // newest first, as users read them
	t.Status.Usage = strings.Join(usage, ", ")
	return users, usedIn, usedOn, nil
}

// userName names a user of a revision in the messages of its template, with its namespace when
// it is not the template's own.
func userName(t *myaasv1.DatabaseTemplate, ns, kind, name string) string {
	if ns == t.Namespace {
		return kind + "/" + name
	}
	return kind + "/" + ns + "/" + name
}

// clonePVCs lists the instances' clone PVCs of the template's revisions, in every namespace: in
// its own, those labelled with its name and no other template namespace; elsewhere, those
// labelled with its name and namespace.
func (r *DatabaseTemplateReconciler) clonePVCs(ctx context.Context, t *myaasv1.DatabaseTemplate) ([]corev1.PersistentVolumeClaim, error) {
	local := &corev1.PersistentVolumeClaimList{}
	if err := r.List(ctx, local, client.InNamespace(t.Namespace), client.MatchingLabels{
		myaasv1.LabelTemplate: t.Name, myaasv1.LabelRole: myaasv1.RoleInstanceData,
	}); err != nil {
		return nil, fmt.Errorf("list clone PVCs of template: %w", err)
	}
	remote := &corev1.PersistentVolumeClaimList{}
	if err := r.List(ctx, remote, client.MatchingLabels{
		myaasv1.LabelTemplate: t.Name, myaasv1.LabelTemplateNamespace: t.Namespace, myaasv1.LabelRole: myaasv1.RoleInstanceData,
	}); err != nil {
		return nil, fmt.Errorf("list clone PVCs of template in other namespaces: %w", err)
	}
	out := slices.DeleteFunc(local.Items, func(p corev1.PersistentVolumeClaim) bool {
		ns := p.Labels[myaasv1.LabelTemplateNamespace]
		return ns != "" && ns != t.Namespace // a clone of a template of the same name elsewhere
	})
	for _, p := range remote.Items {
		if p.Namespace != t.Namespace {
			out = append(out, p)
		}
	}
	return out, nil
}

// reconcileGC deletes revisions beyond spec.retainRevisions that nothing uses, oldest first, in the
// order snapshot → import Job → PVC, waiting for each to be gone before the next.
// The newest ready revision is never deleted, whatever retainRevisions says: it is the last good
// data, and failed refreshes add no revision, so any number of them leave it in place.
func (r *DatabaseTemplateReconciler) reconcileGC(ctx context.Context, s *templatePass) (*ctrl.Result, error) {
	t, users := s.t, s.users
	retain := int(max(t.Spec.RetainRevisions, 1))
	revs := t.Status.Revisions
	sortedRevisions(revs)
	if len(revs) <= retain {
		return nil, nil
	}
	kept := revs[:0]
	for i, rev := range revs {
		expired := i < len(revs)-retain && rev.Revision != t.Status.LatestRevision
		if !expired || len(users[rev.Revision]) > 0 {
			if expired {
				// Still used on some nodes: its copies on the others can go.
				if err := r.pruneUnusedCopies(ctx, s, &rev); err != nil {
					return nil, err
				}
			}
			kept = append(kept, rev)
			continue
		}
		gone, err := r.deleteRevision(ctx, t, rev.Revision)
		if err != nil {
			return nil, err
		}
		if !gone {
			kept = append(kept, rev)
			s.wakeIn(2 * time.Second)
			continue
		}
		log.FromContext(ctx).Info("revision deleted", "revision", rev.Revision)
		r.Recorder.Eventf(t, corev1.EventTypeNormal, EventRevisionDeleted, "Revision %d deleted: older than the %d retained and used by no instance", rev.Revision, retain)
	}
	t.Status.Revisions = kept
	return nil, nil
}

// deleteRevision takes one step towards deleting revision n and says whether it is entirely gone:
// its copies in other namespaces (their VolumeSnapshots, then their contents), then its snapshot,
// its import Jobs and its volume.
func (r *DatabaseTemplateReconciler) deleteRevision(ctx context.Context, t *myaasv1.DatabaseTemplate, n int32) (bool, error) {
	ns := t.Namespace
	if gone, err := r.deleteSharedCopies(ctx, t, n); err != nil || !gone {
		return false, err
	}
	jobs, err := r.importJobs(ctx, t, n)
	if err != nil {
		return false, err
	}
	// Every node's copy goes in the same order: snapshots, then Jobs, then volumes.
	var replicaSnapshots, replicaVolumes []client.Object
	if rev := revisionNumbered(t, n); rev != nil {
		replicaSnapshots, replicaVolumes = replicaObjects(t, rev)
	}
	steps := append([]client.Object{&snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: builder.SnapshotName(t.Name, n)}}}, replicaSnapshots...)
	for i := range jobs {
		steps = append(steps, &jobs[i])
	}
	steps = append(steps, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: builder.TemplatePVCName(t.Name, n)}})
	steps = append(steps, replicaVolumes...)
	for _, obj := range steps {
		err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("get %T %s: %w", obj, obj.GetName(), err)
		}
		if ownershipOf(obj, t, templateKind) != owned {
			continue // a deleted template's, of the same name: not ours to delete
		}
		if obj.GetDeletionTimestamp().IsZero() {
			if err := r.deleteIfExists(ctx, obj); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	return true, nil
}

// reconcileDelete runs when the template is deleted: it waits until no instance uses any revision,
// then deletes the snapshots before letting owner references remove the volumes.
func (r *DatabaseTemplateReconciler) reconcileDelete(ctx context.Context, t *myaasv1.DatabaseTemplate) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(t, templateFinalizer) {
		return ctrl.Result{}, nil
	}
	before := t.DeepCopy()
	if err := r.deletePoolMembers(ctx, t); err != nil {
		return ctrl.Result{}, err
	}
	users, _, _, err := r.revisionUsers(ctx, t)
	if err != nil {
		return ctrl.Result{}, err
	}
	var names []string
	for _, u := range users {
		names = append(names, u...)
	}
	if len(names) > 0 {
		sort.Strings(names)
		setConditionAndNotify(r.Recorder, t, &t.Status.Conditions, t.Generation, notice{
			condType: myaasv1.ConditionReady, status: metav1.ConditionFalse, reason: myaasv1.ReasonWaitingForInstances,
			message:   fmt.Sprintf("deletion waits for %d users of its revisions: %s", len(names), strings.Join(names, ", ")),
			eventType: corev1.EventTypeNormal, event: EventWaitingForInstances,
		})
		return ctrl.Result{}, patchStatus(ctx, r.Client, before, t, before.Status, t.Status)
	}
	pending := false
	for _, rev := range t.Status.Revisions {
		gone, err := r.deleteRevision(ctx, t, rev.Revision)
		if err != nil {
			return ctrl.Result{}, err
		}
		pending = pending || !gone
	}
	if cur := t.Status.CurrentImport; cur != nil {
		gone, err := r.deleteRevision(ctx, t, cur.Revision)
		if err != nil {
			return ctrl.Result{}, err
		}
		pending = pending || !gone
	}
	if pending {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	controllerutil.RemoveFinalizer(t, templateFinalizer)
	if err := r.Update(ctx, t); err != nil {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}
