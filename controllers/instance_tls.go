package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
	"github.com/myaas/myaas/internal/pki"
)

// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;create

// certificatePoll paces the wait for cert-manager, whose Secret the operator does not watch.
const certificatePoll = 2 * time.Second

// reconcileTLS gives the instance its server certificate, in the Secret its pod mounts: issued by
// the namespace's CA (made on first need) and renewed at two thirds of its life, or by cert-manager
// when spec.tls.issuerRef names an issuer. The agent has the running server load a certificate
// issued anew once the kubelet refreshes the mounted Secret: no server is restarted for it.
func (r *DatabaseInstanceReconciler) reconcileTLS(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	plain, err := r.startedWithoutTLS(ctx, inst)
	if err != nil {
		return nil, err
	}
	s.plainServer = plain
	if inst.Spec.TLS != nil && inst.Spec.TLS.IssuerRef != nil {
		return r.reconcileCertManagerTLS(ctx, s)
	}
	ca, res, err := r.namespaceCA(ctx, inst)
	if res != nil || err != nil {
		return res, err
	}
	now := r.Clock.Now()
	names := builder.ServiceDNSNames(inst)
	name := builder.TLSSecretName(inst.Name)
	issue := func() (*corev1.Secret, error) {
		server, err := pki.IssueServer(ca, names, now)
		if err != nil {
			return nil, fmt.Errorf("issue the certificate of %s: %w", inst.Name, err)
		}
		return builder.InstanceTLSSecret(inst, server, ca.CertPEM), nil
	}
	have, made, res, err := ensureInstanceChild(ctx, r, s, client.ObjectKey{Namespace: inst.Namespace, Name: name}, &corev1.Secret{}, issue)
	if res != nil || err != nil {
		return res, err
	}
	if !made {
		if err := r.renewIfNeeded(ctx, inst, have, ca, names, now, issue); err != nil {
			return nil, err
		}
	}
	if cert, err := pki.ParseCert(have.Data[agentapi.TLSCertKey]); err == nil {
		s.wakeIn(pki.RenewAt(cert).Sub(now) + time.Second)
	}
	s.tlsCA = ca.CertPEM
	return nil, nil
}

// renewIfNeeded issues the certificate in have anew when it no longer fits: expiring, for other
// names, or from another CA.
func (r *DatabaseInstanceReconciler) renewIfNeeded(ctx context.Context, inst *myaasv1.DatabaseInstance, have *corev1.Secret, ca pki.KeyPair,
	names []string, now time.Time, issue func() (*corev1.Secret, error)) error {
	pair := pki.KeyPair{CertPEM: have.Data[agentapi.TLSCertKey], KeyPEM: have.Data[agentapi.TLSPrivateKeyKey]}
	problem := pki.ServerCertProblem(pair, ca.CertPEM, names, now)
	if problem == "" && pki.SameCert(have.Data[agentapi.TLSCAKey], ca.CertPEM) {
		return nil
	}
	want, err := issue()
	if err != nil {
		return err
	}
	have.Data = want.Data
	if err := r.Update(ctx, have); err != nil {
		return fmt.Errorf("renew the certificate in Secret %s: %w", have.Name, err)
	}
	if problem == "" {
		problem = "the CA changed"
	}
	r.Recorder.Eventf(inst, corev1.EventTypeNormal, EventCertificateIssued,
		"Certificate in Secret %s issued anew (%s); the server loads it once the kubelet refreshes the mounted Secret", have.Name, problem)
	return nil
}

// startedWithoutTLS: the instance's StatefulSet was made before the operator issued certificates.
// Its server is left as it is, and its Secret keeps plain URIs, until a reset recreates it.
func (r *DatabaseInstanceReconciler) startedWithoutTLS(ctx context.Context, inst *myaasv1.DatabaseInstance) (bool, error) {
	sts := &appsv1.StatefulSet{}
	err := r.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: inst.Name}, sts)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get StatefulSet %s: %w", inst.Name, err)
	}
	if ownershipOf(sts, inst, instanceKind) != owned || len(sts.Spec.Template.Spec.Containers) == 0 {
		return false, nil
	}
	return !builder.ServesTLS(sts.Spec.Template.Spec.Containers[0].Args), nil
}

// namespaceCA returns the operator's CA of the instance's namespace, making it on first need.
// A Secret of that name without the operator's labels is never used nor overwritten.
func (r *DatabaseInstanceReconciler) namespaceCA(ctx context.Context, inst *myaasv1.DatabaseInstance) (pki.KeyPair, *ctrl.Result, error) {
	key := client.ObjectKey{Namespace: inst.Namespace, Name: builder.CASecretName}
	var made pki.KeyPair
	// Instances of the namespace reconciled side by side: the API server keeps the first CA, and
	// the others look again (pending). One of that name without the operator's labels is seen only
	// by the API server, and is refused, not collided with.
	secret, created, own, err := ensureChild(ctx, r.Client, r.reader(), key, &corev1.Secret{}, labelled(builder.CALabels()), func() (*corev1.Secret, error) {
		ca, err := pki.NewCA("myaas CA "+inst.Namespace, r.Clock.Now())
		if err != nil {
			return nil, fmt.Errorf("make the CA of namespace %s: %w", inst.Namespace, err)
		}
		made = ca
		return builder.CASecret(inst.Namespace, ca), nil
	})
	switch {
	case err != nil:
		return pki.KeyPair{}, nil, err
	case created:
		return made, nil, nil
	case own == pending:
		return pki.KeyPair{}, stop(requeueSoon), nil
	case own != owned:
		k, v, _ := missingLabel(secret, builder.CALabels())
		return pki.KeyPair{}, r.caNotUsable(inst, fmt.Sprintf("Secret %s exists without the label %s=%s: it is not the operator's CA and is never used; rename it, or delete it to let the operator make one",
			builder.CASecretName, k, v)), nil
	}
	ca := pki.KeyPair{CertPEM: secret.Data[agentapi.TLSCertKey], KeyPEM: secret.Data[agentapi.TLSPrivateKeyKey]}
	if err := pki.ValidCA(ca, r.Clock.Now()); err != nil {
		return pki.KeyPair{}, r.caNotUsable(inst, fmt.Sprintf("Secret %s holds no usable CA (%v): delete it and the operator makes a new one, then issues every instance of the namespace a new certificate",
			builder.CASecretName, err)), nil
	}
	return ca, nil, nil
}

func (r *DatabaseInstanceReconciler) caNotUsable(inst *myaasv1.DatabaseInstance, msg string) *ctrl.Result {
	inst.Status.Phase = myaasv1.InstanceFailed
	setConditionAndNotify(r.Recorder, inst, &inst.Status.Conditions, inst.Generation, notice{
		condType: myaasv1.ConditionReady, status: metav1.ConditionFalse, reason: myaasv1.ReasonCANotUsable,
		message: msg, eventType: corev1.EventTypeWarning, event: EventCANotUsable,
	})
	return stop(30 * time.Second)
}

// reconcileCertManagerTLS asks cert-manager for the certificate and waits for the Secret it
// writes. cert-manager renews it; the operator gives the Secret an owner reference to the
// instance, so that it goes with the instance as the operator's own Secrets do.
func (r *DatabaseInstanceReconciler) reconcileCertManagerTLS(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	want := builder.Certificate(inst)
	blank := &unstructured.Unstructured{}
	blank.SetGroupVersionKind(want.GroupVersionKind())
	_, _, own, err := ensureChild(ctx, r.Client, r.reader(), client.ObjectKeyFromObject(want), blank, controlledBy(inst, instanceKind),
		func() (*unstructured.Unstructured, error) { return want, nil })
	switch {
	case meta.IsNoMatchError(err):
		return r.waitForCertificate(inst, "cert-manager is not installed (no Certificate kind in cert-manager.io/v1), yet spec.tls.issuerRef names an issuer")
	case err != nil:
		return nil, err
	case own == stale || own == foreign:
		// One made a moment ago (pending) is waited for below, with the Secret cert-manager writes.
		return r.refuseChild(s, own, "Certificate "+want.GetName())
	}

	name := builder.TLSSecretName(inst.Name)
	secret := &corev1.Secret{}
	err = r.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: name}, secret)
	if apierrors.IsNotFound(err) || (err == nil && (len(secret.Data[agentapi.TLSCertKey]) == 0 || len(secret.Data[agentapi.TLSPrivateKeyKey]) == 0)) {
		ref := inst.Spec.TLS.IssuerRef
		return r.waitForCertificate(inst, fmt.Sprintf("waiting for cert-manager to issue Certificate %s (issuer %s %s) into Secret %s", want.GetName(), kindOf(ref), ref.Name, name))
	}
	if err != nil {
		return nil, fmt.Errorf("get Secret %s: %w", name, err)
	}
	if !ownedBy(secret, inst) {
		patched := secret.DeepCopy()
		owner := *metav1.NewControllerRef(inst, myaasv1.GroupVersion.WithKind(instanceKind))
		owner.Controller = nil // cert-manager may make its Certificate the controller
		patched.OwnerReferences = append(patched.OwnerReferences, owner)
		if err := r.Update(ctx, patched); err != nil {
			return nil, fmt.Errorf("give Secret %s an owner reference to its instance: %w", name, err)
		}
	}
	s.tlsCA = secret.Data[agentapi.TLSCAKey]
	return nil, nil
}

func kindOf(ref *myaasv1.IssuerReference) string {
	if ref.Kind == "" {
		return "Issuer"
	}
	return ref.Kind
}

func ownedBy(obj metav1.Object, inst *myaasv1.DatabaseInstance) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == inst.UID {
			return true
		}
	}
	return false
}

func (r *DatabaseInstanceReconciler) waitForCertificate(inst *myaasv1.DatabaseInstance, msg string) (*ctrl.Result, error) {
	inst.Status.Phase = myaasv1.InstancePending
	setCondition(&inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonWaitingForCertificate, msg)
	return stop(certificatePoll), nil
}

// serverTLS is how the operator's own logins reach the instance: TLS verified against the
// instance's CA for the Service's name, whatever address the login dials (a cluster IP, or a
// pod IP). nil for a server started without a certificate.
func serverTLS(s *instancePass) *tls.Config {
	if s.plainServer {
		return nil
	}
	cfg := &tls.Config{ServerName: builder.ServiceHost(s.inst), MinVersion: tls.VersionTLS12}
	if len(s.tlsCA) > 0 {
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(s.tlsCA)
	}
	return cfg
}

// withTLS makes the credentials Secret of a server that speaks TLS ask for it, with the CA.
func (r *DatabaseInstanceReconciler) withTLS(s *instancePass, secret *corev1.Secret) error {
	if s.plainServer {
		return nil
	}
	return builder.WithTLS(secret, s.src.engine, s.tlsCA)
}
