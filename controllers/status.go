package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// setCondition sets a condition stamped with the object's generation, so users can tell a stale
// condition from a current one.
func setCondition(conds *[]metav1.Condition, generation int64, condType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
	})
}

// conditionChanged says whether setting the condition would change what a user reads.
func conditionChanged(conds []metav1.Condition, condType string, status metav1.ConditionStatus, reason, message string) bool {
	c := meta.FindStatusCondition(conds, condType)
	return c == nil || c.Status != status || c.Reason != reason || c.Message != message
}

// notice is a condition and the event that announces it.
type notice struct {
	condType  string
	status    metav1.ConditionStatus
	reason    string
	message   string
	eventType string
	event     string
}

// setConditionAndNotify sets the condition and records its event only when the condition changed:
// a step that runs every few seconds in the same state must not repeat the same event.
func setConditionAndNotify(rec record.EventRecorder, obj runtime.Object, conds *[]metav1.Condition, generation int64, n notice) {
	if conditionChanged(*conds, n.condType, n.status, n.reason, n.message) {
		rec.Event(obj, n.eventType, n.event, n.message)
	}
	setCondition(conds, generation, n.condType, n.status, n.reason, n.message)
}

// patchStatus writes obj's status when it differs from before's. The optimistic lock makes a write
// based on a stale cache fail instead of overwriting newer state (a revision number allocated by an
// earlier reconcile, say); the conflict then only means "reconcile again".
func patchStatus(ctx context.Context, c client.Client, before, obj client.Object, beforeStatus, status any) error {
	if equality.Semantic.DeepEqual(beforeStatus, status) {
		return nil
	}
	if err := c.Status().Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("update status of %s: %w", obj.GetName(), err)
	}
	return nil
}

// finish turns a status conflict into a requeue, the normal outcome of a race with the cache.
func finish(res ctrl.Result, err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: requeueSoon}, nil
	}
	return res, err
}

// requeueSoon is how soon a step that just changed something looks again.
const requeueSoon = 100 * time.Millisecond
