package controllers

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// instanceTemplateField indexes instances by the template they clone.
const instanceTemplateField = "spec.templateRef.name"

// SetupIndexes registers the cache indexes both controllers query. Call it once, before the controllers.
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &myaasv1.DatabaseInstance{}, instanceTemplateField,
		func(o client.Object) []string { return []string{o.(*myaasv1.DatabaseInstance).Spec.TemplateRef.Name} }); err != nil {
		return fmt.Errorf("index instances by template: %w", err)
	}
	return nil
}
