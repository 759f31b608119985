package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// poolMemberDeadline is how long a pool member may take to become Ready before it is replaced: a
// clone starts in seconds, so one still not verified after this is broken, and is never handed out.
const poolMemberDeadline = 3 * time.Minute

// refillHoldOff is how long after the last claim the pool waits before it refills.
const refillHoldOff = 2 * time.Second

// claimBurstWait is how long the refill still waits for the last claim's burst to end: 0 when
// no member was claimed within refillHoldOff. The claimed members are read from the cache: a
// claim it does not show yet only makes the refill start a moment early.
func (r *DatabaseTemplateReconciler) claimBurstWait(ctx context.Context, t *myaasv1.DatabaseTemplate) (time.Duration, error) {
	claimed := &myaasv1.DatabaseInstanceList{}
	if err := r.List(ctx, claimed, client.InNamespace(t.Namespace),
		client.MatchingLabels{myaasv1.LabelPool: t.Name, myaasv1.LabelPoolState: myaasv1.PoolClaimed}); err != nil {
		return 0, fmt.Errorf("list the claimed members of %s: %w", t.Name, err)
	}
	var wait time.Duration
	for _, m := range claimed.Items {
		at, err := time.Parse(time.RFC3339Nano, m.Annotations[myaasv1.AnnotationClaimedAt])
		if err != nil {
			continue
		}
		wait = max(wait, refillHoldOff-r.Clock.Since(at))
	}
	return wait, nil
}

// maxStartingMembers is how many members of a pool of size may be starting at once.
func maxStartingMembers(size int32) int32 { return max(2, size/5) }

// reconcileWarmPool keeps spec.warmPool.size unclaimed instances of the latest revision running
// and verified. Members of an older revision are replaced (claimed ones belong to their instance
// now and are never touched), and so is a member that fails its login.
func (r *DatabaseTemplateReconciler) reconcileWarmPool(ctx context.Context, s *templatePass) (*ctrl.Result, error) {
	t := s.t
	if t.Spec.WarmPool == nil && t.Status.WarmPool == nil {
		// No pool, nor one being taken down: no API call on the path of every template reconcile.
		return nil, nil
	}
	members, err := r.poolMembers(ctx, t)
	if err != nil {
		return nil, err
	}
	var size int32
	if t.Spec.WarmPool != nil {
		size = t.Spec.WarmPool.Size
	}
	latest := t.Status.LatestRevision
	var keep []myaasv1.DatabaseInstance
	for _, m := range members {
		switch problem := poolMemberProblem(&m, r.Clock.Now()); {
		case size == 0 || m.Spec.Revision == nil || *m.Spec.Revision != latest:
			// The pool was removed or shrunk to nothing, or rolls to the latest revision.
			err = r.deletePoolMember(ctx, t, &m, "")
		case problem != "":
			err = r.deletePoolMember(ctx, t, &m, problem)
		default:
			keep = append(keep, m)
		}
		if err != nil {
			return nil, err
		}
	}
	if t.Spec.WarmPool == nil {
		t.Status.WarmPool = nil
		return nil, nil
	}
	st := t.Status.WarmPool
	if st == nil {
		st = &myaasv1.WarmPoolStatus{}
		t.Status.WarmPool = st
	}
	st.Size, st.Revision = size, latest
	// The newest first: of too many, the ones least likely to be verified already go.
	sort.Slice(keep, func(i, j int) bool { return keep[j].CreationTimestamp.Before(&keep[i].CreationTimestamp) })
	for int32(len(keep)) > size {
		if err := r.deletePoolMember(ctx, t, &keep[0], ""); err != nil {
			return nil, err
		}
		keep = keep[1:]
	}
	st.Ready, st.Starting = 0, 0
	for i := range keep {
		if poolMemberReady(&keep[i]) {
			st.Ready++
		} else {
			st.Starting++
		}
	}
	// A burst of claims is served by the running members before the pool refills behind it, a
	// few members at a time: twenty servers starting at once on the same node would slow the
	// claims down.
	wait, err := r.claimBurstWait(ctx, t)
	if err != nil {
		return nil, err
	}
	if wait > 0 {
		s.wakeIn(wait)
		return nil, nil
	}
	for missing := size - int32(len(keep)); missing > 0 && st.Starting < maxStartingMembers(size); missing-- {
		if err := r.createPoolMember(ctx, t, latest); err != nil {
			return nil, err
		}
		st.Starting++
	}
	if st.Starting > 0 {
		// Members report through the instance watch; this covers the deadline of a stuck one.
		s.wakeIn(poolMemberDeadline / 6)
	}
	return nil, nil
}

// poolMembers are the template's unclaimed members, read from the API server: a member claimed a
// moment ago must not be counted, nor deleted, on the word of a stale cache.
func (r *DatabaseTemplateReconciler) poolMembers(ctx context.Context, t *myaasv1.DatabaseTemplate) ([]myaasv1.DatabaseInstance, error) {
	list := &myaasv1.DatabaseInstanceList{}
	if err := r.uncached().List(ctx, list, client.InNamespace(t.Namespace), client.MatchingLabels(builder.PoolMemberLabels(t.Name))); err != nil {
		return nil, fmt.Errorf("list the warm pool of %s: %w", t.Name, err)
	}
	var own []myaasv1.DatabaseInstance
	for _, m := range list.Items {
		if ref := metav1.GetControllerOfNoCopy(&m); ref != nil && ref.UID == t.UID && m.DeletionTimestamp.IsZero() {
			own = append(own, m)
		}
	}
	return own, nil
}

// poolMemberProblem says why a member must be replaced: a failed login, or no verified login
// after poolMemberDeadline; "" for a good one.
func poolMemberProblem(m *myaasv1.DatabaseInstance, now time.Time) string {
	ready := meta.FindStatusCondition(m.Status.Conditions, myaasv1.ConditionReady)
	switch {
	case ready != nil && ready.Status == metav1.ConditionTrue:
		return ""
	case ready != nil && (m.Status.Phase == myaasv1.InstanceFailed || ready.Reason == myaasv1.ReasonLoginFailed):
		return fmt.Sprintf("it failed verification (%s: %s)", ready.Reason, ready.Message)
	case m.Status.Phase == myaasv1.InstanceFailed:
		return "it failed"
	case now.Sub(m.CreationTimestamp.Time) > poolMemberDeadline:
		return fmt.Sprintf("it was not verified within %s", poolMemberDeadline)
	}
	return ""
}

func poolMemberReady(m *myaasv1.DatabaseInstance) bool {
	return meta.IsStatusConditionTrue(m.Status.Conditions, myaasv1.ConditionReady)
}

func (r *DatabaseTemplateReconciler) createPoolMember(ctx context.Context, t *myaasv1.DatabaseTemplate, revision int32) error {
	m := builder.PoolMember(t, revision)
	if err := r.Create(ctx, m); err != nil {
		return fmt.Errorf("create a warm pool member of %s: %w", t.Name, err)
	}
	return nil
}

// deletePoolMember deletes an unclaimed member, only if it is still unclaimed: the precondition
// on its resource version loses to a claim made in the meantime.
func (r *DatabaseTemplateReconciler) deletePoolMember(ctx context.Context, t *myaasv1.DatabaseTemplate, m *myaasv1.DatabaseInstance, problem string) error {
	err := r.Delete(ctx, m, client.Preconditions{UID: &m.UID, ResourceVersion: &m.ResourceVersion})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete warm pool member %s: %w", m.Name, err)
	}
	if problem != "" {
		r.Recorder.Eventf(t, corev1.EventTypeWarning, EventPoolMemberReplaced, "Warm pool member %s replaced: %s", m.Name, problem)
	}
	return nil
}

// deletePoolMembers deletes a deleted template's unclaimed members: they are its own, and would
// otherwise hold its revisions, and so its deletion, forever.
func (r *DatabaseTemplateReconciler) deletePoolMembers(ctx context.Context, t *myaasv1.DatabaseTemplate) error {
	members, err := r.poolMembers(ctx, t)
	if err != nil {
		return err
	}
	for i := range members {
		if err := r.deletePoolMember(ctx, t, &members[i], ""); err != nil {
			return err
		}
	}
	return nil
}
