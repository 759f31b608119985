package builder

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// PoolMemberPrefix starts the names of a template's pool members; the API server adds a random
// suffix, so that a member's name is never one a deleted member's children may still carry.
func PoolMemberPrefix(template string) string { return template + "-pool-" }

// PoolMemberLabels find a template's unclaimed pool members.
func PoolMemberLabels(template string) map[string]string {
	return map[string]string{myaasv1.LabelPool: template, myaasv1.LabelPoolState: myaasv1.PoolAvailable}
}

// PoolMember is an unclaimed instance of revision of template t, owned by the template until an
// instance claims it. It has the instance defaults but for the pool's database and username: a
// claim is only offered to instances that ask for nothing else.
func PoolMember(t *myaasv1.DatabaseTemplate, revision int32) *myaasv1.DatabaseInstance {
	labels := PoolMemberLabels(t.Name)
	labels[myaasv1.LabelManagedBy] = myaasv1.ManagedBy
	labels[myaasv1.LabelTemplate] = t.Name
	return &myaasv1.DatabaseInstance{
		TypeMeta: metav1.TypeMeta{APIVersion: myaasv1.GroupVersion.String(), Kind: "DatabaseInstance"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    PoolMemberPrefix(t.Name),
			Namespace:       t.Namespace,
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(t, myaasv1.GroupVersion.WithKind("DatabaseTemplate"))},
		},
		Spec: myaasv1.DatabaseInstanceSpec{
			TemplateRef: myaasv1.TemplateReference{Name: t.Name},
			Revision:    &revision,
			Database:    t.Spec.WarmPool.Database,
			Username:    t.Spec.WarmPool.Username,
		},
	}
}
