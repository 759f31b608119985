package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// ExpiryTime is when an instance is due for deletion: spec.expiresAt, or creation plus spec.ttl.
func ExpiryTime(inst *myaasv1.DatabaseInstance) *metav1.Time {
	switch {
	case inst.Spec.ExpiresAt != nil:
		return inst.Spec.ExpiresAt.DeepCopy()
	case inst.Spec.TTL != nil:
		t := metav1.NewTime(inst.CreationTimestamp.Add(inst.Spec.TTL.Duration))
		return &t
	}
	return nil
}

// reconcileTTL deletes an expired instance (its children go with it through owner references) and
// otherwise asks to be called back at expiry.
func (r *DatabaseInstanceReconciler) reconcileTTL(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	expiry := ExpiryTime(inst)
	inst.Status.ExpiresAt = expiry
	if expiry == nil {
		return nil, nil
	}
	if left := expiry.Sub(r.Clock.Now()); left > 0 {
		s.wakeIn(left)
		return nil, nil
	}
	log.FromContext(ctx).Info("instance expired", "expiresAt", expiry.Time)
	r.Recorder.Eventf(inst, corev1.EventTypeNormal, EventExpired, "Instance expired at %s and is being deleted", expiry.UTC().Format("2006-01-02T15:04:05Z"))
	err := r.Delete(ctx, inst, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("delete expired instance: %w", err)
	}
	recordExpiration(inst, err)
	s.deleted = true
	return stop(0), nil
}
