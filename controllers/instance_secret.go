package controllers

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// passwordAlphabet avoids characters that need escaping in URIs, DSNs, shells and JDBC URLs.
const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

// RandomPassword makes a 24-character password (about 140 bits) from crypto/rand.
func RandomPassword() (string, error) {
	b := make([]byte, 24)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		b[i] = passwordAlphabet[n.Int64()]
	}
	return string(b), nil
}

// reconcileSecret creates the credentials Secret once. It is never rewritten: the password must
// stay the same across resets and manager restarts, and it is never logged.
func (r *DatabaseInstanceReconciler) reconcileSecret(ctx context.Context, inst *myaasv1.DatabaseInstance, src *revisionSource) error {
	name := builder.CredentialsSecretName(inst.Name)
	inst.Status.SecretName = name
	err := r.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: name}, &corev1.Secret{})
	if err == nil || !apierrors.IsNotFound(err) {
		return wrap(err, "get Secret %s", name)
	}
	password, err := r.NewPassword()
	if err != nil {
		return err
	}
	rootPassword, err := r.NewPassword()
	if err != nil {
		return err
	}
	secret := builder.CredentialsSecret(inst, src.engine, builder.Passwords{Password: password, RootPassword: rootPassword})
	if err := r.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Secret %s: %w", name, err)
	}
	return nil
}
