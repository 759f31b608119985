package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// ownership is how an existing child relates to the object reconciling it.
type ownership int

const (
	// owned: its controller reference names this very object (by UID), or for an object that no
	// single owner controls, it carries the operator's labels.
	owned ownership = iota
	// stale: it belongs to an earlier object of the same kind and name, deleted since; the garbage
	// collector removes it, and nothing of it may be reused meanwhile.
	stale
	// foreign: something else controls it, or nothing does.
	foreign
	// pending: it exists but is not in the cache yet (made a moment ago, most likely by this
	// controller); whose it is can be told on the next pass.
	pending
)

func (o ownership) String() string {
	return [...]string{"owned", "stale", "foreign", "pending"}[o]
}

// ownershipOf decides whether child may be used by owner. Names alone say nothing: an object
// deleted and re-created under the same name finds its predecessor's children still there.
func ownershipOf(child, owner metav1.Object, ownerKind string) ownership {
	ref := metav1.GetControllerOfNoCopy(child)
	switch {
	case ref == nil:
		return foreign
	case ref.UID == owner.GetUID():
		return owned
	case ref.Kind == ownerKind && ref.Name == owner.GetName():
		return stale
	}
	return foreign
}

// ensureChild creates the child named key unless an object of that name exists, and says whether
// the one that exists now may be used: whose judges it (owner references for most children, labels
// for objects no single owner controls). A restarted manager finds the children it created before
// (owned), while the children of an earlier object of the same name (stale) or of nobody (foreign)
// are never adopted. It reads into blank (an empty object of the child's type) and returns the
// object as it is, and made when this call created it. build makes the object to create, and is
// called only when none exists: some builds issue a certificate or generate passwords. The cache is asked first: steps run on every pass, and a
// create that the API server refuses as a duplicate is a round trip on every one of them. The
// cache holds only objects carrying the operator's labels: when the create is refused, live (the
// API server, if not nil) tells a foreign object of that name, which the cache never shows, from
// one of the operator's that the cache has not seen yet (pending).
func ensureChild[P client.Object](ctx context.Context, c client.Client, live client.Reader, key client.ObjectKey, blank P,
	whose func(client.Object) ownership, build func() (P, error)) (obj P, made bool, own ownership, err error) {
	// The API server's answer is decoded into a fresh object: decoding into one already filled
	// keeps the fields the answer leaves out, such as a built object's owner references.
	fresh := blank.DeepCopyObject().(P)
	obj = blank
	what := kindName(c, obj, key)
	err = c.Get(ctx, key, obj)
	if err == nil {
		return obj, false, whose(obj), nil
	}
	if !apierrors.IsNotFound(err) {
		return obj, false, foreign, fmt.Errorf("get %s: %w", what, err)
	}
	want, err := build()
	if err != nil {
		return obj, false, foreign, err
	}
	if err := c.Create(ctx, want); apierrors.IsAlreadyExists(err) {
		if live == nil {
			return obj, false, pending, nil
		}
		obj = fresh
		if err := live.Get(ctx, key, obj); apierrors.IsNotFound(err) {
			return obj, false, pending, nil
		} else if err != nil {
			return obj, false, pending, fmt.Errorf("get %s: %w", what, err)
		}
		if own := whose(obj); own != owned {
			return obj, false, own, nil
		}
		return obj, false, pending, nil
	} else if err != nil {
		return obj, false, foreign, fmt.Errorf("create %s: %w", what, err)
	}
	return want, true, owned, nil
}

// controlledBy judges a child by its controller reference (ownershipOf).
func controlledBy(owner metav1.Object, ownerKind string) func(client.Object) ownership {
	return func(child client.Object) ownership { return ownershipOf(child, owner, ownerKind) }
}

// labelled judges an object that no single owner controls (a namespace's CA, a copy shared by
// the instances of a namespace) by its labels: the operator's when it carries all of them.
func labelled(want map[string]string) func(client.Object) ownership {
	return func(child client.Object) ownership {
		if _, _, missing := missingLabel(child, want); missing {
			return foreign
		}
		return owned
	}
}

// missingLabel is a label of want that obj does not carry with its value, in a stable order.
func missingLabel(obj metav1.Object, want map[string]string) (key, value string, missing bool) {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if obj.GetLabels()[k] != want[k] {
			return k, want[k], true
		}
	}
	return "", "", false
}

// kindName names an object in messages: "Secret alice-credentials".
func kindName(c client.Client, obj client.Object, key client.ObjectKey) string {
	if gvk, err := apiutil.GVKForObject(obj, c.Scheme()); err == nil {
		return gvk.Kind + " " + key.Name
	}
	return fmt.Sprintf("%T %s", obj, key.Name)
}

// getChild reads a child from the cache, and when the cache has none, from live (the API server,
// if not nil). The cache holds only objects carrying the operator's labels: an object of the
// child's name that it does not show is somebody else's, and applying over it would adopt it.
func getChild(ctx context.Context, c client.Client, live client.Reader, key client.ObjectKey, obj client.Object) error {
	err := c.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && live != nil {
		return live.Get(ctx, key, obj)
	}
	return err
}

// liveOr is the API server's reader when the manager gave one, else the client (tests without a
// separate reader).
func liveOr(live client.Reader, c client.Client) client.Reader {
	if live != nil {
		return live
	}
	return c
}
