package v1alpha1

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// TemplateNamespace is the namespace of the instance's template: spec.templateRef.namespace, or
// the instance's own.
func (i *DatabaseInstance) TemplateNamespace() string {
	if i.Spec.TemplateRef.Namespace != "" {
		return i.Spec.TemplateRef.Namespace
	}
	return i.Namespace
}

// TemplateKey names the instance's template.
func (i *DatabaseInstance) TemplateKey() types.NamespacedName {
	return types.NamespacedName{Namespace: i.TemplateNamespace(), Name: i.Spec.TemplateRef.Name}
}

// CrossNamespace tells whether the instance clones a template of another namespace.
func (i *DatabaseInstance) CrossNamespace() bool {
	return i.TemplateNamespace() != i.Namespace
}

// SharesWith tells whether the template lets instances of namespace ns (labelled nsLabels) clone
// it. Its own namespace always may; any other only when spec.sharing names it or selects it.
func (t *DatabaseTemplate) SharesWith(ns string, nsLabels map[string]string) (bool, error) {
	if ns == t.Namespace {
		return true, nil
	}
	sh := t.Spec.Sharing
	if sh == nil {
		return false, nil
	}
	if slices.Contains(sh.Namespaces, ns) {
		return true, nil
	}
	if sh.NamespaceSelector == nil {
		return false, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(sh.NamespaceSelector)
	if err != nil {
		return false, fmt.Errorf("DatabaseTemplate %s/%s: spec.sharing.namespaceSelector: %w", t.Namespace, t.Name, err)
	}
	return sel.Matches(labels.Set(nsLabels)), nil
}

// NeedsNamespaceLabels tells whether SharesWith needs the labels of namespace ns to decide.
func (t *DatabaseTemplate) NeedsNamespaceLabels(ns string) bool {
	sh := t.Spec.Sharing
	return ns != t.Namespace && sh != nil && sh.NamespaceSelector != nil && !slices.Contains(sh.Namespaces, ns)
}
