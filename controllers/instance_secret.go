package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
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

// reconcileSecret keeps the credentials Secret, the source of truth for the instance's passwords:
// created once with fresh ones, re-created with fresh ones if deleted, and when a user edits a
// password, the keys derived from it (uri, jdbc-uri, dsn) follow. The running server follows it
// too (reconcileReadiness). A Secret of that name that this instance does not own is never adopted.
func (r *DatabaseInstanceReconciler) reconcileSecret(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	name := builder.CredentialsSecretName(inst.Name)
	inst.Status.SecretName = name
	secret := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: name}, secret)
	if apierrors.IsNotFound(err) {
		return r.createSecret(ctx, s)
	}
	if err != nil {
		return nil, fmt.Errorf("get Secret %s: %w", name, err)
	}
	switch ownershipOf(secret, inst, instanceKind) {
	case stale:
		return r.waitForPreviousInstance(s, "Secret "+name)
	case foreign:
		return r.secretNotOwned(s, name)
	}

	passwords := builder.Passwords{Password: string(secret.Data[agentapi.SecretKeyPassword])}
	if err := r.fillPasswords(&passwords); err != nil {
		return nil, err
	}
	want := builder.CredentialsSecret(inst, s.src.engine, passwords)
	if err := r.withTLS(s, want); err != nil {
		return nil, err
	}
	keepLegacyRootPassword(ctx, r.Client, s, secret, want)
	if err := r.syncSecretData(ctx, secret, want); err != nil {
		return nil, err
	}
	s.secret = secret
	return nil, nil
}

func (r *DatabaseInstanceReconciler) createSecret(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	var passwords builder.Passwords
	if err := r.fillPasswords(&passwords); err != nil {
		return nil, err
	}
	secret := builder.CredentialsSecret(s.inst, s.src.engine, passwords)
	if err := r.withTLS(s, secret); err != nil {
		return nil, err
	}
	if err := r.Create(ctx, secret); apierrors.IsAlreadyExists(err) {
		return r.secretCreateRefused(ctx, s, secret.Name)
	} else if err != nil {
		return nil, fmt.Errorf("create Secret %s: %w", secret.Name, err)
	}
	s.secret = secret
	return nil, nil
}

// secretCreateRefused says what a Secret of the instance's that the cache did not show, yet the
// API server has, is. The cache holds only the operator's labelled objects: it may be one made a
// moment ago, or somebody else's, which is never adopted.
func (r *DatabaseInstanceReconciler) secretCreateRefused(ctx context.Context, s *instancePass, name string) (*ctrl.Result, error) {
	have := &corev1.Secret{}
	if err := r.reader().Get(ctx, client.ObjectKey{Namespace: s.inst.Namespace, Name: name}, have); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("get Secret %s: %w", name, err)
	} else if err == nil {
		switch ownershipOf(have, s.inst, instanceKind) {
		case stale:
			return r.waitForPreviousInstance(s, "Secret "+name)
		case foreign:
			return r.secretNotOwned(s, name)
		}
	}
	return stop(requeueSoon), nil
}

// fillPasswords generates the passwords that are missing: a user who empties one gets a new one.
func (r *DatabaseInstanceReconciler) fillPasswords(p *builder.Passwords) error {
	if p.Password != "" {
		return nil
	}
	generated, err := r.NewPassword()
	p.Password = generated
	return err
}

// secretNotOwned stops at a Secret of the instance's name that it does not own: never adopted.
func (r *DatabaseInstanceReconciler) secretNotOwned(s *instancePass, name string) (*ctrl.Result, error) {
	inst := s.inst
	inst.Status.Phase = myaasv1.InstanceFailed
	setConditionAndNotify(r.Recorder, inst, &inst.Status.Conditions, inst.Generation, notice{
		condType: myaasv1.ConditionReady, status: metav1.ConditionFalse, reason: myaasv1.ReasonSecretNotOwned,
		message:   fmt.Sprintf("Secret %s exists and is not owned by this instance; it is never adopted: delete or rename it", name),
		eventType: corev1.EventTypeWarning, event: EventSecretNotOwned,
	})
	return stop(30 * time.Second), nil
}

// syncSecretData makes have's data what want's StringData says, writing only when they differ.
func (r *DatabaseInstanceReconciler) syncSecretData(ctx context.Context, have, want *corev1.Secret) error {
	if sameData(have.Data, want.StringData) {
		return nil
	}
	have.Data = make(map[string][]byte, len(want.StringData))
	for k, v := range want.StringData {
		have.Data[k] = []byte(v)
	}
	if err := r.Update(ctx, have); err != nil {
		return fmt.Errorf("update Secret %s: %w", have.Name, err)
	}
	return nil
}

func sameData(have map[string][]byte, want map[string]string) bool {
	if len(have) != len(want) {
		return false
	}
	for k, v := range want {
		if !bytes.Equal(have[k], []byte(v)) {
			return false
		}
	}
	return true
}

// waitForPreviousInstance ends the pass while the children of a deleted instance of the same
// name are being collected: the CI flow deletes an instance and re-creates it at once.
func (r *DatabaseInstanceReconciler) waitForPreviousInstance(s *instancePass, what string) (*ctrl.Result, error) {
	inst := s.inst
	inst.Status.Phase = myaasv1.InstancePending
	setCondition(&inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonWaitingForPreviousInstance,
		fmt.Sprintf("%s belongs to a deleted instance of the same name: waiting for it to be removed", what))
	return stop(250 * time.Millisecond), nil
}
