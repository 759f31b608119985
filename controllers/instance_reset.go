package controllers

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// reconcileReset serves the myaas.io/reset annotation: the StatefulSet and its clone PVC are
// deleted (volume claim templates are immutable), and once they are gone the instance is cloned
// again from the template's latest revision. The Secret and Service stay, so clients keep working.
// A reset also moves the instance to the operator's current agent.
func (r *DatabaseInstanceReconciler) reconcileReset(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	want := inst.Annotations[myaasv1.AnnotationReset]
	if want == "" || want == inst.Status.HandledReset {
		return nil, nil
	}
	if inst.Status.Phase != myaasv1.InstanceResetting {
		r.Recorder.Eventf(inst, corev1.EventTypeNormal, EventResetStarted, "Resetting to the latest revision of %s", inst.Spec.TemplateRef.Name)
	}
	inst.Status.Phase = myaasv1.InstanceResetting
	setCondition(&inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonResetting,
		"the data is being replaced with the template's latest revision")

	gone, err := r.deleteData(ctx, inst)
	if err != nil || !gone {
		return stop(time.Second), err
	}
	if err := r.releasePoolMember(ctx, inst); err != nil {
		return nil, err
	}
	inst.Status.HandledReset = want
	inst.Status.Resets++
	forgetData(inst)
	r.placements.forget(inst.UID)
	// The new clone is made by the next reconcile, once this status is stored: were the write lost
	// after the new StatefulSet existed, the retry would take the fresh clone for the old data.
	return stop(time.Millisecond), nil
}

// forgetData clears what the status says of the instance's current server, so that the next
// pass provisions a new one: a claim or a clone of the latest revision.
func forgetData(inst *myaasv1.DatabaseInstance) {
	inst.Status.Revision = 0
	inst.Status.SnapshotName = ""
	inst.Status.Node = ""
	inst.Status.ReadyAt = nil
	inst.Status.TimeToReady = nil
	inst.Status.ProvisioningStartedAt = nil
	inst.Status.AgentSHA256 = ""
	inst.Status.Provisioning = nil
}

// releasePoolMember deletes the warm pool member a reset instance claimed: its data goes, as a
// clone's does.
func (r *DatabaseInstanceReconciler) releasePoolMember(ctx context.Context, inst *myaasv1.DatabaseInstance) error {
	p := inst.Status.Provisioning
	if p == nil || p.PoolMember == "" {
		return nil
	}
	member := &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Namespace: inst.Namespace, Name: p.PoolMember}}
	if err := r.Delete(ctx, member); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete claimed member %s: %w", p.PoolMember, err)
	}
	return nil
}

// deleteData deletes the StatefulSet and the instance's clone PVCs. It reports done once the
// StatefulSet is gone: the next clone gets a new claim name, so the old PVCs may finish
// terminating in the background without any risk of being adopted.
func (r *DatabaseInstanceReconciler) deleteData(ctx context.Context, inst *myaasv1.DatabaseInstance) (bool, error) {
	sts := &appsv1.StatefulSet{}
	err := r.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: inst.Name}, sts)
	if client.IgnoreNotFound(err) != nil {
		return false, fmt.Errorf("get StatefulSet: %w", err)
	}
	if err == nil {
		if err := r.releaseStrandedPod(ctx, inst); err != nil {
			return false, err
		}
		if ownershipOf(sts, inst, instanceKind) == owned && sts.DeletionTimestamp.IsZero() {
			if err := r.Delete(ctx, sts, client.PropagationPolicy(metav1.DeletePropagationForeground)); client.IgnoreNotFound(err) != nil {
				return false, fmt.Errorf("delete StatefulSet for reset: %w", err)
			}
		}
		return false, nil
	}
	pvcs := &corev1.PersistentVolumeClaimList{}
	if err := r.List(ctx, pvcs, client.InNamespace(inst.Namespace), client.MatchingLabels{
		myaasv1.LabelInstance: inst.Name, myaasv1.LabelRole: myaasv1.RoleInstanceData,
	}); err != nil {
		return false, fmt.Errorf("list PVCs for reset: %w", err)
	}
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		if pvc.DeletionTimestamp.IsZero() {
			if err := r.Delete(ctx, pvc); client.IgnoreNotFound(err) != nil {
				return false, fmt.Errorf("delete PVC %s for reset: %w", pvc.Name, err)
			}
		}
	}
	return true, nil
}
