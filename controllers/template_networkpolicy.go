package controllers

import (
	"context"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/myaas/myaas/internal/builder"
)

// reconcileImportNetworkPolicy keeps the NetworkPolicy of the template's import pods: nobody but
// the operator, reading the agent's progress, may connect to them, even in a namespace that
// denies all ingress by default.
func (r *DatabaseTemplateReconciler) reconcileImportNetworkPolicy(ctx context.Context, s *templatePass) (*ctrl.Result, error) {
	t := s.t
	want := builder.ImportNetworkPolicy(t, r.OperatorNamespace)
	have := &networkingv1.NetworkPolicy{}
	err := getChild(ctx, r.Client, r.uncached(), client.ObjectKeyFromObject(want), have)
	if client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("get NetworkPolicy %s: %w", want.Name, err)
	}
	if err == nil {
		if ownershipOf(have, t, templateKind) != owned {
			// Someone else's policy, or that of a deleted template of the same name: the import
			// does not depend on it (progress is informative), so it goes on without.
			log.FromContext(ctx).V(1).Info("NetworkPolicy of the import pods not ours, left alone", "networkPolicy", want.Name)
			return nil, nil
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
