package controllers

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
)

// legacyRootPasswordKey is where instances made before the admin Secret kept root's password, in
// the user's Secret: the admin Secret takes it over, so their running servers keep working.
const legacyRootPasswordKey = "root-password"

// reconcileAdminSecret keeps the admin Secret, the operator's own: root's password, which works
// only through the pod's socket, and the password of the admin account the idle check logs in
// with. Created once; re-created with fresh passwords if deleted, which the agent in the pod
// applies as it does the user's; a password emptied by hand is generated anew. It runs before
// reconcileSecret, which then drops the legacy root-password key from the user's Secret.
func (r *DatabaseInstanceReconciler) reconcileAdminSecret(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	key := client.ObjectKey{Namespace: inst.Namespace, Name: builder.AdminSecretName(inst.Name)}
	secret, made, res, err := ensureInstanceChild(ctx, r, s, key, &corev1.Secret{}, func() (*corev1.Secret, error) {
		return r.adminSecret(s, builder.AdminPasswords{RootPassword: r.legacyRootPassword(ctx, s)})
	})
	if res != nil || err != nil {
		return res, err
	}
	if !made {
		want, err := r.adminSecret(s, builder.AdminPasswords{
			Password:     string(secret.Data[agentapi.AdminKeyPassword]),
			RootPassword: string(secret.Data[agentapi.AdminKeyRootPassword]),
		})
		if err != nil {
			return nil, err
		}
		if err := r.syncSecretData(ctx, secret, want); err != nil {
			return nil, err
		}
	}
	s.adminSecret = secret
	return nil, nil
}

// adminSecret is the admin Secret with the given passwords, the missing ones generated.
func (r *DatabaseInstanceReconciler) adminSecret(s *instancePass, passwords builder.AdminPasswords) (*corev1.Secret, error) {
	if err := r.fillAdminPasswords(&passwords); err != nil {
		return nil, err
	}
	return builder.AdminSecret(s.inst, passwords), nil
}

// legacyRootPassword is root's password in the user's Secret of an instance made before the
// admin Secret, or "".
func (r *DatabaseInstanceReconciler) legacyRootPassword(ctx context.Context, s *instancePass) string {
	user := &corev1.Secret{}
	key := client.ObjectKey{Namespace: s.inst.Namespace, Name: builder.CredentialsSecretName(s.inst.Name)}
	if err := r.Get(ctx, key, user); err != nil || ownershipOf(user, s.inst, instanceKind) != owned {
		return ""
	}
	return string(user.Data[legacyRootPasswordKey])
}

// keepLegacyRootPassword leaves root's password in the user's Secret of an instance whose pod
// predates the admin Secret: its agent reads root's password there at every start, until a
// reset moves it to the current pod. The idle check then logs in as root with it. Dropping it is
// for good, so a cache showing the pod with the admin Secret is confirmed with the API server
// first: one that has not yet seen the StatefulSet's last change would drop what the pod needs.
func keepLegacyRootPassword(ctx context.Context, cached, live client.Reader, s *instancePass, have, want *corev1.Secret) {
	legacy, ok := have.Data[legacyRootPasswordKey]
	if !ok {
		return
	}
	key, admin := client.ObjectKey{Namespace: s.inst.Namespace, Name: s.inst.Name}, builder.AdminSecretName(s.inst.Name)
	sts := &appsv1.StatefulSet{}
	if err := cached.Get(ctx, key, sts); err != nil || ownershipOf(sts, s.inst, instanceKind) != owned {
		return
	}
	if mountsSecret(sts, admin) {
		confirmed := &appsv1.StatefulSet{}
		if err := live.Get(ctx, key, confirmed); err == nil && mountsSecret(confirmed, admin) {
			return
		}
	}
	want.StringData[legacyRootPasswordKey] = string(legacy)
}

func mountsSecret(sts *appsv1.StatefulSet, name string) bool {
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
	}
	return false
}

func (r *DatabaseInstanceReconciler) fillAdminPasswords(p *builder.AdminPasswords) error {
	for _, pw := range []*string{&p.Password, &p.RootPassword} {
		if *pw != "" {
			continue
		}
		generated, err := r.NewPassword()
		if err != nil {
			return err
		}
		*pw = generated
	}
	return nil
}
