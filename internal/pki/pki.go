// Package pki issues the certificates instances serve TLS with: a CA per namespace and a server
// certificate per instance for its Service's DNS names, ECDSA P-256 keys, PEM encoded. Templates
// are pure functions of their inputs; only keys and serial numbers come from crypto/rand.
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// Validity of what the operator issues. The CA outlives many server certificates; a server
// certificate is renewed at two thirds of its life, long before clients see it expire.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 90 * 24 * time.Hour
	// backdate covers clocks of clients slightly behind the operator's.
	backdate = 5 * time.Minute
)

// KeyPair is a PEM certificate and its PEM private key.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// ServiceDNSNames are the names clients reach a Service by from inside the cluster.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

// CATemplate is the namespace CA's certificate: it signs server certificates and nothing else.
func CATemplate(commonName string, serial *big.Int, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"myaas"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
}

// ServerTemplate is an instance's server certificate for dnsNames; the first is its common name,
// which old clients still compare with the host they asked for.
func ServerTemplate(dnsNames []string, serial *big.Int, now time.Time) *x509.Certificate {
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"myaas"}},
		DNSNames:              slices.Clone(dnsNames),
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ServerValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
}

// NewCA makes a self-signed CA.
func NewCA(commonName string, now time.Time) (KeyPair, error) {
	key, serial, err := newKeyAndSerial()
	if err != nil {
		return KeyPair{}, err
	}
	tmpl := CATemplate(commonName, serial, now)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("sign CA certificate: %w", err)
	}
	return encode(der, key)
}

// IssueServer signs a server certificate for dnsNames with the CA.
func IssueServer(ca KeyPair, dnsNames []string, now time.Time) (KeyPair, error) {
	caCert, err := ParseCert(ca.CertPEM)
	if err != nil {
		return KeyPair{}, fmt.Errorf("CA certificate: %w", err)
	}
	caKey, err := parseKey(ca.KeyPEM)
	if err != nil {
		return KeyPair{}, fmt.Errorf("CA key: %w", err)
	}
	key, serial, err := newKeyAndSerial()
	if err != nil {
		return KeyPair{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, ServerTemplate(dnsNames, serial, now), caCert, &key.PublicKey, caKey)
	if err != nil {
		return KeyPair{}, fmt.Errorf("sign server certificate: %w", err)
	}
	return encode(der, key)
}

// RenewAt is when a certificate is due for renewal: at two thirds of its validity.
func RenewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(life * 2 / 3)
}

// ServerCertProblem says why a server certificate cannot be kept, or "" when it can: it must be
// a certificate for exactly dnsNames, signed by the CA in caPEM, with its own key, and not due
// for renewal at now.
func ServerCertProblem(pair KeyPair, caPEM []byte, dnsNames []string, now time.Time) string {
	cert, err := ParseCert(pair.CertPEM)
	if err != nil {
		return err.Error()
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return "no CA certificate to check it against"
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Sprintf("not valid under the CA: %v", err)
	}
	if !slices.Equal(cert.DNSNames, dnsNames) {
		return fmt.Sprintf("issued for %v, the Service is reached as %v", cert.DNSNames, dnsNames)
	}
	if !now.Before(RenewAt(cert)) {
		return fmt.Sprintf("due for renewal since %s (expires %s)", RenewAt(cert).UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := parseKey(pair.KeyPEM)
	if err != nil {
		return err.Error()
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return "the key does not match the certificate"
	}
	return ""
}

// ParseCert parses the first certificate of a PEM bundle.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// ValidCA tells whether pair is a usable CA: its key matches its certificate, it may sign, and
// it is valid at now.
func ValidCA(pair KeyPair, now time.Time) error {
	cert, err := ParseCert(pair.CertPEM)
	if err != nil {
		return err
	}
	key, err := parseKey(pair.KeyPEM)
	if err != nil {
		return err
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("the key does not match the certificate")
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("the certificate is not a CA")
	}
	if now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return fmt.Errorf("the CA is valid from %s to %s", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// SameCert tells whether two PEM certificates are the same certificate.
func SameCert(a, b []byte) bool {
	ca, errA := ParseCert(a)
	cb, errB := ParseCert(b)
	return errA == nil && errB == nil && bytes.Equal(ca.Raw, cb.Raw)
}

func newKeyAndSerial() (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial number: %w", err)
	}
	return key, serial, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (KeyPair, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encode key: %w", err)
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func parseKey(keyPEM []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported private key type %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want ECDSA", key)
	}
	return ec, nil
}
