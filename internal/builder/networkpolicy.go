package builder

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// namespaceNameLabel is set by the API server on every namespace (Kubernetes 1.21+), so a
// namespaceSelector can name one namespace.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// InstanceNetworkPolicy lets into the instance's pod, on the server's port only: pods of the
// instance's namespace, the operator's pods (its readiness login and session count), and what
// spec.network.allowFrom adds. operatorNamespace is empty when the manager runs outside the
// cluster; network plugins let a node reach its own pods, so it needs no rule then.
func InstanceNetworkPolicy(inst *myaasv1.DatabaseInstance, eng engine.Engine, operatorNamespace string) *networkingv1.NetworkPolicy {
	from := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
	if operatorNamespace != "" && operatorNamespace != inst.Namespace {
		from = append(from, namespacePeer(operatorNamespace))
	}
	if n := inst.Spec.Network; n != nil {
		from = append(from, n.AllowFrom...)
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            inst.Name,
			Namespace:       inst.Namespace,
			Labels:          InstanceLabels(inst),
			OwnerReferences: instanceOwner(inst),
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selectorLabels(inst)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{tcpPort(eng.Port())},
				From:  from,
			}},
		},
	}
}

// ImportNetworkPolicy lets only the operator into a template's import pods, on the agent's
// progress port: nothing else has any business connecting to them. It also lets the operator
// read the progress where the namespace denies all ingress by default. Without an operator
// namespace (a manager outside the cluster, reaching pods from its node) the policy admits no
// pod at all.
func ImportNetworkPolicy(t *myaasv1.DatabaseTemplate, operatorNamespace string) *networkingv1.NetworkPolicy {
	rule := networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{tcpPort(agentapi.ProgressPort)}}
	if operatorNamespace != "" {
		rule.From = []networkingv1.NetworkPolicyPeer{namespacePeer(operatorNamespace)}
	}
	var ingress []networkingv1.NetworkPolicyIngressRule
	if rule.From != nil {
		ingress = append(ingress, rule)
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            ImportNetworkPolicyName(t.Name),
			Namespace:       t.Namespace,
			Labels:          TemplateLabels(t.Name, 0, myaasv1.RoleImport),
			OwnerReferences: templateOwner(t),
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{
				myaasv1.LabelTemplate: t.Name,
				myaasv1.LabelRole:     myaasv1.RoleImport,
			}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     ingress,
		},
	}
}

func namespacePeer(namespace string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{namespaceNameLabel: namespace},
	}}
}

func tcpPort(port int32) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(port))}
}
