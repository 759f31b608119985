package pki

import (
	"crypto/x509"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)

func TestServiceDNSNames(t *testing.T) {
	got := ServiceDNSNames("shop", "team-a")
	want := []string{"shop", "shop.team-a", "shop.team-a.svc", "shop.team-a.svc.cluster.local"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestTemplates(t *testing.T) {
	names := ServiceDNSNames("shop", "team-a")
	for _, tc := range []struct {
		name      string
		cert      *x509.Certificate
		isCA      bool
		usage     x509.KeyUsage
		ext       []x509.ExtKeyUsage
		cn        string
		dnsNames  []string
		notBefore time.Time
		notAfter  time.Time
	}{
		{
			name: "CA", cert: CATemplate("myaas CA team-a", big.NewInt(7), now),
			isCA: true, usage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, cn: "myaas CA team-a",
			notBefore: now.Add(-backdate), notAfter: now.Add(CAValidity),
		},
		{
			name: "server", cert: ServerTemplate(names, big.NewInt(8), now),
			usage: x509.KeyUsageDigitalSignature, ext: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			cn: "shop", dnsNames: names, notBefore: now.Add(-backdate), notAfter: now.Add(ServerValidity),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cert
			if c.IsCA != tc.isCA || !c.BasicConstraintsValid || c.KeyUsage != tc.usage || !slices.Equal(c.ExtKeyUsage, tc.ext) {
				t.Errorf("isCA %v usage %v ext %v", c.IsCA, c.KeyUsage, c.ExtKeyUsage)
			}
			if c.Subject.CommonName != tc.cn || !slices.Equal(c.DNSNames, tc.dnsNames) {
				t.Errorf("CN %q names %v", c.Subject.CommonName, c.DNSNames)
			}
			if !c.NotBefore.Equal(tc.notBefore) || !c.NotAfter.Equal(tc.notAfter) {
				t.Errorf("valid %s to %s", c.NotBefore, c.NotAfter)
			}
		})
	}
}

func TestIssuedServerCertVerifiesForEveryServiceName(t *testing.T) {
	ca, err := NewCA("myaas CA team-a", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidCA(ca, now); err != nil {
		t.Fatal(err)
	}
	names := ServiceDNSNames("shop", "team-a")
	srv, err := IssueServer(ca, names, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := ParseCert(srv.CertPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	for _, name := range append(names, "other.team-a.svc") {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now})
		if wantOK := name != "other.team-a.svc"; (err == nil) != wantOK {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if !RenewAt(cert).Equal(cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) * 2 / 3)) {
		t.Errorf("renew at %s", RenewAt(cert))
	}
}

func TestServerCertProblem(t *testing.T) {
	ca, _ := NewCA("ca", now)
	otherCA, _ := NewCA("other", now)
	names := ServiceDNSNames("shop", "team-a")
	srv, _ := IssueServer(ca, names, now)
	other, _ := IssueServer(ca, names, now)
	for _, tc := range []struct {
		name  string
		pair  KeyPair
		caPEM []byte
		names []string
		at    time.Time
		want  string // substring; "" means the certificate is kept
	}{
		{"good", srv, ca.CertPEM, names, now.Add(time.Hour), ""},
		{"missing", KeyPair{}, ca.CertPEM, names, now, "no PEM certificate"},
		{"another CA", srv, otherCA.CertPEM, names, now, "not valid under the CA"},
		{"other names", srv, ca.CertPEM, ServiceDNSNames("shop", "team-b"), now, "the Service is reached as"},
		{"due for renewal", srv, ca.CertPEM, names, now.Add(ServerValidity * 2 / 3), "due for renewal"},
		{"expired", srv, ca.CertPEM, names, now.Add(ServerValidity + time.Hour), "not valid under the CA"},
		{"wrong key", KeyPair{CertPEM: srv.CertPEM, KeyPEM: other.KeyPEM}, ca.CertPEM, names, now, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ServerCertProblem(tc.pair, tc.caPEM, tc.names, tc.at)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidCA(t *testing.T) {
	ca, _ := NewCA("ca", now)
	other, _ := NewCA("other", now)
	srv, _ := IssueServer(ca, []string{"x"}, now)
	for _, tc := range []struct {
		name string
		pair KeyPair
		at   time.Time
		want string
	}{
		{"good", ca, now, ""},
		{"key of another CA", KeyPair{CertPEM: ca.CertPEM, KeyPEM: other.KeyPEM}, now, "does not match"},
		{"not a CA", srv, now, "not a CA"},
		{"expired", ca, now.Add(CAValidity + time.Hour), "valid from"},
		{"garbage", KeyPair{CertPEM: []byte("x"), KeyPEM: ca.KeyPEM}, now, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidCA(tc.pair, tc.at)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if !SameCert(ca.CertPEM, ca.CertPEM) || SameCert(ca.CertPEM, other.CertPEM) {
		t.Fatal("SameCert")
	}
}
