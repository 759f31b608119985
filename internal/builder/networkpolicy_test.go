package builder

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func TestInstanceNetworkPolicy(t *testing.T) {
	ownNamespace := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}
	operator := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{"kubernetes.io/metadata.name": "myaas-system"},
	}}
	team := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}}
	vpn := networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.8.0.0/16"}}
	cases := []struct {
		name              string
		mutate            func(*myaasv1.DatabaseInstance)
		engine            string
		operatorNamespace string
		wantFrom          []networkingv1.NetworkPolicyPeer
		wantPort          int32
	}{
		{name: "own namespace and the operator", engine: "mariadb", operatorNamespace: "myaas-system",
			wantFrom: []networkingv1.NetworkPolicyPeer{ownNamespace, operator}, wantPort: 3306},
		{name: "operator in the instance's namespace is covered by it", engine: "mysql", operatorNamespace: "ci",
			wantFrom: []networkingv1.NetworkPolicyPeer{ownNamespace}, wantPort: 3306},
		{name: "operator outside the cluster", engine: "mariadb",
			wantFrom: []networkingv1.NetworkPolicyPeer{ownNamespace}, wantPort: 3306},
		{name: "widened by spec.network.allowFrom", engine: "mariadb", operatorNamespace: "myaas-system",
			mutate: func(i *myaasv1.DatabaseInstance) {
				i.Spec.Network = &myaasv1.NetworkSpec{AllowFrom: []networkingv1.NetworkPolicyPeer{team, vpn}}
			},
			wantFrom: []networkingv1.NetworkPolicyPeer{ownNamespace, operator, team, vpn}, wantPort: 3306},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst := instance(tc.mutate)
			np := InstanceNetworkPolicy(inst, mustEngine(t, tc.engine), tc.operatorNamespace)
			if np.Name != "feature-x" || np.Namespace != "ci" || metav1.GetControllerOf(np) == nil || np.Kind != "NetworkPolicy" ||
				!reflect.DeepEqual(np.Labels, InstanceLabels(inst)) {
				t.Fatalf("meta %+v", np.ObjectMeta)
			}
			// The same pods as the Service: the StatefulSet's selector.
			if !reflect.DeepEqual(np.Spec.PodSelector.MatchLabels, InstanceService(inst, mustEngine(t, tc.engine)).Spec.Selector) {
				t.Fatalf("pod selector %v", np.Spec.PodSelector)
			}
			if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
				t.Fatalf("policy types %v: egress must stay open (the server needs none, but nothing is gained by breaking DNS)", np.Spec.PolicyTypes)
			}
			if len(np.Spec.Ingress) != 1 {
				t.Fatalf("ingress %+v", np.Spec.Ingress)
			}
			rule := np.Spec.Ingress[0]
			if len(rule.Ports) != 1 || *rule.Ports[0].Protocol != corev1.ProtocolTCP || rule.Ports[0].Port.IntVal != tc.wantPort {
				t.Fatalf("ports %+v", rule.Ports)
			}
			if !reflect.DeepEqual(rule.From, tc.wantFrom) {
				t.Fatalf("from %+v, want %+v", rule.From, tc.wantFrom)
			}
		})
	}
}

func TestImportNetworkPolicy(t *testing.T) {
	cases := []struct {
		name              string
		operatorNamespace string
		wantRules         int
	}{
		{name: "operator in the cluster reads the progress", operatorNamespace: "myaas-system", wantRules: 1},
		{name: "operator outside the cluster: no pod may connect", wantRules: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := template(nil)
			np := ImportNetworkPolicy(tmpl, tc.operatorNamespace)
			if np.Name != "shop-import" || np.Namespace != "dev" || metav1.GetControllerOf(np) == nil {
				t.Fatalf("meta %+v", np.ObjectMeta)
			}
			job, err := ImportJob(tmpl, 3, 2, "myaas:v1")
			if err != nil {
				t.Fatal(err)
			}
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil {
				t.Fatal(err)
			}
			if !sel.Matches(labels.Set(job.Spec.Template.Labels)) {
				t.Fatalf("selector %v does not select the import pods %v", sel, job.Spec.Template.Labels)
			}
			if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Ingress) != tc.wantRules {
				t.Fatalf("spec %+v", np.Spec)
			}
			if tc.wantRules == 1 {
				rule := np.Spec.Ingress[0]
				if len(rule.Ports) != 1 || rule.Ports[0].Port.IntVal != 8090 || len(rule.From) != 1 ||
					rule.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "myaas-system" || rule.From[0].PodSelector != nil {
					t.Fatalf("rule %+v", rule)
				}
			}
		})
	}
}
