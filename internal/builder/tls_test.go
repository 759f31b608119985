package builder

import (
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/pki"
)

func TestCredentialsSecretAsksForVerifiedTLS(t *testing.T) {
	for _, tc := range []struct {
		engine   string
		jdbcMode string
	}{
		{"mariadb", "verify-full"},
		{"mysql", "VERIFY_IDENTITY"},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			s := CredentialsSecret(instance(nil), mustEngine(t, tc.engine), Passwords{Password: "pw/with?odd&chars"})
			if err := WithTLS(s, mustEngine(t, tc.engine), []byte("CA PEM")); err != nil {
				t.Fatal(err)
			}
			d := s.StringData
			if d[agentapi.TLSCAKey] != "CA PEM" {
				t.Fatalf("ca.crt %q", d[agentapi.TLSCAKey])
			}
			u, err := url.Parse(d["uri"])
			if pw, _ := u.User.Password(); err != nil || u.Query().Get("ssl-mode") != "VERIFY_IDENTITY" || u.Host != "feature-x.ci.svc:3306" || pw != "pw/with?odd&chars" {
				t.Fatalf("uri %s (%v)", d["uri"], err)
			}
			jdbc, err := url.Parse(strings.TrimPrefix(d["jdbc-uri"], "jdbc:"))
			if err != nil || jdbc.Query().Get("sslMode") != tc.jdbcMode || jdbc.Query().Get("password") != "pw/with?odd&chars" {
				t.Fatalf("jdbc-uri %s (%v)", d["jdbc-uri"], err)
			}
			cfg, err := mysql.ParseDSN(d["dsn"])
			if err != nil || cfg.TLS == nil || cfg.TLS.InsecureSkipVerify || cfg.TLS.ServerName != "feature-x.ci.svc" || cfg.Passwd != "pw/with?odd&chars" || !cfg.ParseTime {
				t.Fatalf("dsn %s: TLS %+v (%v)", d["dsn"], cfg.TLS, err)
			}
		})
	}
	// An issuer that publishes no CA leaves the key out rather than empty.
	s := CredentialsSecret(instance(nil), mustEngine(t, "mariadb"), Passwords{Password: "pw"})
	if err := WithTLS(s, mustEngine(t, "mariadb"), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.StringData[agentapi.TLSCAKey]; ok {
		t.Fatal("empty ca.crt written")
	}
}

func TestTLSSecrets(t *testing.T) {
	inst := instance(nil)
	pair := pki.KeyPair{CertPEM: []byte("cert"), KeyPEM: []byte("key")}
	for _, tc := range []struct {
		name      string
		secret    *corev1.Secret
		wantName  string
		wantRole  string
		wantOwner bool
		wantCA    string
	}{
		{"namespace CA", CASecret("ci", pair), "myaas-ca", myaasv1.RoleCA, false, "cert"},
		{"instance certificate", InstanceTLSSecret(inst, pair, []byte("ca")), "feature-x-tls", myaasv1.RoleTLS, true, "ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.secret
			if s.Name != tc.wantName || s.Namespace != "ci" || s.Type != corev1.SecretTypeTLS {
				t.Fatalf("meta %s/%s type %s", s.Namespace, s.Name, s.Type)
			}
			if s.Labels["app.kubernetes.io/managed-by"] != "myaas" || s.Labels[myaasv1.LabelRole] != tc.wantRole {
				t.Fatalf("labels %v", s.Labels)
			}
			if owned := metav1.GetControllerOf(s) != nil; owned != tc.wantOwner {
				t.Fatalf("owned %v, want %v", owned, tc.wantOwner)
			}
			if string(s.Data["tls.crt"]) != "cert" || string(s.Data["tls.key"]) != "key" || string(s.Data["ca.crt"]) != tc.wantCA {
				t.Fatalf("data %v", s.Data)
			}
		})
	}
}

func TestCertificate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ref      myaasv1.IssuerReference
		wantKind string
	}{
		{"Issuer by default", myaasv1.IssuerReference{Name: "team-ca"}, "Issuer"},
		{"ClusterIssuer", myaasv1.IssuerReference{Name: "corp", Kind: "ClusterIssuer"}, "ClusterIssuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := instance(func(i *myaasv1.DatabaseInstance) { i.Spec.TLS = &myaasv1.InstanceTLS{IssuerRef: &tc.ref} })
			c := Certificate(inst)
			if c.GetAPIVersion() != "cert-manager.io/v1" || c.GetKind() != "Certificate" || c.GetName() != "feature-x-tls" || c.GetNamespace() != "ci" {
				t.Fatalf("meta %s %s %s/%s", c.GetAPIVersion(), c.GetKind(), c.GetNamespace(), c.GetName())
			}
			if owner := metav1.GetControllerOf(c); owner == nil || owner.Kind != "DatabaseInstance" {
				t.Fatalf("owner %+v", owner)
			}
			secretName, _, _ := unstructured.NestedString(c.Object, "spec", "secretName")
			dnsNames, _, _ := unstructured.NestedStringSlice(c.Object, "spec", "dnsNames")
			issuer, _, _ := unstructured.NestedStringMap(c.Object, "spec", "issuerRef")
			labels, _, _ := unstructured.NestedStringMap(c.Object, "spec", "secretTemplate", "labels")
			if secretName != "feature-x-tls" || !slices.Equal(dnsNames, ServiceDNSNames(inst)) {
				t.Fatalf("secret %s names %v", secretName, dnsNames)
			}
			if !reflect.DeepEqual(issuer, map[string]string{"name": tc.ref.Name, "kind": tc.wantKind, "group": "cert-manager.io"}) {
				t.Fatalf("issuerRef %v", issuer)
			}
			if labels[myaasv1.LabelInstance] != "feature-x" {
				t.Fatalf("secretTemplate labels %v", labels)
			}
		})
	}
}

func TestInstanceStatefulSetMountsTheCertificate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		require  bool
		wantArgs []string
	}{
		{"TLS offered", false, []string{"--tls-dir=/etc/myaas/tls"}},
		{"TLS required", true, []string{"--tls-dir=/etc/myaas/tls", "--require-secure-transport=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := instance(func(i *myaasv1.DatabaseInstance) { i.Spec.RequireSecureTransport = tc.require })
			sts := InstanceStatefulSet(inst, StatefulSetParams{Engine: mustEngine(t, "mariadb"), Image: "mariadb:11.4",
				Revision: 1, SnapshotName: "shop-r1", RestoreSize: resource.MustParse("1Gi")})
			pod := sts.Spec.Template.Spec
			c := pod.Containers[0]
			var tlsArgs []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--tls-dir") || strings.HasPrefix(a, "--require-secure-transport") {
					tlsArgs = append(tlsArgs, a)
				}
			}
			if !slices.Equal(tlsArgs, tc.wantArgs) || !ServesTLS(c.Args) {
				t.Fatalf("TLS args %v, want %v", tlsArgs, tc.wantArgs)
			}
			i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == volumeTLS })
			if i < 0 || pod.Volumes[i].Secret == nil || pod.Volumes[i].Secret.SecretName != "feature-x-tls" {
				t.Fatalf("volumes %+v", pod.Volumes)
			}
			if !slices.Contains(c.VolumeMounts, corev1.VolumeMount{Name: volumeTLS, MountPath: agentapi.TLSDir, ReadOnly: true}) {
				t.Fatalf("mounts %+v", c.VolumeMounts)
			}
		})
	}
	if ServesTLS([]string{"agent", "start"}) {
		t.Fatal("a pod without the flag serves TLS")
	}
}

// The certificate a real issue gives the instance is for the names its Secret's host and the
// Service's in-cluster forms.
func TestServiceDNSNamesCoverTheSecretHost(t *testing.T) {
	inst := instance(nil)
	ca, _ := pki.NewCA("ca", time.Now())
	srv, err := pki.IssueServer(ca, ServiceDNSNames(inst), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := pki.ParseCert(srv.CertPEM)
	if err := cert.VerifyHostname(ServiceHost(inst)); err != nil {
		t.Fatal(err)
	}
}
