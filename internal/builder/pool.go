package builder

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// PoolMemberName is the n-th member a template's warm pool made; numbers are never reused.
func PoolMemberName(template string, n int64) string { return fmt.Sprintf("%s-pool-%d", template, n) }

// PoolMemberLabels find a template's unclaimed pool members.
func PoolMemberLabels(template string) map[string]string {
	return map[string]string{myaasv1.LabelPool: template, myaasv1.LabelPoolState: myaasv1.PoolAvailable}
}

// PoolMember is an unclaimed instance of revision of template t, owned by the template until an
// instance claims it. It has the instance defaults but for the pool's database and username: a
// claim is only offered to instances that ask for nothing else.
func PoolMember(t *myaasv1.DatabaseTemplate, n int64, revision int32) *myaasv1.DatabaseInstance {
	labels := PoolMemberLabels(t.Name)
	labels[myaasv1.LabelManagedBy] = myaasv1.ManagedBy
	labels[myaasv1.LabelTemplate] = t.Name
	return &myaasv1.DatabaseInstance{
		TypeMeta: metav1.TypeMeta{APIVersion: myaasv1.GroupVersion.String(), Kind: "DatabaseInstance"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            PoolMemberName(t.Name, n),
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
