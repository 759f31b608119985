package builder

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/internal/pki"
)

// CASecretName is the Secret holding the operator's CA of a namespace. It belongs to no instance:
// every instance of the namespace is issued a certificate by it, and clients that trust it once
// verify them all.
const CASecretName = "myaas-ca"

// TLSSecretName is the instance's certificate Secret, and the cert-manager Certificate writing it.
func TLSSecretName(instance string) string { return instance + "-tls" }

// cert-manager's Certificate,, used without depending on cert-manager's module.
const (
	CertManagerGroup      = "cert-manager.io"
	CertificateAPIVersion = CertManagerGroup + "/v1"
	CertificateKind       = "Certificate"
)

const volumeTLS = "tls"

// ServiceDNSNames are the names the instance's certificate is issued for: those of its Service.
// An unclaimed warm pool member's also name every Service of its namespace: the instance that
// will claim it is not known when its server starts, and the claim must not wait for a new
// certificate to reach the running server through the kubelet. Once claimed, a member's names
// are its own and its claimant's, and the wildcard goes at the next load.
func ServiceDNSNames(inst *myaasv1.DatabaseInstance) []string {
	names := pki.ServiceDNSNames(inst.Name, inst.Namespace)
	if inst.Labels[myaasv1.LabelPool] == "" {
		return names
	}
	if claimant := inst.Annotations[myaasv1.AnnotationClaimedBy]; claimant != "" {
		return append(names, pki.ServiceDNSNames(claimant, inst.Namespace)...)
	}
	if inst.Labels[myaasv1.LabelPoolState] == myaasv1.PoolAvailable {
		names = append(names, "*."+inst.Namespace+".svc", "*."+inst.Namespace+".svc.cluster.local")
	}
	return names
}

// CALabels mark the namespace's CA Secret as the operator's: one without them is never used.
func CALabels() map[string]string {
	return map[string]string{myaasv1.LabelManagedBy: myaasv1.ManagedBy, myaasv1.LabelRole: myaasv1.RoleCA}
}

// CASecret holds the namespace's CA in the kubernetes.io/tls layout, ca.crt being the CA itself.
func CASecret(namespace string, ca pki.KeyPair) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CASecretName, Namespace: namespace, Labels: CALabels()},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			agentapi.TLSCertKey:       ca.CertPEM,
			agentapi.TLSPrivateKeyKey: ca.KeyPEM,
			agentapi.TLSCAKey:         ca.CertPEM,
		},
	}
}

// InstanceTLSSecret holds the instance's server certificate, its key and the CA that issued it.
func InstanceTLSSecret(inst *myaasv1.DatabaseInstance, server pki.KeyPair, caPEM []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            TLSSecretName(inst.Name),
			Namespace:       inst.Namespace,
			Labels:          mergeLabels(InstanceLabels(inst), map[string]string{myaasv1.LabelRole: myaasv1.RoleTLS}),
			OwnerReferences: instanceOwner(inst),
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			agentapi.TLSCertKey:       server.CertPEM,
			agentapi.TLSPrivateKeyKey: server.KeyPEM,
			agentapi.TLSCAKey:         caPEM,
		},
	}
}

// Certificate asks cert-manager for the instance's server certificate, written to the Secret
// the pod mounts. The Secret gets the instance's labels so the operator's cache sees it.
func Certificate(inst *myaasv1.DatabaseInstance) *unstructured.Unstructured {
	ref := inst.Spec.TLS.IssuerRef
	kind := ref.Kind
	if kind == "" {
		kind = "Issuer"
	}
	labels := map[string]any{}
	for k, v := range mergeLabels(InstanceLabels(inst), map[string]string{myaasv1.LabelRole: myaasv1.RoleTLS}) {
		labels[k] = v
	}
	names := ServiceDNSNames(inst)
	dnsNames := make([]any, len(names))
	for i, n := range names {
		dnsNames[i] = n
	}
	owner := instanceOwner(inst)[0]
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": CertificateAPIVersion,
		"kind":       CertificateKind,
		"metadata": map[string]any{
			"name":      TLSSecretName(inst.Name),
			"namespace": inst.Namespace,
		},
		"spec": map[string]any{
			"secretName":     TLSSecretName(inst.Name),
			"secretTemplate": map[string]any{"labels": labels},
			"commonName":     names[0],
			"dnsNames":       dnsNames,
			"usages":         []any{"server auth", "digital signature"},
			"privateKey":     map[string]any{"algorithm": "ECDSA", "size": int64(256), "encoding": "PKCS8", "rotationPolicy": "Always"},
			"issuerRef":      map[string]any{"name": ref.Name, "kind": kind, "group": CertManagerGroup},
		},
	}}
	u.SetLabels(InstanceLabels(inst))
	u.SetOwnerReferences([]metav1.OwnerReference{owner})
	return u
}

// WithTLS makes the credentials Secret of a server that speaks TLS say so: its uri, jdbc-uri and
// dsn ask for TLS with the server's name verified, and ca.crt is the CA to verify it with. An
// issuer that publishes no CA (a public ACME one) leaves ca.crt out: the clients' own trust
// store verifies the server then. Instances started before the operator issued certificates keep
// their plain Secret until a reset.
func WithTLS(secret *corev1.Secret, eng engine.Engine, caPEM []byte) error {
	d := secret.StringData
	if len(caPEM) > 0 {
		d[agentapi.TLSCAKey] = string(caPEM)
	}
	if err := eng.RequireVerifiedTLS(d); err != nil {
		return fmt.Errorf("credentials Secret %s: %w", secret.Name, err)
	}
	return nil
}

// tlsVolume mounts the instance's certificate Secret; tlsArgs tell the agent where it is.
func tlsVolume(inst *myaasv1.DatabaseInstance) (corev1.Volume, corev1.VolumeMount) {
	return corev1.Volume{Name: volumeTLS, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: TLSSecretName(inst.Name), DefaultMode: ptr.To[int32](0o440),
		}}},
		corev1.VolumeMount{Name: volumeTLS, MountPath: agentapi.TLSDir, ReadOnly: true}
}

func tlsArgs(inst *myaasv1.DatabaseInstance) []string {
	args := []string{agentapi.Flag(agentapi.FlagTLSDir, agentapi.TLSDir)}
	if inst.Spec.RequireSecureTransport {
		args = append(args, agentapi.Flag(agentapi.FlagRequireSecureTransport, "true"))
	}
	return args
}

// ServesTLS tells whether a StatefulSet's server was started with a certificate: those made
// before the operator issued certificates are kept as they are until a reset.
func ServesTLS(args []string) bool {
	return slices.Contains(args, agentapi.Flag(agentapi.FlagTLSDir, agentapi.TLSDir))
}
