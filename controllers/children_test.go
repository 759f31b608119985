package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
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
