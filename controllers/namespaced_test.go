package controllers

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// TestNamespacedManagerNeedsNoClusterWideGrant runs the manager as a ServiceAccount granted what
// config/namespaced grants: the generated manager ClusterRole bound in one namespace only, and
// the cluster-scoped reads cluster-wide. Watching that namespace, it imports a template (its
// source PVC read by name) and builds an instance there; a cache reaching for another namespace
// would be refused and stall. A template in an unwatched namespace is left alone.
func TestNamespacedManagerNeedsNoClusterWideGrant(t *testing.T) {
	requireEnv(t)
	watched, other := newNamespace(t), newNamespace(t)
	user := "system:serviceaccount:" + watched + ":manager"

	role := readRBAC[rbacv1.ClusterRole](t, "../config/rbac/role.yaml")
	role.ObjectMeta = metav1.ObjectMeta{Name: "manager-role-" + watched}
	clusterRole := readRBAC[rbacv1.ClusterRole](t, "../config/namespaced/manager_cluster_role.yaml")
	clusterRole.ObjectMeta = metav1.ObjectMeta{Name: "manager-cluster-role-" + watched}
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	for _, o := range []client.Object{
		role, clusterRole,
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "manager"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   subjects,
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: clusterRole.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole.Name},
			Subjects:   subjects,
		},
	} {
		if err := k8s.Create(bg, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(bg, o) })
	}

	cfg := rest.CopyConfig(testConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	startManagerAs(t, cfg, []string{watched}, Options{})

	newTemplate(t, watched, "shop")
	newTemplate(t, other, "shop")
	importRevision(t, watched, "shop", 1)
	newInstance(t, watched, "dev", "shop")
	eventually(t, 20*time.Second, "the instance's StatefulSet", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: watched, Name: "dev"}, &appsv1.StatefulSet{})
	})

	if tmpl := getTemplate(t, other, "shop"); len(tmpl.Finalizers) > 0 || tmpl.Status.CurrentImport != nil {
		t.Errorf("the template in the unwatched namespace was reconciled: finalizers %v, status %+v", tmpl.Finalizers, tmpl.Status)
	}
}

func readRBAC[T any](t *testing.T, path string) *T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The first document: the role, before its binding.
	doc, _, _ := bytes.Cut(b, []byte("\n---"))
	v := new(T)
	if err := yaml.Unmarshal(doc, v); err != nil {
		t.Fatal(fmt.Errorf("%s: %w", path, err))
	}
	return v
}
