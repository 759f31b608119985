package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ownership is how an existing child relates to the object reconciling it.
type ownership int

const (
	// owned: its controller reference names this very object (by UID).
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

// ensureChild creates want unless an object of its name exists, and says whether the one that
// exists now may be used: a restarted manager finds the children it created before (owned), while
// the children of an earlier object of the same name (stale) or of nobody (foreign) are never
// adopted. existing receives the object as it is, when it may be read. The cache is asked first:
// steps run on every pass, and a create that the API server refuses as a duplicate is a round trip
// on every one of them. The cache holds only objects carrying the operator's labels: when the
// create is refused, live (the API server, if not nil) tells a foreign object of that name, which
// the cache never shows, from one of the operator's that the cache has not seen yet (pending).
func ensureChild(ctx context.Context, c client.Client, live client.Reader, owner metav1.Object, ownerKind string, want, existing client.Object) (ownership, error) {
	err := c.Get(ctx, client.ObjectKeyFromObject(want), existing)
	if err == nil {
		return ownershipOf(existing, owner, ownerKind), nil
	}
	if !apierrors.IsNotFound(err) {
		return foreign, fmt.Errorf("get %T %s: %w", want, want.GetName(), err)
	}
	if err := c.Create(ctx, want); apierrors.IsAlreadyExists(err) {
		if live == nil {
			return pending, nil
		}
		if err := live.Get(ctx, client.ObjectKeyFromObject(want), existing); err != nil {
			return pending, client.IgnoreNotFound(err)
		}
		if own := ownershipOf(existing, owner, ownerKind); own != owned {
			return own, nil
		}
		return pending, nil
	} else if err != nil {
		return foreign, fmt.Errorf("create %T %s: %w", want, want.GetName(), err)
	}
	return owned, nil
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
