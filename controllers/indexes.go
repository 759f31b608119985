package controllers

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// instanceTemplateField indexes instances by the template they clone, as "namespace/name": a
// template finds its instances in every namespace with one query.
const instanceTemplateField = "spec.templateRef"

// templateIndexKey is the value instanceTemplateField holds for a template.
func templateIndexKey(namespace, name string) string { return namespace + "/" + name }

// SetupIndexes registers the cache indexes both controllers query. Call it once, before the controllers.
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &myaasv1.DatabaseInstance{}, instanceTemplateField,
		func(o client.Object) []string {
			k := o.(*myaasv1.DatabaseInstance).TemplateKey()
			return []string{templateIndexKey(k.Namespace, k.Name)}
		}); err != nil {
		return fmt.Errorf("index instances by template: %w", err)
	}
	return nil
}

// instancesOfTemplate lists the instances that clone a template, in every namespace.
func instancesOfTemplate(ctx context.Context, c client.Reader, namespace, name string) (*myaasv1.DatabaseInstanceList, error) {
	list := &myaasv1.DatabaseInstanceList{}
	if err := c.List(ctx, list, client.MatchingFields{instanceTemplateField: templateIndexKey(namespace, name)}); err != nil {
		return nil, fmt.Errorf("list instances of template %s/%s: %w", namespace, name, err)
	}
	return list, nil
}

// templateOfLabels names the template a child labelled by the operator belongs to: the template
// namespace label where there is one (children of instances of another namespace's template, and
// the copies of revisions), else the child's own namespace.
func templateOfLabels(o client.Object) (client.ObjectKey, bool) {
	l := o.GetLabels()
	name := l[myaasv1.LabelTemplate]
	if name == "" {
		return client.ObjectKey{}, false
	}
	ns := l[myaasv1.LabelTemplateNamespace]
	if ns == "" {
		ns = o.GetNamespace()
	}
	return client.ObjectKey{Namespace: ns, Name: name}, true
}
