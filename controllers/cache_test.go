package controllers

import (
	"context"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func TestNamespaces(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "team-a", want: []string{"team-a"}},
		{in: " team-a, team-b,,team-a ", want: []string{"team-a", "team-b"}},
		{in: "Team_A", wantErr: true},
	} {
		got, err := Namespaces(tc.in)
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Namespaces(%q) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestCacheHoldsOnlyTheOperatorsObjects: the manager's client answers from a cache of the
// operator's own objects in the watched namespaces; other Secrets are not in it, yet what the
// operator reads by name without owning it (a PersistentVolume) still reads through.
func TestCacheHoldsOnlyTheOperatorsObjects(t *testing.T) {
	requireEnv(t)
	watched, other := newNamespace(t), newNamespace(t)
	mgr, err := ctrl.NewManager(testConfig, ctrl.Options{
		Scheme:                 testScheme,
		Cache:                  CacheOptions([]string{watched}, false),
		Client:                 ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	own := map[string]string{myaasv1.LabelManagedBy: myaasv1.ManagedBy}
	secret := func(ns, name string, labels map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
		if err := k8s.Create(bg, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	secret(watched, "foreign", nil)
	secret(watched, "mine", own)
	secret(other, "mine-elsewhere", own)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "cache-test-"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp"}},
		},
	}
	if err := k8s.Create(bg, pv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(bg, pv) })

	c := mgr.GetClient()
	key := func(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
	eventually(t, 10*time.Second, "the operator's Secret in the cache", func() error {
		return c.Get(bg, key(watched, "mine"), &corev1.Secret{})
	})
	if err := c.Get(bg, key(watched, "foreign"), &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Secret without %s: got %v from the cache, want not found", myaasv1.LabelManagedBy, err)
	}
	list := &corev1.SecretList{}
	if err := c.List(bg, list, client.InNamespace(watched)); err != nil || len(list.Items) != 1 || list.Items[0].Name != "mine" {
		t.Errorf("listing Secrets: %v %v; want only the operator's", names(list.Items), err)
	}
	if err := c.Get(bg, key(other, "mine-elsewhere"), &corev1.Secret{}); err == nil {
		t.Errorf("a Secret in an unwatched namespace came from the cache")
	}
	// The API reader still finds what the cache leaves out, as the source PVC check does.
	if err := mgr.GetAPIReader().Get(bg, key(watched, "foreign"), &corev1.Secret{}); err != nil {
		t.Errorf("the API reader: %v", err)
	}
	// PersistentVolumes are read by name straight from the API server: no wait for a cache.
	if err := c.Get(bg, key("", pv.Name), &corev1.PersistentVolume{}); err != nil {
		t.Errorf("get the PersistentVolume: %v", err)
	}
}

func names(secrets []corev1.Secret) []string {
	var out []string
	for _, s := range secrets {
		out = append(out, s.Name)
	}
	return out
}
