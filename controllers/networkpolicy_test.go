package controllers

import (
	"fmt"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// The instance's NetworkPolicy exists, owned by the instance, and follows spec.network; the
// template's import pods get theirs.
func TestNetworkPoliciesFollowTheSpec(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{OperatorNamespace: "myaas-system"})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	inst := newInstance(t, ns, "guarded", "shop")

	importPolicy := &networkingv1.NetworkPolicy{}
	eventually(t, 20*time.Second, "the import pods' NetworkPolicy", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-import"}, importPolicy)
	})
	if owner := metav1.GetControllerOf(importPolicy); owner == nil || owner.Kind != "DatabaseTemplate" || owner.Name != "shop" {
		t.Fatalf("import NetworkPolicy owned by %+v", owner)
	}

	np := &networkingv1.NetworkPolicy{}
	sources := func(n int) func() error {
		return func() error {
			if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "guarded"}, np); err != nil {
				return err
			}
			if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != n {
				return fmt.Errorf("ingress %+v", np.Spec.Ingress)
			}
			return nil
		}
	}
	eventually(t, 20*time.Second, "the instance's NetworkPolicy: its namespace and the operator's", sources(2))
	if owner := metav1.GetControllerOf(np); owner == nil || owner.Kind != "DatabaseInstance" || owner.UID != inst.UID {
		t.Fatalf("instance NetworkPolicy owned by %+v", owner)
	}
	if got := np.Spec.Ingress[0].From[1].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; got != "myaas-system" {
		t.Fatalf("operator namespace %q", got)
	}

	// The operator writes the instance's status meanwhile: the edit is retried on a conflict, as
	// kubectl edit would be.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		inst = getInstance(t, ns, "guarded")
		inst.Spec.Network = &myaasv1.NetworkSpec{AllowFrom: []networkingv1.NetworkPolicyPeer{
			{IPBlock: &networkingv1.IPBlock{CIDR: "10.8.0.0/16"}},
		}}
		return k8s.Update(bg, inst)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "spec.network.allowFrom added to the NetworkPolicy", sources(3))
	if got := np.Spec.Ingress[0].From[2].IPBlock; got == nil || got.CIDR != "10.8.0.0/16" {
		t.Fatalf("allowFrom peer %+v", np.Spec.Ingress[0].From[2])
	}
}
