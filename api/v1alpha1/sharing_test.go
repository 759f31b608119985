package v1alpha1

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSharesWith(t *testing.T) {
	byLabel := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}
	for _, tc := range []struct {
		name    string
		sharing *SharingSpec
		ns      string
		labels  map[string]string
		want    bool
		wantErr bool
	}{
		{name: "its own namespace, nothing shared", ns: "shared", want: true},
		{name: "another namespace, nothing shared", ns: "dev-a", want: false},
		{name: "listed", sharing: &SharingSpec{Namespaces: []string{"dev-b", "dev-a"}}, ns: "dev-a", want: true},
		{name: "not listed", sharing: &SharingSpec{Namespaces: []string{"dev-b"}}, ns: "dev-a", want: false},
		{name: "selected", sharing: &SharingSpec{NamespaceSelector: byLabel}, ns: "ci-1", labels: map[string]string{"team": "shop"}, want: true},
		{name: "not selected", sharing: &SharingSpec{NamespaceSelector: byLabel}, ns: "ci-1", labels: map[string]string{"team": "crm"}, want: false},
		{name: "empty selector selects every namespace", sharing: &SharingSpec{NamespaceSelector: &metav1.LabelSelector{}}, ns: "any", want: true},
		{name: "an empty sharing shares nothing", sharing: &SharingSpec{}, ns: "dev-a", want: false},
		{
			name:    "a bad selector is an error",
			sharing: &SharingSpec{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Near"}}}},
			ns:      "dev-a", wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := &DatabaseTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "shared", Name: "shop"}, Spec: DatabaseTemplateSpec{Sharing: tc.sharing}}
			got, err := tmpl.SharesWith(tc.ns, tc.labels)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("SharesWith(%s, %v) = %v, %v; want %v (error %v)", tc.ns, tc.labels, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestServerNameIsTheClaimedMemberOrTheInstance(t *testing.T) {
	for _, tc := range []struct {
		name         string
		provisioning *Provisioning
		want         string
	}{
		{"not provisioned yet", nil, "pr-12"},
		{"cold", &Provisioning{Path: ProvisionedCold, Reason: "spec.idle is set"}, "pr-12"},
		{"claimed", &Provisioning{Path: ProvisionedFromPool, PoolMember: "shop-pool-x7k2p"}, "shop-pool-x7k2p"},
	} {
		inst := &DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Name: "pr-12"}, Status: DatabaseInstanceStatus{Provisioning: tc.provisioning}}
		if got := inst.ServerName(); got != tc.want {
			t.Errorf("%s: ServerName %q, want %q", tc.name, got, tc.want)
		}
	}
}
