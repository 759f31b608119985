package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// Root's and the operator's passwords live in a Secret of the operator's own, owned by the
// instance, mounted into its pod, and never in the Secret the application reads.
func TestAdminSecretIsTheOperatorsOwn(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	inst := newInstance(t, ns, "guarded", "shop")

	secret := &corev1.Secret{}
	eventually(t, 20*time.Second, "admin Secret", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "guarded-admin"}, secret)
	})
	if ref := metav1.GetControllerOf(secret); ref == nil || ref.UID != inst.UID || ref.Kind != "DatabaseInstance" {
		t.Fatalf("admin Secret owner %+v: deleting the instance must delete it", secret.OwnerReferences)
	}
	if secret.Labels[myaasv1.LabelInstance] != "guarded" || secret.Labels["app.kubernetes.io/managed-by"] != "myaas" {
		t.Fatalf("admin Secret labels %v", secret.Labels)
	}
	admin := adminCredentials(t, ns, "guarded")
	if admin["username"] != "myaas_admin" || len(admin["password"]) < 20 || len(admin["root-password"]) < 20 || admin["password"] == admin["root-password"] {
		t.Fatalf("admin Secret keys %v", redact(admin))
	}
	creds := credentials(t, ns, "guarded")
	for k, v := range creds {
		if strings.Contains(v, admin["password"]) || strings.Contains(v, admin["root-password"]) || k == "root-password" {
			t.Errorf("the application's Secret holds an admin password in %s", k)
		}
	}

	sts := &appsv1.StatefulSet{}
	eventually(t, 20*time.Second, "StatefulSet", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "guarded"}, sts)
	})
	mounted := false
	for _, v := range sts.Spec.Template.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == "guarded-admin")
	}
	if !mounted {
		t.Fatal("the pod does not mount the admin Secret: its agent could not log in as root")
	}

	// Deleted, it comes back with fresh passwords, which the agent in the pod applies.
	if err := k8s.Delete(bg, secret); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "admin Secret re-created", func() error {
		again := &corev1.Secret{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "guarded-admin"}, again); err != nil {
			return err
		}
		if again.UID == secret.UID {
			return fmt.Errorf("still the deleted one")
		}
		if string(again.Data["password"]) == admin["password"] || len(again.Data["root-password"]) < 20 {
			return fmt.Errorf("re-created without fresh passwords")
		}
		return nil
	})
}
