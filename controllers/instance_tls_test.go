package controllers

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
	"github.com/myaas/myaas/internal/mariadbtest"
	"github.com/myaas/myaas/internal/pki"
)

// tlsServer starts a server serving the certificate of a kubernetes.io/tls Secret, as the
// instance's pod does with the Secret it mounts.
func tlsServer(t *testing.T, data map[string][]byte) *mariadbtest.Server {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, k), data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return mariadbtest.Start(t, "--ssl-cert="+filepath.Join(dir, "tls.crt"), "--ssl-key="+filepath.Join(dir, "tls.key"), "--ssl-ca="+filepath.Join(dir, "ca.crt"))
}

// switchableAddress points every instance at whichever server the test chose last.
func switchableAddress(first string) (*atomic.Value, func(*corev1.Pod, int32) string) {
	v := &atomic.Value{}
	v.Store(first)
	return v, func(*corev1.Pod, int32) string { return v.Load().(string) }
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	eventually(t, 20*time.Second, "Secret "+name, func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, s)
	})
	return s
}

// checkServerCert checks that a certificate Secret verifies, under caPEM, for every name of the
// instance's Service.
func checkServerCert(t *testing.T, secret *corev1.Secret, caPEM []byte, ns, instance string) {
	t.Helper()
	names := pki.ServiceDNSNames(instance, ns)
	pair := pki.KeyPair{CertPEM: secret.Data["tls.crt"], KeyPEM: secret.Data["tls.key"]}
	if problem := pki.ServerCertProblem(pair, caPEM, names, time.Now()); problem != "" {
		t.Fatalf("certificate of %s: %s", instance, problem)
	}
}

func waitReady(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, 30*time.Second, name+" ready", func() error {
		got := getInstance(t, ns, name)
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonCredentialsVerified)
	})
}

func TestTLSInstancesGetCertificatesFromTheNamespaceCA(t *testing.T) {
	requireEnv(t)
	plain := mariadbtest.Start(t)
	addr, address := switchableAddress(plain.Addr)
	startManager(t, Options{Verifier: EngineLogin{}, Sessions: EngineLogin{}, Address: address})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	newInstance(t, ns, "tls-a", "shop")
	newInstance(t, ns, "tls-b", "shop")

	// One CA for the namespace, the operator's, belonging to no instance.
	ca := getSecret(t, ns, "myaas-ca")
	if ca.Type != corev1.SecretTypeTLS || ca.Labels["app.kubernetes.io/managed-by"] != "myaas" || ca.Labels[myaasv1.LabelRole] != myaasv1.RoleCA || len(ca.OwnerReferences) != 0 {
		t.Fatalf("CA Secret type %s labels %v owners %v", ca.Type, ca.Labels, ca.OwnerReferences)
	}
	if err := pki.ValidCA(pki.KeyPair{CertPEM: ca.Data["tls.crt"], KeyPEM: ca.Data["tls.key"]}, time.Now()); err != nil || string(ca.Data["ca.crt"]) != string(ca.Data["tls.crt"]) {
		t.Fatalf("CA: %v", err)
	}
	caPEM := ca.Data["tls.crt"]

	certs := map[string]*corev1.Secret{}
	for _, name := range []string{"tls-a", "tls-b"} {
		cert := getSecret(t, ns, name+"-tls")
		if owner := metav1.GetControllerOf(cert); owner == nil || owner.Kind != "DatabaseInstance" || owner.Name != name || cert.Type != corev1.SecretTypeTLS {
			t.Fatalf("certificate Secret of %s: type %s owner %+v", name, cert.Type, owner)
		}
		checkServerCert(t, cert, caPEM, ns, name)
		certs[name] = cert
		var creds map[string]string
		eventually(t, 20*time.Second, "credentials with TLS", func() error {
			creds = credentials(t, ns, name)
			if creds["ca.crt"] != string(caPEM) {
				return fmt.Errorf("ca.crt is not the namespace's CA")
			}
			return nil
		})
		if !strings.HasSuffix(creds["uri"], "?ssl-mode=VERIFY_IDENTITY") || !strings.Contains(creds["jdbc-uri"], "sslMode=verify-full") || !strings.Contains(creds["dsn"], "tls=true") {
			t.Fatalf("%s: the connection strings do not ask for verified TLS: %s %s %s", name, redactIn(creds["uri"], creds), redactIn(creds["jdbc-uri"], creds), redactIn(creds["dsn"], creds))
		}
	}
	sts := &appsv1.StatefulSet{}
	eventually(t, 20*time.Second, "statefulset", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "tls-a"}, sts)
	})
	pod := sts.Spec.Template.Spec
	if !builder.ServesTLS(pod.Containers[0].Args) || !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == "tls-a-tls"
	}) {
		t.Fatalf("the pod does not serve the certificate: args %v volumes %+v", pod.Containers[0].Args, pod.Volumes)
	}

	// The operator's login insists on TLS verified for the Service's name: a plain server that
	// knows the credentials does not make the instance Ready.
	credsA := credentials(t, ns, "tls-a")
	grant(t, plain, credsA)
	playInstancePod(t, ns, "tls-a")
	consistently(t, 3*time.Second, "not Ready through a server without TLS", func() error {
		got := getInstance(t, ns, "tls-a")
		if c := metaCondition(got.Status.Conditions, myaasv1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
			return fmt.Errorf("Ready: %s", c.Message)
		}
		return nil
	})
	srv := tlsServer(t, certs["tls-a"].Data)
	grant(t, srv, credsA)
	addr.Store(srv.Addr)
	waitReady(t, ns, "tls-a")

	// A certificate that no longer fits the instance (here: issued for other names) is issued
	// anew by the same CA.
	other, err := pki.IssueServer(pki.KeyPair{CertPEM: caPEM, KeyPEM: ca.Data["tls.key"]}, []string{"elsewhere"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrong := getSecret(t, ns, "tls-b-tls")
	wrong.Data["tls.crt"], wrong.Data["tls.key"] = other.CertPEM, other.KeyPEM
	if err := k8s.Update(bg, wrong); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "certificate issued anew", func() error {
		s := &corev1.Secret{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "tls-b-tls"}, s); err != nil {
			return err
		}
		pair := pki.KeyPair{CertPEM: s.Data["tls.crt"], KeyPEM: s.Data["tls.key"]}
		if p := pki.ServerCertProblem(pair, caPEM, pki.ServiceDNSNames("tls-b", ns), time.Now()); p != "" {
			return fmt.Errorf("%s", p)
		}
		if !hasEvent(eventsFor(t, ns, "tls-b"), EventCertificateIssued) {
			return fmt.Errorf("no %s event", EventCertificateIssued)
		}
		return nil
	})
}

func TestTLSCASecretNotTheOperatorsIsNeverUsed(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	theirs, _ := pki.NewCA("someone else's", time.Now())
	if err := k8s.Create(bg, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "myaas-ca"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": theirs.CertPEM, "tls.key": theirs.KeyPEM},
	}); err != nil {
		t.Fatal(err)
	}
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	newInstance(t, ns, "tls-x", "shop")
	eventually(t, 20*time.Second, "CANotUsable", func() error {
		got := getInstance(t, ns, "tls-x")
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonCANotUsable)
	})
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "tls-x-tls"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a certificate was issued with a CA that is not the operator's: %v", err)
	}
	waitForEvent(t, ns, "tls-x", EventCANotUsable)
}

var certificateGVK = schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}

// With spec.tls.issuerRef the operator asks cert-manager; the test plays cert-manager's part and
// writes the Secret the Certificate names.
func TestTLSCertificateFromCertManager(t *testing.T) {
	requireEnv(t)
	if _, err := envtest.InstallCRDs(testConfig, envtest.CRDInstallOptions{Paths: []string{filepath.Join("testdata", "cert-manager-certificate-crd.yaml")}}); err != nil {
		t.Fatal(err)
	}
	plain := mariadbtest.Start(t)
	addr, address := switchableAddress(plain.Addr)
	startManager(t, Options{Verifier: EngineLogin{}, Sessions: EngineLogin{}, Address: address})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	newInstance(t, ns, "tls-cm", "shop", func(i *myaasv1.DatabaseInstance) {
		i.Spec.TLS = &myaasv1.InstanceTLS{IssuerRef: &myaasv1.IssuerReference{Name: "team-ca"}}
	})

	cert := &unstructured.Unstructured{}
	cert.SetGroupVersionKind(certificateGVK)
	eventually(t, 20*time.Second, "Certificate", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "tls-cm-tls"}, cert)
	})
	if owner := metav1.GetControllerOf(cert); owner == nil || owner.Name != "tls-cm" {
		t.Fatalf("Certificate owner %+v", owner)
	}
	secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	issuer, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef")
	secretLabels, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "secretTemplate", "labels")
	if secretName != "tls-cm-tls" || !slices.Equal(dnsNames, pki.ServiceDNSNames("tls-cm", ns)) || issuer["name"] != "team-ca" || issuer["kind"] != "Issuer" {
		t.Fatalf("Certificate spec %v", cert.Object["spec"])
	}
	eventually(t, 20*time.Second, "waiting for cert-manager", func() error {
		got := getInstance(t, ns, "tls-cm")
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonWaitingForCertificate)
	})
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "tls-cm"}, &appsv1.StatefulSet{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the server was started before it had a certificate: %v", err)
	}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "myaas-ca"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a namespace CA was made though cert-manager issues the certificates: %v", err)
	}

	// cert-manager issues: its CA, the Secret with the Certificate's secretTemplate labels.
	teamCA, _ := pki.NewCA("team CA", time.Now())
	issued, err := pki.IssueServer(teamCA, dnsNames, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(bg, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName, Labels: secretLabels},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": issued.CertPEM, "tls.key": issued.KeyPEM, "ca.crt": teamCA.CertPEM},
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the issued Secret goes with the instance", func() error {
		s := &corev1.Secret{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: secretName}, s); err != nil {
			return err
		}
		if !slices.ContainsFunc(s.OwnerReferences, func(r metav1.OwnerReference) bool { return r.Kind == "DatabaseInstance" && r.Name == "tls-cm" }) {
			return fmt.Errorf("owners %+v", s.OwnerReferences)
		}
		return nil
	})
	eventually(t, 20*time.Second, "credentials carry the issuer's CA", func() error {
		if creds := credentials(t, ns, "tls-cm"); creds["ca.crt"] != string(teamCA.CertPEM) {
			return fmt.Errorf("ca.crt %q", creds["ca.crt"])
		}
		return nil
	})
	playInstancePod(t, ns, "tls-cm")
	tlsSecret := getSecret(t, ns, secretName)
	srv := tlsServer(t, tlsSecret.Data)
	grant(t, srv, credentials(t, ns, "tls-cm"))
	addr.Store(srv.Addr)
	waitReady(t, ns, "tls-cm")
}
