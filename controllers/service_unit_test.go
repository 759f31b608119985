package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
	"github.com/myaas/myaas/internal/engine"
)

func TestServiceIsAppliedOnlyWhenItDiffers(t *testing.T) {
	inst := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "ci-42", Namespace: "team", UID: types.UID("uid-42")},
		Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: "shop"}},
	}
	member := inst.DeepCopy()
	member.Name, member.UID = "shop-pool-x7", "uid-member"
	eng := engine.MariaDB{}
	want := builder.InstanceService(inst, eng)
	// As the API server returns it: a UID, a cluster IP and defaults the operator never sets.
	served := func(mutate ...func(*corev1.Service)) *corev1.Service {
		s := want.DeepCopy()
		s.UID = "svc-uid"
		s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.96.0.17", []string{"10.96.0.17"}
		s.Spec.SessionAffinity = corev1.ServiceAffinityNone
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		s.Labels["team"] = "payments" // added by a user: the operator leaves it
		for _, m := range mutate {
			m(s)
		}
		return s
	}
	cases := []struct {
		name string
		want *corev1.Service
		have *corev1.Service
		same bool
	}{
		{"none yet", want, &corev1.Service{}, false},
		{"as applied, with the server's defaults", want, served(), true},
		{"claimed: the selector moves to the member's pod", builder.ClaimedInstanceService(inst, member, eng), served(), false},
		{"a label removed", want, served(func(s *corev1.Service) { delete(s.Labels, myaasv1.LabelInstance) }), false},
		{"type changed", want, served(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }), false},
		{"port changed", want, served(func(s *corev1.Service) { s.Spec.Ports[0].Port = 3307 }), false},
		{"not ready addresses no longer published", want, served(func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = false }), false},
		{"another owner", want, served(func(s *corev1.Service) { s.OwnerReferences[0].UID = "uid-old" }), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := serviceUpToDate(tc.want, tc.have); got != tc.same {
				t.Fatalf("serviceUpToDate = %v, want %v", got, tc.same)
			}
		})
	}
}
