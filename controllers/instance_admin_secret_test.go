package controllers

import (
	"fmt"
	"slices"
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

// An instance whose pod predates the admin Secret reads root's password from the user's Secret
// at every start: the key stays there until a reset gives it the current pod, and goes from a
// current one.
func TestLegacyRootPasswordStaysForAnOlderPodOnly(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	newInstance(t, ns, "old", "shop")
	newInstance(t, ns, "current", "shop")
	for _, name := range []string{"old", "current"} {
		eventually(t, 20*time.Second, "StatefulSet "+name, func() error {
			return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, &appsv1.StatefulSet{})
		})
	}
	// The older version's pod: no admin Secret mounted.
	sts := &appsv1.StatefulSet{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "old"}, sts); err != nil {
		t.Fatal(err)
	}
	pod := &sts.Spec.Template.Spec
	pod.Volumes = slices.DeleteFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "old-admin" })
	pod.Containers[0].VolumeMounts = slices.DeleteFunc(pod.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "admin-credentials" })
	if err := k8s.Update(bg, sts); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"old", "current"} {
		secret := &corev1.Secret{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name + "-credentials"}, secret); err != nil {
			t.Fatal(err)
		}
		secret.Data["root-password"] = []byte("legacy-root")
		if err := k8s.Update(bg, secret); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "legacy key dropped from the current pod's Secret", func() error {
		if v, ok := credentials(t, ns, "current")["root-password"]; ok {
			return fmt.Errorf("still there: %d bytes", len(v))
		}
		return nil
	})
	consistently(t, 2*time.Second, "legacy key kept for the older pod", func() error {
		if credentials(t, ns, "old")["root-password"] != "legacy-root" {
			return fmt.Errorf("root's password gone: the older pod would not start again")
		}
		return nil
	})
}
