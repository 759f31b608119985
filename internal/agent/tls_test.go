package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/internal/pki"
)

// tlsLogin logs in over TCP; with roots it asks for TLS verified against them for serverName,
// without it it asks for a plain connection.
func tlsLogin(addr, serverName string, roots *x509.CertPool, creds map[string]string) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = creds["username"], creds["password"], "tcp", addr, creds["database"]
	cfg.Timeout, cfg.ReadTimeout = 3*time.Second, 3*time.Second
	if roots != nil {
		cfg.TLS = &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// startTLSClone runs the server `agent start` would exec with the certificate Secret in tlsDir.
func startTLSClone(t *testing.T, datadir, tlsDir string, requireSecure bool, creds map[string]string) string {
	t.Helper()
	credDir, adminDir := credentialDirs(t, creds)
	port := freePort(t)
	bin, argv, err := startCommand(startOptions{engine: "mariadb", datadir: datadir, runDir: filepath.Join(t.TempDir(), "run"),
		credentialsDir: credDir, adminDir: adminDir, serverID: 9, port: port, tlsDir: tlsDir, requireSecureTransport: requireSecure})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	socket := ""
	for _, a := range argv {
		if s, ok := strings.CutPrefix(a, "--socket="); ok {
			socket = s
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	// The pod's own probe, over the socket, works whatever the transport rules for TCP clients.
	for probe(context.Background(), engine.MariaDB{}, socket, creds["username"], creds["password"], creds["database"], time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the clone never accepted its credentials on its socket")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func TestCloneServesVerifiedTLS(t *testing.T) {
	dump, _ := sourceDumpSmall()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "d.sql"), dump, 0o644); err != nil {
		t.Fatal(err)
	}
	template, _, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "d.sql"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca, err := pki.NewCA("test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	names := pki.ServiceDNSNames("shop", "team-a")
	server, err := pki.IssueServer(ca, names, now)
	if err != nil {
		t.Fatal(err)
	}
	tlsDir := t.TempDir()
	writeSecretFiles(t, tlsDir, map[string]string{
		agentapi.TLSCertKey: string(server.CertPEM), agentapi.TLSPrivateKeyKey: string(server.KeyPEM), agentapi.TLSCAKey: string(ca.CertPEM),
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	other, _ := pki.NewCA("another CA", now)
	otherRoots := x509.NewCertPool()
	otherRoots.AppendCertsFromPEM(other.CertPEM)
	creds := map[string]string{"username": "alice", "password": "pw-alice", "database": "app", "root-password": "root-pw"}

	t.Run("TLS on, plain allowed", func(t *testing.T) {
		addr := startTLSClone(t, copyDir(t, template), tlsDir, false, creds)
		db, err := tlsLogin(addr, "shop.team-a.svc", roots, creds)
		if err != nil {
			t.Fatalf("verified TLS login: %v", err)
		}
		defer db.Close()
		var haveSSL, cipher string
		if err := db.QueryRow("SELECT @@have_ssl").Scan(&haveSSL); err != nil || haveSSL != "YES" {
			t.Fatalf("@@have_ssl = %q (%v), want YES", haveSSL, err)
		}
		var name string
		if err := db.QueryRow("SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil || cipher == "" {
			t.Fatalf("the session is not encrypted: cipher %q (%v)", cipher, err)
		}
		// Verification is real: another CA, or a name the certificate was not issued for, fails.
		if db, err := tlsLogin(addr, "shop.team-a.svc", otherRoots, creds); err == nil {
			db.Close()
			t.Fatal("a client trusting another CA connected")
		}
		if db, err := tlsLogin(addr, "elsewhere.team-a.svc", roots, creds); err == nil {
			db.Close()
			t.Fatal("a client asking for another host name connected")
		}
		plain, err := tlsLogin(addr, "", nil, creds)
		if err != nil {
			t.Fatalf("without requireSecureTransport a plain client still connects: %v", err)
		}
		plain.Close()
	})

	t.Run("requireSecureTransport", func(t *testing.T) {
		addr := startTLSClone(t, copyDir(t, template), tlsDir, true, creds)
		// MariaDB answers a plain login with "access denied"; the same login over TLS works.
		if db, err := tlsLogin(addr, "", nil, creds); err == nil {
			db.Close()
			t.Fatal("a plain connection was accepted with requireSecureTransport")
		}
		db, err := tlsLogin(addr, "shop.team-a.svc", roots, creds)
		if err != nil {
			t.Fatalf("verified TLS login with requireSecureTransport: %v", err)
		}
		defer db.Close()
		var required string
		if err := db.QueryRow("SELECT @@require_secure_transport").Scan(&required); err != nil || required != "1" {
			t.Fatalf("@@require_secure_transport = %q (%v)", required, err)
		}
	})

	t.Run("missing key", func(t *testing.T) {
		partial := t.TempDir()
		writeSecretFiles(t, partial, map[string]string{agentapi.TLSCertKey: string(server.CertPEM), agentapi.TLSCAKey: string(ca.CertPEM)})
		credDir, adminDir := credentialDirs(t, creds)
		_, _, err := startCommand(startOptions{engine: "mariadb", datadir: copyDir(t, template), runDir: t.TempDir(), credentialsDir: credDir, adminDir: adminDir, tlsDir: partial})
		if err == nil || !strings.Contains(err.Error(), agentapi.TLSPrivateKeyKey) {
			t.Fatalf("start without the key: %v", err)
		}
	})
}

// A certificate issued anew, as for an instance that claims a warm pool member, is served by the
// running server without a restart.
func TestStartedServerLoadsACertificateIssuedAnew(t *testing.T) {
	template := smallTemplate(t)
	now := time.Now()
	ca, err := pki.NewCA("test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	mount := func(tlsDir string, names ...[]string) {
		t.Helper()
		server, err := pki.IssueServer(ca, slices.Concat(names...), now)
		if err != nil {
			t.Fatal(err)
		}
		writeSecretFiles(t, tlsDir, map[string]string{
			agentapi.TLSCertKey: string(server.CertPEM), agentapi.TLSPrivateKeyKey: string(server.KeyPEM), agentapi.TLSCAKey: string(ca.CertPEM),
		})
	}
	tlsDir := t.TempDir()
	mount(tlsDir, pki.ServiceDNSNames("shop-pool-3", "team-a"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	creds := map[string]string{"username": "alice", "password": "pw-1", "database": "app", "root-password": "root-1"}
	credDir, adminDir := credentialDirs(t, creds)
	addr, _, done := agentStart(t, copyDir(t, template), credDir, adminDir, agentapi.Flag(agentapi.FlagTLSDir, tlsDir))
	waitTLSLogin := func(serverName string, creds map[string]string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			db, err := tlsLogin(addr, serverName, roots, creds)
			if err == nil {
				db.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no verified login to %s: %v", serverName, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitTLSLogin("shop-pool-3.team-a.svc", creds)
	if db, err := tlsLogin(addr, "pr-12.team-a.svc", roots, creds); err == nil {
		db.Close()
		t.Fatal("the first certificate already names pr-12")
	}

	// The claim: new names and a new password at once, as the operator gives them.
	mount(tlsDir, pki.ServiceDNSNames("shop-pool-3", "team-a"), pki.ServiceDNSNames("pr-12", "team-a"))
	creds["password"] = "pw-claimed"
	writeSecrets(t, credDir, adminDir, creds)
	waitTLSLogin("pr-12.team-a.svc", creds)
	select {
	case err := <-done:
		t.Fatalf("the server stopped while loading the certificate: %v", err)
	default:
	}
	if err := login(addr, "alice", "pw-1", "app"); err == nil {
		t.Fatal("the temporary password still works after the claim")
	}
}
