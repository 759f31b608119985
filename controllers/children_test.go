package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
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
	controlledByAlice := func(uid string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "myaas.io/v1alpha1", Kind: "DatabaseInstance", Name: "alice", UID: k8stypes.UID(uid), Controller: ptr.To(true)}}
	}
	secret := func(refs []metav1.OwnerReference, labels map[string]string, password string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev", OwnerReferences: refs, Labels: labels},
			Data: map[string][]byte{"password": []byte(password)}}
	}
	byOwner := controlledBy(owner, "DatabaseInstance")
	byLabel := labelled(map[string]string{"app.kubernetes.io/managed-by": "myaas", "myaas.io/role": "ca"})
	cases := []struct {
		name     string
		existing *corev1.Secret
		whose    func(client.Object) ownership
		want     ownership
		made     bool
		kept     string // the password of the object that exists afterwards
	}{
		{"created when missing", nil, byOwner, owned, true, "new"},
		{"found again after a restart", secret(controlledByAlice("uid-now"), nil, "mine"), byOwner, owned, false, "mine"},
		{"left by a deleted instance of the same name", secret(controlledByAlice("uid-before"), nil, "old"), byOwner, stale, false, "old"},
		{"made by a user", secret(nil, nil, "users"), byOwner, foreign, false, "users"},
		{"shared object carrying the operator's labels", secret(nil, map[string]string{"app.kubernetes.io/managed-by": "myaas", "myaas.io/role": "ca"}, "ca"), byLabel, owned, false, "ca"},
		{"shared object missing one of them", secret(nil, map[string]string{"app.kubernetes.io/managed-by": "myaas"}, "users"), byLabel, foreign, false, "users"},
		{"shared object created when missing", nil, byLabel, owned, true, "new"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := fake.NewClientBuilder()
			if tc.existing != nil {
				b = b.WithObjects(tc.existing)
			}
			c := b.Build()
			built := 0
			got, made, own, err := ensureChild(context.Background(), c, nil, client.ObjectKey{Namespace: "dev", Name: "alice-credentials"}, &corev1.Secret{}, tc.whose,
				func() (*corev1.Secret, error) {
					built++
					return secret(controlledByAlice("uid-now"), nil, "new"), nil
				})
			if err != nil || own != tc.want || made != tc.made {
				t.Fatalf("ownership %s, made %t, %v; want %s, made %t", own, made, err, tc.want, tc.made)
			}
			if wantBuilt := map[bool]int{true: 1, false: 0}[tc.made]; built != wantBuilt {
				t.Fatalf("built %d times, want %d: a build issues certificates or passwords, only when nothing exists", built, wantBuilt)
			}
			if string(got.Data["password"]) != tc.kept {
				t.Fatalf("returned password %q, want %q", got.Data["password"], tc.kept)
			}
			s := &corev1.Secret{}
			if err := c.Get(context.Background(), client.ObjectKey{Namespace: "dev", Name: "alice-credentials"}, s); err != nil {
				t.Fatal(err)
			}
			if password := string(s.Data["password"]); password != tc.kept {
				t.Fatalf("password %q afterwards, want %q: an existing object was overwritten", password, tc.kept)
			}
		})
	}
}

// A build that fails creates nothing and says why.
func TestEnsureChildBuildFails(t *testing.T) {
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "dev", UID: "uid-now"}}
	c := fake.NewClientBuilder().Build()
	key := client.ObjectKey{Namespace: "dev", Name: "alice-tls"}
	_, made, _, err := ensureChild(context.Background(), c, nil, key, &corev1.Secret{}, controlledBy(owner, "DatabaseInstance"),
		func() (*corev1.Secret, error) { return nil, errors.New("issue the certificate of alice: no entropy") })
	if err == nil || made || !strings.Contains(err.Error(), "no entropy") {
		t.Fatalf("made %t, %v; want the build's error", made, err)
	}
	if err := c.Get(context.Background(), key, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after a failed build: %v, want not found", err)
	}
}

// An object the cache has not seen yet (made a moment ago) is neither created twice nor adopted
// unseen: ensureChild says to look again.
func TestEnsureChildNotYetInTheCache(t *testing.T) {
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "dev", UID: "uid-now"}}
	made := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev"}}
	if got := ensureBehindLaggingCache(t, owner, made, nil); got != pending {
		t.Fatalf("ownership %s; want pending", got)
	}
}

// The cache holds only the operator's labelled objects: a user's object of the child's name is
// never in it, and the API server, asked once the create is refused, shows it is foreign, though
// the object that was to be created names the owner.
func TestEnsureChildSeesAForeignObjectTheCacheLeavesOut(t *testing.T) {
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "dev", UID: "uid-now"}}
	users := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-credentials", Namespace: "dev"}}
	if got := ensureBehindLaggingCache(t, owner, users, fake.NewClientBuilder().WithObjects(users.DeepCopy()).Build()); got != foreign {
		t.Fatalf("ownership %s; want foreign", got)
	}
}

// ensureBehindLaggingCache runs ensureChild with a cache that does not show have, which the API
// server (the client's store, and live when not nil) holds.
func ensureBehindLaggingCache(t *testing.T, owner metav1.Object, have *corev1.Secret, live client.Reader) ownership {
	t.Helper()
	cache := fake.NewClientBuilder().WithObjects(have).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return apierrors.NewNotFound(corev1.Resource("secrets"), have.Name)
		},
	}).Build()
	want := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: have.Name, Namespace: have.Namespace,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "myaas.io/v1alpha1", Kind: "DatabaseInstance", Name: "alice", UID: "uid-now", Controller: ptr.To(true)}}}}
	_, made, own, err := ensureChild(context.Background(), cache, live, client.ObjectKeyFromObject(have), &corev1.Secret{}, controlledBy(owner, "DatabaseInstance"),
		func() (*corev1.Secret, error) { return want, nil })
	if err != nil || made {
		t.Fatalf("made %t, %v", made, err)
	}
	return own
}

// A child the instance may not use ends the pass, and what the user sees says why: a Secret of
// somebody else's is refused for good, one of a deleted instance of the same name is waited out.
func TestRefuseChild(t *testing.T) {
	cases := []struct {
		own       ownership
		requeue   time.Duration
		phase     myaasv1.InstancePhase
		reason    string
		wantEvent string
	}{
		{pending, requeueSoon, "", "", ""},
		{stale, 250 * time.Millisecond, myaasv1.InstancePending, myaasv1.ReasonWaitingForPreviousInstance, ""},
		{foreign, 30 * time.Second, myaasv1.InstanceFailed, myaasv1.ReasonSecretNotOwned, "Warning " + EventSecretNotOwned + " Secret alice-credentials exists and is not owned by this instance"},
	}
	for _, tc := range cases {
		t.Run(tc.own.String(), func(t *testing.T) {
			events := record.NewFakeRecorder(4)
			r := &DatabaseInstanceReconciler{Recorder: events}
			s := &instancePass{inst: &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "dev"}}}
			res, err := r.refuseChild(s, tc.own, "Secret alice-credentials")
			if err != nil || res == nil || res.RequeueAfter != tc.requeue {
				t.Fatalf("result %+v, %v; want the pass to end and look again in %s", res, err, tc.requeue)
			}
			if s.inst.Status.Phase != tc.phase {
				t.Fatalf("phase %q, want %q", s.inst.Status.Phase, tc.phase)
			}
			ready := meta.FindStatusCondition(s.inst.Status.Conditions, myaasv1.ConditionReady)
			switch {
			case tc.reason == "" && ready != nil:
				t.Fatalf("condition %+v set for an object made a moment ago", ready)
			case tc.reason != "" && (ready == nil || ready.Reason != tc.reason || !strings.Contains(ready.Message, "Secret alice-credentials")):
				t.Fatalf("Ready condition %+v, want reason %s naming the Secret", ready, tc.reason)
			}
			select {
			case e := <-events.Events:
				if tc.wantEvent == "" || !strings.HasPrefix(e, tc.wantEvent) {
					t.Fatalf("event %q, want %q", e, tc.wantEvent)
				}
			default:
				if tc.wantEvent != "" {
					t.Fatalf("no event, want %q", tc.wantEvent)
				}
			}
		})
	}
}
