package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func TestOwnershipOf(t *testing.T) {
	owner := &metav1.ObjectMeta{Name: "alice", UID: "uid-now"}
	ref := func(kind, name, uid string, controller bool) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "myaas.io/v1alpha1", Kind: kind, Name: name, UID: k8stypes.UID(uid), Controller: ptr.To(controller)}
	}
	cases := []struct {
		name string
		refs []metav1.OwnerReference
		want ownership
	}{
		{"controlled by this object", []metav1.OwnerReference{ref("DatabaseInstance", "alice", "uid-now", true)}, owned},
		{"left by an earlier object of the same name", []metav1.OwnerReference{ref("DatabaseInstance", "alice", "uid-before", true)}, stale},
		{"controlled by another instance", []metav1.OwnerReference{ref("DatabaseInstance", "bob", "uid-bob", true)}, foreign},
		{"same name, another kind", []metav1.OwnerReference{ref("DatabaseTemplate", "alice", "uid-t", true)}, foreign},
		{"created by a user", nil, foreign},
		{"owned but not controlled", []metav1.OwnerReference{ref("DatabaseInstance", "alice", "uid-now", false)}, foreign},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			child := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", OwnerReferences: tc.refs}}
			if got := ownershipOf(child, owner, "DatabaseInstance"); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestEnsureChild(t *testing.T) {
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "dev", UID: "uid-now"}}
	controlledBy := func(name, uid string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "myaas.io/v1alpha1", Kind: "DatabaseInstance", Name: name, UID: k8stypes.UID(uid), Controller: ptr.To(true)}}
	}
	want := func() *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev", OwnerReferences: controlledBy("alice", "uid-now")},
			StringData: map[string]string{"password": "new"}}
	}
	cases := []struct {
		name     string
		existing *corev1.Secret
		want     ownership
		kept     string // the password of the object that exists afterwards
	}{
		{"created when missing", nil, owned, "new"},
		{"found again after a restart", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev", OwnerReferences: controlledBy("alice", "uid-now")},
			Data: map[string][]byte{"password": []byte("mine")}}, owned, "mine"},
		{"left by a deleted instance of the same name", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev", OwnerReferences: controlledBy("alice", "uid-before")},
			Data: map[string][]byte{"password": []byte("old")}}, stale, "old"},
		{"made by a user", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev"},
			Data: map[string][]byte{"password": []byte("users")}}, foreign, "users"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := fake.NewClientBuilder()
			if tc.existing != nil {
				b = b.WithObjects(tc.existing)
			}
			c := b.Build()
			got, err := ensureChild(context.Background(), c, nil, owner, "DatabaseInstance", want(), &corev1.Secret{})
			if err != nil || got != tc.want {
				t.Fatalf("ownership %s, %v; want %s", got, err, tc.want)
			}
			s := &corev1.Secret{}
			if err := c.Get(context.Background(), client.ObjectKey{Namespace: "dev", Name: "alice-credentials"}, s); err != nil {
				t.Fatal(err)
			}
			password := string(s.Data["password"])
			if password == "" {
				password = s.StringData["password"] // the fake client keeps StringData as written
			}
			if password != tc.kept {
				t.Fatalf("password %q afterwards, want %q: an existing object was overwritten", password, tc.kept)
			}
		})
	}
}

// An object the cache has not seen yet (made a moment ago) is neither created twice nor adopted
// unseen: ensureChild says to look again.
func TestEnsureChildNotYetInTheCache(t *testing.T) {
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "dev", UID: "uid-now"}}
	made := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev"}}
	lagging := fake.NewClientBuilder().WithObjects(made).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return apierrors.NewNotFound(corev1.Resource("secrets"), "alice-credentials")
		},
	}).Build()
	want := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev"}}
	if got, err := ensureChild(context.Background(), lagging, nil, owner, "DatabaseInstance", want, &corev1.Secret{}); err != nil || got != pending {
		t.Fatalf("ownership %s, %v; want pending", got, err)
	}
}

// The cache holds only the operator's labelled objects: a user's object of the child's name is
// never in it, and the API server, asked once the create is refused, shows it is foreign.
func TestEnsureChildSeesAForeignObjectTheCacheLeavesOut(t *testing.T) {
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "dev", UID: "uid-now"}}
	users := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev"}}
	live := fake.NewClientBuilder().WithObjects(users).Build()
	cache := fake.NewClientBuilder().WithObjects(users.DeepCopy()).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return apierrors.NewNotFound(corev1.Resource("secrets"), "alice-credentials")
		},
	}).Build()
	want := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev"}}
	if got, err := ensureChild(context.Background(), cache, live, owner, "DatabaseInstance", want, &corev1.Secret{}); err != nil || got != foreign {
		t.Fatalf("ownership %s, %v; want foreign", got, err)
	}
}
