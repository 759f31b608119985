package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/internal/pki"
	"github.com/myaas/myaas/internal/postgrestest"
)

// pgTemplateSQL is what a dump leaves: a role of its own, with a password that works on the
// source; a database, schema, enum, tables (one owned by the dump's role), a view, a function
// and an extension, all owned by whoever ran the dump.
var pgTemplateSQL = []postgrestest.Step{
	{Database: "postgres", SQL: "CREATE ROLE legacy LOGIN PASSWORD 'legacy-pw'"},
	{Database: "postgres", SQL: "CREATE DATABASE shop"},
	{Database: "shop", SQL: `CREATE EXTENSION citext;
		CREATE SCHEMA sales;
		CREATE TYPE sales.status AS ENUM ('new', 'paid');
		CREATE TABLE sales.orders (id serial PRIMARY KEY, status sales.status NOT NULL, email citext);
		INSERT INTO sales.orders (status, email) SELECT 'paid', 'u' || g || '@example.com' FROM generate_series(1, 1000) g;
		CREATE TABLE public.customers (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);
		ALTER TABLE public.customers OWNER TO legacy;
		INSERT INTO public.customers (name) VALUES ('ann'), ('bob');
		CREATE VIEW sales.paid AS SELECT id FROM sales.orders WHERE status = 'paid';
		CREATE FUNCTION sales.order_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM sales.orders'`},
}

var pgTemplates = map[bool]*struct {
	once sync.Once
	dir  string
	err  error
}{false: {}, true: {}}

// pgTemplateDir is a datadir as the import leaves it, made once per test binary: clones copy it.
// prepared is a template the import prepared for fast clones, the other one of a dump as it was.
func pgTemplateDir(t *testing.T, prepared bool) string {
	t.Helper()
	postgrestest.Binary(t, "initdb")
	tmpl := pgTemplates[prepared]
	tmpl.once.Do(func() {
		dir, err := os.MkdirTemp("", "pg-template-")
		if err == nil {
			tmpl.dir = filepath.Join(dir, "data")
			err = postgrestest.MakeDatadir(tmpl.dir, prepared, pgTemplateSQL...)
		}
		tmpl.err = err
	})
	if tmpl.err != nil {
		t.Fatal(tmpl.err)
	}
	return tmpl.dir
}

// pgClone is a copy of the template with `agent start` running on it.
type pgCloneRun struct {
	addr    string
	port    int
	runDir  string
	datadir string
	credDir string
	admDir  string
	stop    func() error
}

// startPGClone runs `agent start --engine=postgresql` on a copy of the template, as the pod does,
// and waits for the application user's login over TCP.
func startPGClone(t *testing.T, prepared bool, creds map[string]string, extraFlags ...string) *pgCloneRun {
	t.Helper()
	parent := t.TempDir()
	c := &pgCloneRun{datadir: filepath.Join(parent, "data"), runDir: filepath.Join(parent, "run")}
	if err := postgrestest.CopyDir(pgTemplateDir(t, prepared), c.datadir); err != nil {
		t.Fatal(err)
	}
	if err := postgrestest.Give(parent); err != nil {
		t.Fatal(err)
	}
	c.credDir, c.admDir = credentialDirs(t, creds)
	port := freePort(t)
	c.addr, c.port = fmt.Sprintf("127.0.0.1:%d", port), port
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runStart(ctx, append([]string{
			agentapi.Flag(agentapi.FlagEngine, "postgresql"),
			agentapi.Flag(agentapi.FlagDatadir, c.datadir),
			agentapi.Flag(agentapi.FlagRunDir, c.runDir),
			agentapi.Flag(agentapi.FlagCredentialsDir, c.credDir),
			agentapi.Flag(agentapi.FlagAdminCredentialsDir, c.admDir),
			agentapi.Flag(agentapi.FlagPort, fmt.Sprint(port)),
		}, extraFlags...))
	}()
	var once sync.Once
	var stopErr error
	c.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(60 * time.Second):
				stopErr = fmt.Errorf("the server did not stop after SIGTERM")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = c.stop() })
	c.waitProbe(t, creds["username"], creds["password"], creds["database"])
	return c
}

// socket is the server's, named after the port it listens on.
func (c *pgCloneRun) socket() string {
	return filepath.Join(c.runDir, fmt.Sprintf(".s.PGSQL.%d", c.port))
}

// waitProbe waits until the readiness probe passes: it logs in on the socket.
func (c *pgCloneRun) waitProbe(t *testing.T, user, password, database string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := probe(context.Background(), engine.PostgreSQL{}, c.socket(), user, password, database, 3*time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the probe never passed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *pgCloneRun) login(user, password, database string, tlsConfig *tls.Config) error {
	return engine.PostgreSQL{}.Login(context.Background(), engine.Login{Addr: c.addr, Username: user, Password: password, Database: database, TLS: tlsConfig, Timeout: 3 * time.Second})
}

func (c *pgCloneRun) waitLogin(t *testing.T, user, password, database string, tlsConfig *tls.Config) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := c.login(user, password, database, tlsConfig)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never logged in with %s: %v", user, password, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// conn is a client's session over TCP.
func (c *pgCloneRun) conn(t *testing.T, user, password, database string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, c.addr, database))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%s logs in to %s: %v", user, database, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// superuser is postgres on the clone's socket, as only the pod can log in.
func (c *pgCloneRun) superuser(t *testing.T, database string) *pgx.Conn {
	t.Helper()
	conn, err := postgrestest.Connect(context.Background(), c.runDir, c.port, database)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPostgresCloneLetsInOnlyTheInstancesRoles(t *testing.T) {
	for _, prepared := range []bool{true, false} {
		t.Run(fmt.Sprintf("prepared template %v", prepared), func(t *testing.T) { testPostgresClone(t, prepared) })
	}
}

func testPostgresClone(t *testing.T, prepared bool) {
	creds := map[string]string{"username": "alice", "password": "pw-1", "database": "app", "root-password": "root-1"}
	c := startPGClone(t, prepared, creds, agentapi.Flag(agentapi.FlagServerOption, "max_connections=77"))
	ctx := context.Background()

	// The application user sees the dump's data and owns it: it writes rows and changes tables,
	// those postgres made and those of the dump's own role.
	shop := c.conn(t, "alice", "pw-1", "shop")
	var orders, fnCount int64
	if err := shop.QueryRow(ctx, "SELECT count(*), sales.order_count() FROM sales.paid").Scan(&orders, &fnCount); err != nil || orders != 1000 || fnCount != 1000 {
		t.Fatalf("alice reads %d paid orders, function says %d (%v), want 1000", orders, fnCount, err)
	}
	for _, stmt := range []string{
		"INSERT INTO sales.orders (status, email) VALUES ('new', 'X@Example.com')",
		"ALTER TABLE sales.orders ADD COLUMN total numeric",
		"CREATE INDEX ON sales.orders (email)",
		"INSERT INTO public.customers (name) VALUES ('cy')",
		"ALTER TABLE public.customers ADD COLUMN vip boolean",
		"ALTER TYPE sales.status ADD VALUE 'refunded'",
		"CREATE OR REPLACE VIEW sales.paid AS SELECT id, email FROM sales.orders WHERE status = 'paid'",
		"CREATE SCHEMA scratch",
		"TRUNCATE sales.orders",
	} {
		if _, err := shop.Exec(ctx, stmt); err != nil {
			t.Fatalf("alice: %s: %v", stmt, err)
		}
	}
	var owned int
	var spare bool
	err := shop.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_has_role('alice', relowner, 'USAGE')),
		EXISTS (SELECT FROM pg_database WHERE datname = 'myaas_spare') FROM pg_class WHERE relnamespace = 'sales'::regnamespace`).Scan(&owned, &spare)
	if err != nil || owned == 0 || spare {
		t.Fatalf("alice owns %d relations of the dump's schema, spare database left: %v (%v)", owned, spare, err)
	}
	// Its own database, made for the instance.
	if _, err := c.conn(t, "alice", "pw-1", "app").Exec(ctx, "CREATE TABLE mine (id int)"); err != nil {
		t.Fatalf("alice writes her own database: %v", err)
	}
	// Nothing else logs in over TCP: not the dump's role with its source password, not postgres.
	for _, l := range [][3]string{{"legacy", "legacy-pw", "shop"}, {"postgres", "", "postgres"}, {"postgres", "root-1", "postgres"}, {"alice", "pw-wrong", "shop"}} {
		if err := c.login(l[0], l[1], l[2], nil); err == nil {
			t.Errorf("%s logged in over TCP with %q", l[0], l[1])
		}
	}
	// A clone is durable whatever the import ran with, and reads the pod's hba file.
	var fsync, fullPageWrites, hbaFile, maxConnections string
	su := c.superuser(t, "postgres")
	for setting, dst := range map[string]*string{"fsync": &fsync, "full_page_writes": &fullPageWrites, "hba_file": &hbaFile, "max_connections": &maxConnections} {
		if err := su.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(dst); err != nil {
			t.Fatal(err)
		}
	}
	if fsync != "on" || fullPageWrites != "on" || hbaFile != filepath.Join(c.runDir, pgHBAName) || maxConnections != "77" {
		t.Fatalf("fsync %s, full_page_writes %s, hba_file %s, max_connections %s (--server-option)", fsync, fullPageWrites, hbaFile, maxConnections)
	}
	var legacyLogin bool
	var legacyPassword *string
	if err := c.superuser(t, "postgres").QueryRow(ctx, "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = 'legacy'").Scan(&legacyLogin, &legacyPassword); err != nil || legacyLogin || legacyPassword != nil {
		t.Fatalf("the dump's role: login %v, password %v (%v); want neither", legacyLogin, legacyPassword, err)
	}
	var superuser bool
	if err := shop.QueryRow(ctx, "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user").Scan(&superuser); err != nil || superuser {
		t.Fatalf("alice holds more than a developer needs: %v %v", superuser, err)
	}
	// The readiness probe logs in on the pod's socket with the Secret's password.
	socket := c.socket()
	if err := probe(ctx, engine.PostgreSQL{}, socket, "alice", "pw-1", "app", 3*time.Second); err != nil {
		t.Fatalf("probe on the socket: %v", err)
	}
	if err := probe(ctx, engine.PostgreSQL{}, socket, "alice", "pw-wrong", "app", 3*time.Second); err == nil {
		t.Fatal("the probe passed with a wrong password")
	}

	// The operator's idle check: its admin role sees a client's session, and not its own.
	admin := engine.Login{Addr: c.addr, Username: agentapi.AdminUsername, Password: "admin-root-1", Timeout: 3 * time.Second}
	n, err := engine.PostgreSQL{}.ClientSessions(ctx, admin)
	if err != nil || n != 2 {
		t.Fatalf("with alice's two sessions open the admin counts %d (%v)", n, err)
	}
	shop.Close(ctx)
	// The server ends a closed session's backend a moment after the client leaves.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, err := engine.PostgreSQL{}.ClientSessions(ctx, admin)
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after one closed the admin counts %d (%v)", n, err)
		}
	}
	adminConn := c.conn(t, agentapi.AdminUsername, "admin-root-1", "postgres")
	if _, err := adminConn.Exec(ctx, "CREATE TABLE x (id int)"); err == nil {
		t.Fatal("the admin role creates tables")
	}
	if err := c.login(agentapi.AdminUsername, "admin-root-1", "shop", nil); err == nil {
		t.Fatal("the admin role logs in to the dump's database")
	}

	// The Secret is the source of truth: edited, the running server follows it.
	creds["password"], creds["root-password"] = "pw-2", "root-2"
	writeSecrets(t, c.credDir, c.admDir, creds)
	c.waitLogin(t, "alice", "pw-2", "app", nil)
	c.waitLogin(t, agentapi.AdminUsername, "admin-root-2", "", nil)
	if err := c.login("alice", "pw-1", "app", nil); err == nil {
		t.Fatal("the old password still works")
	}
	if err := c.login(agentapi.AdminUsername, "admin-root-1", "", nil); err == nil {
		t.Fatal("the old admin password still works")
	}
	var stored string
	if err := c.superuser(t, "postgres").QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'").Scan(&stored); err != nil || !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") {
		t.Fatalf("alice's stored password %q (%v), want a SCRAM verifier", stored, err)
	}

	// SIGTERM reaches the server, which shuts down cleanly: the next start needs no recovery.
	if err := c.stop(); err != nil {
		t.Fatalf("agent start after SIGTERM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.datadir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid after the stop: %v", err)
	}
	out, err := exec.Command(postgrestest.Binary(t, "pg_controldata"), c.datadir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Database cluster state:               shut down\n") {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
}

func TestPostgresCloneRestartsWithTheSecretsCredentials(t *testing.T) {
	creds := map[string]string{"username": "bob", "password": "pw-1", "database": "shop", "root-password": "r"}
	c := startPGClone(t, true, creds, agentapi.Flag(agentapi.FlagExtraPrivilege, "CREATEDB"), agentapi.Flag(agentapi.FlagExtraPrivilege, "pg_read_all_data"))
	ctx := context.Background()
	var createdb, reader bool
	if err := c.conn(t, "bob", "pw-1", "shop").QueryRow(ctx,
		"SELECT rolcreatedb, pg_has_role('bob', 'pg_read_all_data', 'MEMBER') FROM pg_roles WHERE rolname = 'bob'").Scan(&createdb, &reader); err != nil || !createdb || !reader {
		t.Fatalf("extra privileges: CREATEDB %v, pg_read_all_data %v (%v)", createdb, reader, err)
	}
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	// A crash leaves a pid file a new pod must not trip on.
	if err := os.WriteFile(filepath.Join(c.datadir, "postmaster.pid"), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	again := &pgCloneRun{}
	*again = *c
	creds["password"] = "pw-2"
	writeSecrets(t, c.credDir, c.admDir, creds)
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- runStart(ctx2, []string{
			agentapi.Flag(agentapi.FlagEngine, "postgresql"), agentapi.Flag(agentapi.FlagDatadir, c.datadir),
			agentapi.Flag(agentapi.FlagRunDir, c.runDir), agentapi.Flag(agentapi.FlagCredentialsDir, c.credDir),
			agentapi.Flag(agentapi.FlagAdminCredentialsDir, c.admDir), agentapi.Flag(agentapi.FlagPort, strings.Split(c.addr, ":")[1]),
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	again.waitProbe(t, "bob", "pw-2", "shop")
	if err := again.login("bob", "pw-1", "shop", nil); err == nil {
		t.Fatal("the old password survived a restart with a new one")
	}
	// Without the flag the privilege is gone: each start gives exactly what the spec says.
	if err := again.conn(t, "bob", "pw-2", "shop").QueryRow(ctx, "SELECT rolcreatedb FROM pg_roles WHERE rolname = 'bob'").Scan(&createdb); err != nil || createdb {
		t.Fatalf("CREATEDB after a start without it: %v (%v)", createdb, err)
	}
}

func TestPostgresCloneServesVerifiedTLS(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA("test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	server, err := pki.IssueServer(ca, pki.ServiceDNSNames("shop", "team-a"), now)
	if err != nil {
		t.Fatal(err)
	}
	// As the kubelet mounts the certificate Secret: root's files, mode 0440, group the pod's.
	tlsDir := t.TempDir()
	writeSecretFiles(t, tlsDir, map[string]string{
		agentapi.TLSCertKey: string(server.CertPEM), agentapi.TLSPrivateKeyKey: string(server.KeyPEM), agentapi.TLSCAKey: string(ca.CertPEM),
	})
	if u := postgrestest.ServerUser(); u != nil {
		if err := postgrestest.Give(tlsDir); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{agentapi.TLSCertKey, agentapi.TLSPrivateKeyKey, agentapi.TLSCAKey} {
			if err := os.Chown(filepath.Join(tlsDir, k), 0, int(u.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mountCertificate := func(pair pki.KeyPair) {
		t.Helper()
		writeSecretFiles(t, tlsDir, map[string]string{
			agentapi.TLSCertKey: string(pair.CertPEM), agentapi.TLSPrivateKeyKey: string(pair.KeyPEM), agentapi.TLSCAKey: string(ca.CertPEM),
		})
		for _, k := range []string{agentapi.TLSCertKey, agentapi.TLSPrivateKeyKey, agentapi.TLSCAKey} {
			if u := postgrestest.ServerUser(); u != nil {
				if err := os.Chown(filepath.Join(tlsDir, k), 0, int(u.Gid)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(filepath.Join(tlsDir, k), 0o440); err != nil {
				t.Fatal(err)
			}
		}
	}
	mountCertificate(server)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	verified := &tls.Config{RootCAs: roots, ServerName: "shop.team-a.svc", MinVersion: tls.VersionTLS12}
	other, _ := pki.NewCA("another CA", now)
	otherRoots := x509.NewCertPool()
	otherRoots.AppendCertsFromPEM(other.CertPEM)
	creds := map[string]string{"username": "alice", "password": "pw", "database": "app", "root-password": "r"}

	for _, requireTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("requireSecureTransport=%v", requireTLS), func(t *testing.T) {
			flags := []string{agentapi.Flag(agentapi.FlagTLSDir, tlsDir)}
			if requireTLS {
				flags = append(flags, agentapi.Flag(agentapi.FlagRequireSecureTransport, "true"))
			}
			c := startPGClone(t, true, creds, flags...)
			c.waitLogin(t, "alice", "pw", "app", verified)
			if err := c.login("alice", "pw", "app", &tls.Config{RootCAs: otherRoots, ServerName: "shop.team-a.svc", MinVersion: tls.VersionTLS12}); err == nil {
				t.Fatal("a client trusting another CA connected")
			}
			if err := c.login("alice", "pw", "app", &tls.Config{RootCAs: roots, ServerName: "elsewhere.team-a.svc", MinVersion: tls.VersionTLS12}); err == nil {
				t.Fatal("a client asking for another host name connected")
			}
			plain := c.login("alice", "pw", "app", nil)
			if requireTLS && plain == nil {
				t.Fatal("a plain connection was accepted with requireSecureTransport")
			}
			if !requireTLS && plain != nil {
				t.Fatalf("without requireSecureTransport a plain client still connects: %v", plain)
			}
			// The pod's own probe, on the socket, works whatever the rules for TCP clients.
			if err := probe(context.Background(), engine.PostgreSQL{}, c.socket(), "alice", "pw", "app", 3*time.Second); err != nil {
				t.Fatalf("probe on the socket: %v", err)
			}
		})
	}

	// A certificate issued anew, as for an instance that claims a warm pool member, is served
	// by the running server without a restart.
	t.Run("certificate issued anew", func(t *testing.T) {
		mountCertificate(server)
		c := startPGClone(t, true, creds, agentapi.Flag(agentapi.FlagTLSDir, tlsDir))
		c.waitLogin(t, "alice", "pw", "app", verified)
		claimant := &tls.Config{RootCAs: roots, ServerName: "pr-12.team-a.svc", MinVersion: tls.VersionTLS12}
		if err := c.login("alice", "pw", "app", claimant); err == nil {
			t.Fatal("the first certificate already names pr-12")
		}
		renamed, err := pki.IssueServer(ca, append(pki.ServiceDNSNames("shop", "team-a"), pki.ServiceDNSNames("pr-12", "team-a")...), now)
		if err != nil {
			t.Fatal(err)
		}
		mountCertificate(renamed)
		c.waitLogin(t, "alice", "pw", "app", claimant)
		if err := c.stop(); err != nil {
			t.Fatalf("the server restarted or failed while loading the certificate: %v", err)
		}
	})
}

func TestPostgresStartRefuses(t *testing.T) {
	creds := map[string]string{"username": "a", "password": "b", "database": "c", "root-password": "d"}
	credDir, adminDir := credentialDirs(t, creds)
	for _, tc := range []struct {
		name    string
		o       startOptions
		wantErr string
	}{
		{"empty volume", startOptions{datadir: t.TempDir()}, "holds no PostgreSQL database"},
		{"MySQL privilege", startOptions{datadir: t.TempDir(), extraPrivileges: multiFlag{"CREATEDB", "PROCESS"}}, `extraPrivileges[1] "PROCESS" is not a privilege this operator grants on PostgreSQL`},
		{"CREATEROLE", startOptions{datadir: t.TempDir(), extraPrivileges: multiFlag{"CREATEROLE"}}, `extraPrivileges[0] "CREATEROLE"`},
		{"TLS required without a certificate", startOptions{datadir: pgTemplateDir(t, true), requireSecureTransport: true}, "--require-secure-transport needs --tls-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.engine, o.runDir, o.credentialsDir, o.adminDir, o.port = "postgresql", t.TempDir(), credDir, adminDir, freePort(t)
			_, err := startPostgresClone(context.Background(), engine.PostgreSQL{}, o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
