package builder

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/engine"
)

func TestPoolMember(t *testing.T) {
	tmpl := &myaasv1.DatabaseTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders", UID: "t-uid"},
		Spec: myaasv1.DatabaseTemplateSpec{WarmPool: &myaasv1.WarmPoolSpec{Size: 2, Database: "shop", Username: "app"}}}
	for _, revision := range []int32{1, 7} {
		m := PoolMember(tmpl, revision)
		if m.Name != "" || m.GenerateName != "orders-pool-" || m.Namespace != "shop" {
			t.Errorf("revision %d: %s/%s (generateName %q), want a name generated from orders-pool- in shop", revision, m.Namespace, m.Name, m.GenerateName)
		}
		if m.Spec.Database != "shop" || m.Spec.Username != "app" {
			t.Errorf("revision %d: credentials for %s@%s, want the pool's app@shop", revision, m.Spec.Username, m.Spec.Database)
		}
		if m.Spec.Revision == nil || *m.Spec.Revision != revision || m.Spec.TemplateRef.Name != "orders" {
			t.Errorf("revision %d: spec %+v, want revision %d of orders pinned", revision, m.Spec, revision)
		}
		if ref := metav1.GetControllerOf(m); ref == nil || ref.UID != "t-uid" || ref.Kind != "DatabaseTemplate" {
			t.Errorf("revision %d: controller %+v, want the template", revision, ref)
		}
		for k, v := range PoolMemberLabels("orders") {
			if m.Labels[k] != v {
				t.Errorf("revision %d: label %s=%q, want %q (the pool lists its members by it)", revision, k, m.Labels[k], v)
			}
		}
		if m.Labels[myaasv1.LabelManagedBy] != myaasv1.ManagedBy {
			t.Errorf("revision %d: not labelled managed-by: %v", revision, m.Labels)
		}
	}
}

func TestClaimedInstanceServiceLeadsToTheMembersPod(t *testing.T) {
	inst := &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: "pr-12", UID: "i-uid"},
		Spec: myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: "orders"}}}
	member := &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: "orders-pool-3"}}
	svc := ClaimedInstanceService(inst, member, engine.MariaDB{})
	if svc.Name != "pr-12" || svc.Labels[myaasv1.LabelInstance] != "pr-12" {
		t.Errorf("Service %s labelled %v: want the instance's own name and labels", svc.Name, svc.Labels)
	}
	if svc.Spec.Selector[myaasv1.LabelInstance] != "orders-pool-3" {
		t.Errorf("selector %v: want the member's pod", svc.Spec.Selector)
	}
	if ref := metav1.GetControllerOf(svc); ref == nil || ref.UID != "i-uid" {
		t.Errorf("controller %+v: want the instance", ref)
	}
}

func TestServiceDNSNamesOfAClaimedMemberNameTheClaimant(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
		annot  map[string]string
		want   []string
		absent []string
	}{
		{name: "plain instance", want: []string{"orders-pool-3.ci.svc"}, absent: []string{"pr-12.ci.svc"}},
		// Whoever claims it, its certificate already names the claimant's Service.
		{name: "unclaimed member", labels: PoolMemberLabels("orders"), want: []string{"orders-pool-3.ci.svc", "*.ci.svc", "*.ci.svc.cluster.local"}},
		{name: "claimed member", labels: map[string]string{myaasv1.LabelPool: "orders"}, annot: map[string]string{myaasv1.AnnotationClaimedBy: "pr-12"},
			want: []string{"orders-pool-3.ci.svc", "pr-12.ci.svc", "pr-12.ci.svc.cluster.local"}, absent: []string{"*.ci.svc"}},
		// Only the operator's pool members name another Service: the annotation on any other
		// instance is ignored.
		{name: "annotation on a non-member", annot: map[string]string{myaasv1.AnnotationClaimedBy: "pr-12"},
			want: []string{"orders-pool-3.ci.svc"}, absent: []string{"pr-12.ci.svc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: "orders-pool-3", Labels: tc.labels, Annotations: tc.annot}}
			names := ServiceDNSNames(m)
			for _, w := range tc.want {
				if !slices.Contains(names, w) {
					t.Errorf("names %v lack %s", names, w)
				}
			}
			for _, a := range tc.absent {
				if slices.Contains(names, a) {
					t.Errorf("names %v must not contain %s", names, a)
				}
			}
		})
	}
}
