package main

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// The manager's ClusterRole and its binding, as config/rbac names them (before kustomize's prefix).
const (
	managerRole        = "manager-role"
	managerRoleBinding = "manager-rolebinding"
)

// resourceScopes says which resources are namespaced: in a namespaced install (watchNamespaces)
// their rules move from the manager's ClusterRole into a Role in each watched namespace, while
// the cluster-scoped ones stay in the ClusterRole. A resource missing here stops chartgen, so
// that a new RBAC marker is placed on purpose.
var resourceScopes = map[string]bool{
	// namespaced
	"events": true, "secrets": true, "services": true, "pods": true, "persistentvolumeclaims": true,
	"configmaps": true, "serviceaccounts": true, "statefulsets": true, "jobs": true, "cronjobs": true,
	"volumesnapshots": true, "networkpolicies": true, "leases": true, "databaseinstances": true,
	"databasetemplates": true, "certificates": true, "issuers": true, "roles": true, "rolebindings": true,
	// cluster-scoped
	"persistentvolumes": false, "storageclasses": false, "volumesnapshotclasses": false,
	"volumesnapshotcontents": false, "nodes": false, "namespaces": false, "clusterissuers": false,
	"tokenreviews": false, "subjectaccessreviews": false, "customresourcedefinitions": false,
}

// splitRule divides a rule into its cluster-scoped and namespaced parts; either may be nil.
func splitRule(rule object) (cluster, namespaced object, err error) {
	if _, ok := rule["nonResourceURLs"]; ok {
		return rule, nil, nil
	}
	resources, err := stringList(rule["resources"])
	if err != nil {
		return nil, nil, err
	}
	var cl, ns []any
	for _, r := range resources {
		base, _, _ := strings.Cut(r, "/")
		isNamespaced, known := resourceScopes[base]
		if !known {
			return nil, nil, fmt.Errorf("resource %q: add it to resourceScopes in hack/chartgen/rbac.go", r)
		}
		if isNamespaced {
			ns = append(ns, r)
		} else {
			cl = append(cl, r)
		}
	}
	part := func(rs []any) object {
		if len(rs) == 0 {
			return nil
		}
		c := object{}
		for k, v := range rule {
			c[k] = v
		}
		c["resources"] = rs
		return c
	}
	return part(cl), part(ns), nil
}

// managerRoleTemplate renders the manager's ClusterRole so that, with watchNamespaces, it keeps
// only the cluster-scoped rules and a Role in each watched namespace holds the others. Without
// watchNamespaces it renders exactly config/'s ClusterRole.
func managerRoleTemplate(role object) ([]byte, error) {
	rules, _ := role["rules"].([]any)
	head, err := yaml.Marshal(object{"apiVersion": role["apiVersion"], "kind": role["kind"], "metadata": role["metadata"]})
	if err != nil {
		return nil, err
	}
	item := func(rule object) (string, error) {
		b, err := yaml.Marshal([]any{rule})
		return strings.TrimRight(string(b), "\n"), err
	}
	out := []string{strings.TrimRight(string(head), "\n"), "rules:"}
	var namespaced []string
	for _, r := range rules {
		rule, ok := r.(object)
		if !ok {
			return nil, fmt.Errorf("rule %v is not an object", r)
		}
		cl, ns, err := splitRule(rule)
		if err != nil {
			return nil, err
		}
		whole, err := item(rule)
		if err != nil {
			return nil, err
		}
		switch {
		case ns == nil:
			out = append(out, whole)
			continue
		case cl == nil:
			out = append(out, "{{- if not .Values.watchNamespaces }}", whole, "{{- end }}")
		default:
			clusterPart, err := item(cl)
			if err != nil {
				return nil, err
			}
			out = append(out, "{{- if not .Values.watchNamespaces }}", whole, "{{- else }}", clusterPart, "{{- end }}")
		}
		nsPart, err := item(ns)
		if err != nil {
			return nil, err
		}
		namespaced = append(namespaced, nsPart)
	}
	out = append(out,
		"{{- range .Values.watchNamespaces }}",
		"---",
		"apiVersion: rbac.authorization.k8s.io/v1",
		"kind: Role",
		"metadata:",
		"  name: "+str(role, "metadata", "name"),
		"  namespace: {{ . | quote }}",
		"rules:")
	out = append(out, namespaced...)
	out = append(out, "{{- end }}")
	return []byte(strings.Join(out, "\n") + "\n"), nil
}

// managerRoleBindingTemplate renders the ClusterRoleBinding as config/ has it, and a RoleBinding
// to the manager's Role in each watched namespace.
func managerRoleBindingTemplate(binding object) ([]byte, error) {
	b, err := yaml.Marshal(binding)
	if err != nil {
		return nil, err
	}
	roleRef, _ := binding["roleRef"].(object)
	rb := object{
		"apiVersion": "rbac.authorization.k8s.io/v1",
		"kind":       "RoleBinding",
		"metadata":   object{"name": str(binding, "metadata", "name"), "namespace": "__NAMESPACE__"},
		"roleRef":    object{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roleRef["name"]},
		"subjects":   binding["subjects"],
	}
	rbb, err := yaml.Marshal(rb)
	if err != nil {
		return nil, err
	}
	// Inside the range, "." is the namespace: the release's is $.Release.
	perNamespace := strings.NewReplacer(
		"{{ .Release.Namespace }}", "{{ $.Release.Namespace }}",
		"__NAMESPACE__", "{{ . | quote }}",
	).Replace(strings.TrimRight(string(rbb), "\n"))
	return []byte(string(b) + "{{- range .Values.watchNamespaces }}\n---\n" + perNamespace + "\n{{- end }}\n"), nil
}
