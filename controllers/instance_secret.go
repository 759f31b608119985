package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	secret, made, res, err := ensureInstanceChild(ctx, r, s, client.ObjectKey{Namespace: inst.Namespace, Name: name}, &corev1.Secret{},
		func() (*corev1.Secret, error) { return r.credentialsSecret(s, builder.Passwords{}) })
	if res != nil || err != nil {
		return res, err
	}
	if !made {
		want, err := r.credentialsSecret(s, builder.Passwords{Password: string(secret.Data[agentapi.SecretKeyPassword])})
		if err != nil {
			return nil, err
		}
		keepLegacyRootPassword(ctx, r.Client, r.reader(), s, secret, want)
		if err := r.syncSecretData(ctx, secret, want); err != nil {
			return nil, err
		}
	}
	s.secret = secret
	return nil, nil
}

// credentialsSecret is the credentials Secret with the given passwords, the missing ones generated.
func (r *DatabaseInstanceReconciler) credentialsSecret(s *instancePass, passwords builder.Passwords) (*corev1.Secret, error) {
	if err := r.fillPasswords(&passwords); err != nil {
		return nil, err
	}
	secret := builder.CredentialsSecret(s.inst, s.src.engine, passwords)
	if err := r.withTLS(s, secret); err != nil {
		return nil, err
	}
	return secret, nil
}

// ensureInstanceChild creates the instance's child named key unless it exists (ensureChild), and
// ends the pass at one the instance may not use: one the cache has not seen yet is looked at again
// soon, one of a deleted instance of the same name is waited out, and anyone else's is refused,
// never adopted. made says this call created it.
func ensureInstanceChild[P client.Object](ctx context.Context, r *DatabaseInstanceReconciler, s *instancePass, key client.ObjectKey, blank P,
	build func() (P, error)) (obj P, made bool, res *ctrl.Result, err error) {
	obj, made, own, err := ensureChild(ctx, r.Client, r.reader(), key, blank, controlledBy(s.inst, instanceKind), build)
	if err != nil || own == owned {
		return obj, made, nil, err
	}
	res, err = r.refuseChild(s, own, kindName(r.Client, obj, key))
	return obj, false, res, err
}

// refuseChild ends the pass at a child of the instance's name that it may not use, named by what
// ("Secret alice-credentials").
func (r *DatabaseInstanceReconciler) refuseChild(s *instancePass, own ownership, what string) (*ctrl.Result, error) {
	switch own {
	case pending:
		return stop(requeueSoon), nil
	case stale:
		return r.waitForPreviousInstance(s, what)
	}
	return r.notOwned(s, what)
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

// notOwned stops at a Secret (or the Certificate behind one) of the instance's name that it does
// not own, named by what: never adopted.
func (r *DatabaseInstanceReconciler) notOwned(s *instancePass, what string) (*ctrl.Result, error) {
	inst := s.inst
	inst.Status.Phase = myaasv1.InstanceFailed
	setConditionAndNotify(r.Recorder, inst, &inst.Status.Conditions, inst.Generation, notice{
		condType: myaasv1.ConditionReady, status: metav1.ConditionFalse, reason: myaasv1.ReasonSecretNotOwned,
		message:   what + " exists and is not owned by this instance; it is never adopted: delete or rename it",
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
