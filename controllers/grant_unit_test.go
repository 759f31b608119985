package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// A grant revoked a moment before an instance's first clone refuses it, even while the
// manager's cache still shows the template shared: the grant is confirmed with the API server.
func TestGrantIsConfirmedWithTheAPIServer(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := myaasv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	template := func(sharedWith ...string) *myaasv1.DatabaseTemplate {
		tmpl := &myaasv1.DatabaseTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "shared", Name: "shop"}}
		if len(sharedWith) > 0 {
			tmpl.Spec.Sharing = &myaasv1.SharingSpec{Namespaces: sharedWith}
		}
		return tmpl
	}
	inst := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "dev-b", Name: "late"},
		Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Namespace: "shared", Name: "shop"}},
	}
	cases := []struct {
		name         string
		cached, live *myaasv1.DatabaseTemplate // live nil: deleted
		wantRefused  bool
	}{
		{"shared in the cache and in the API server", template("dev-b"), template("dev-b"), false},
		{"revoked, the cache not told yet", template("dev-b"), template(), true},
		{"deleted, the cache not told yet", template("dev-b"), nil, true},
		{"not shared in the cache: refused without asking", template(), template("dev-b"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(scheme)
			if tc.live != nil {
				b = b.WithObjects(tc.live)
			}
			r := &DatabaseInstanceReconciler{APIReader: b.Build()}
			refused, err := r.checkGrant(context.Background(), inst, tc.cached, nil)
			if err != nil {
				t.Fatal(err)
			}
			if (refused != "") != tc.wantRefused {
				t.Fatalf("refused %q, want refused %v", refused, tc.wantRefused)
			}
		})
	}
}
