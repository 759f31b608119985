//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/pki"
)

// clientImage is the engine image the templates of the suite use; its mariadb client is the
// one users run in the cluster.
const clientImage = "localhost/myaas/mariadb:10.11"

// runClient runs the mariadb client in a pod of the instance's namespace, logged in with the
// instance's Secret, reaching the server by its Service name as applications do. The Secret is
// mounted at /creds (ca.crt among its keys), caSource, if set, at /other. It returns what the
// client printed and whether it succeeded.
func runClient(t *testing.T, ns, instance, caSource string, args ...string) (string, bool) {
	t.Helper()
	secret := instance + "-credentials"
	env := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}}
	}
	volumes := []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}}
	mounts := []corev1.VolumeMount{{Name: "creds", MountPath: "/creds", ReadOnly: true}}
	if caSource != "" {
		volumes = append(volumes, corev1.Volume{Name: "other", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: caSource}}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "other", MountPath: "/other", ReadOnly: true})
	}
	script := `exec mariadb --host="$MYAAS_HOST" --port="$MYAAS_PORT" --user="$MYAAS_USERNAME" --database="$MYAAS_DATABASE" --protocol=TCP --connect-timeout=10 -N -B "$@"`
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: instance + "-tls-client-", Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr(true), RunAsUser: ptr[int64](999),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "client", Image: clientImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: append([]string{"sh", "-c", script, "sh"}, args...),
				Env: []corev1.EnvVar{env("MYAAS_HOST", "host"), env("MYAAS_PORT", "port"), env("MYAAS_USERNAME", "username"),
					env("MYAAS_DATABASE", "database"), env("MYSQL_PWD", "password")},
				VolumeMounts: mounts,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			Volumes: volumes,
		},
	}
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, pod) })
	eventually(t, 120*time.Second, "client pod "+pod.Name+" done", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		if p := pod.Status.Phase; p != corev1.PodSucceeded && p != corev1.PodFailed {
			return fmt.Errorf("phase %s", p)
		}
		return nil
	})
	out := kubectl(t, "-n", ns, "logs", pod.Name)
	return out, pod.Status.Phase == corev1.PodSucceeded
}

// verifiedLogin logs in from the test over the pod network with TLS verified against caPEM for
// the Service's name, whatever address it dials; without caPEM it asks for a plain connection.
func verifiedLogin(t *testing.T, ns, instance string, caPEM []byte) (*sql.DB, error) {
	t.Helper()
	creds := secretData(t, ns, instance+"-credentials")
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = creds["username"], creds["password"], "tcp", podAddr(t, ns, instance), creds["database"]
	cfg.Timeout = 10 * time.Second
	if caPEM != nil {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		cfg.TLS = &tls.Config{RootCAs: roots, ServerName: creds["host"], MinVersion: tls.VersionTLS12}
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	t.Cleanup(func() { db.Close() })
	return db, nil
}

// Every instance speaks TLS with a certificate for its Service's names, issued by the operator's
// CA of the namespace; its Secret carries that CA, and a client verifying the server with it gets
// in. With requireSecureTransport, a client without TLS is turned away.
func TestTLSInstancesServeVerifiedTLS(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	newInstance(t, ns, "open", "shop")
	newInstance(t, ns, "strict", "shop", func(d *myaasv1.DatabaseInstance) { d.Spec.RequireSecureTransport = true })
	waitReady(t, ns, "open")
	waitReady(t, ns, "strict")

	creds := secretData(t, ns, "open-credentials")
	ca := secretData(t, ns, "myaas-ca")
	if creds["ca.crt"] == "" || creds["ca.crt"] != ca["ca.crt"] {
		t.Fatalf("the credentials Secret does not carry the namespace's CA (ca.crt %d bytes)", len(creds["ca.crt"]))
	}
	if !strings.Contains(creds["uri"], "ssl-mode=VERIFY_IDENTITY") || !strings.Contains(creds["dsn"], "tls=true") {
		t.Fatalf("the connection strings do not ask for verified TLS")
	}

	// The client verifies the server's certificate and name with the Secret's ca.crt.
	query := "SELECT @@have_ssl, VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'"
	verify := []string{"--ssl", "--ssl-verify-server-cert", "--ssl-ca=/creds/ca.crt", "-e", query}
	for _, inst := range []string{"open", "strict"} {
		out, ok := runClient(t, ns, inst, "", verify...)
		fields := strings.Fields(out)
		if !ok || len(fields) != 2 || fields[0] != "YES" || fields[1] == "" {
			t.Fatalf("%s: verified client: ok %v, printed %q; want @@have_ssl YES and a cipher", inst, ok, out)
		}
	}

	// Verification is real: a client trusting another CA is refused the connection.
	other, err := pki.NewCA("another CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other-ca"},
		Data: map[string]string{"ca.crt": string(other.CertPEM)}}); err != nil {
		t.Fatal(err)
	}
	if out, ok := runClient(t, ns, "open", "other-ca", "--ssl", "--ssl-verify-server-cert", "--ssl-ca=/other/ca.crt", "-e", "SELECT 1"); ok {
		t.Fatalf("a client trusting another CA connected: %q", out)
	}

	// Without requireSecureTransport a plain client still gets in; with it, it is turned away.
	if out, ok := runClient(t, ns, "open", "", "--skip-ssl", "-e", "SELECT 1"); !ok || strings.TrimSpace(out) != "1" {
		t.Fatalf("plain client on the open instance: ok %v, printed %q", ok, out)
	}
	if out, ok := runClient(t, ns, "strict", "", "--skip-ssl", "-e", "SELECT 1"); ok {
		t.Fatalf("a plain client connected to the instance with requireSecureTransport: %q", out)
	}

	// `kubectl myaas connect` in the cluster verifies the server with the Secret's CA, so it works
	// where plain clients are refused.
	cipher := mustMyaas(t, ns, "connect", "strict", "--in-cluster", "--", "-N", "-B", "-e",
		"SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'")
	if strings.TrimSpace(cipher) == "" {
		t.Fatalf("kubectl myaas connect --in-cluster: no TLS cipher in %q", cipher)
	}

	// The same from a Go client over the pod network: the name checked is the Service's.
	db, err := verifiedLogin(t, ns, "strict", []byte(ca["ca.crt"]))
	if err != nil {
		t.Fatalf("verified Go client: %v", err)
	}
	var required string
	if err := db.QueryRowContext(ctx, "SELECT @@require_secure_transport").Scan(&required); err != nil || required != "1" {
		t.Fatalf("@@require_secure_transport %q (%v)", required, err)
	}
	if _, err := verifiedLogin(t, ns, "strict", nil); err == nil {
		t.Fatal("a plain Go client connected to the instance with requireSecureTransport")
	}
}
