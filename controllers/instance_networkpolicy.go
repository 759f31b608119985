package controllers

import (
	"context"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/myaas/myaas/internal/builder"
)

// reconcileNetworkPolicy applies the instance's NetworkPolicy before its pod exists, so that the
// server is never reachable from further than its namespace, the operator and spec.network allow.
func (r *DatabaseInstanceReconciler) reconcileNetworkPolicy(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	want := builder.InstanceNetworkPolicy(inst, s.src.engine, r.OperatorNamespace)
	have := &networkingv1.NetworkPolicy{}
	err := getChild(ctx, r.Client, r.reader(), client.ObjectKeyFromObject(want), have)
	if client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("get NetworkPolicy %s: %w", want.Name, err)
	}
	if err == nil {
		if ownershipOf(have, inst, instanceKind) != owned {
			return r.waitForPreviousInstance(s, "NetworkPolicy "+want.Name)
		}
		if equality.Semantic.DeepEqual(want.Spec, have.Spec) && equality.Semantic.DeepDerivative(want.Labels, have.Labels) {
			return nil, nil
		}
	}
	if err := r.Patch(ctx, want, client.Apply, fieldOwner, client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("apply NetworkPolicy %s: %w", want.Name, err)
	}
	return nil, nil
}
