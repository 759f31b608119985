//go:build e2e

package e2e

import (
	"crypto/x509"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// engineCase is what the engine-independent flows need to know of one engine: the rest of a flow,
// its SQL included, is the same for every engine.
type engineCase struct {
	engine myaasv1.EngineSpec
	// dumps is the dump server's directory of this engine's dumps of the shop (dumpserver).
	dumps string
	// database is what an instance's credentials are for, to reach the dump's tables; empty keeps
	// the default. PostgreSQL has no cross-database queries: the dump's database is the one.
	database string
	// superuser is the server's own administrator, which must never log in over the network.
	superuser string
	// connect logs in as an instance's application user through its Secret; open as anyone.
	connect func(t *testing.T, ns, instance string) *sql.DB
	open    func(t *testing.T, addr, user, password, database string) *sql.DB
	// The Secret's engine-specific values: the type, the uri's and jdbc-uri's schemes, and the
	// dsn read back as a URL-like connection.
	secretType, uriScheme, jdbcScheme string
	parseDSN                          func(dsn string) (connection, error)
	// clientImage runs migrate, a CI job's script: it waits for the server, then runs the
	// migration and the queries of the CI flow through the Secret's keys in its environment.
	clientImage, migrate string
}

var engines = []engineCase{
	{
		engine:     myaasv1.EngineSpec{Type: myaasv1.EngineMariaDB, Image: "localhost/myaas/mariadb:10.11"},
		superuser:  "root",
		connect:    connect,
		open:       open,
		secretType: "mysql", uriScheme: "mysql", jdbcScheme: "jdbc:mariadb",
		parseDSN: func(dsn string) (connection, error) {
			c, err := mysql.ParseDSN(dsn)
			if err != nil {
				return connection{}, err
			}
			return connection{addr: c.Addr, user: c.User, password: c.Passwd, database: c.DBName}, nil
		},
		clientImage: "localhost/myaas/mariadb:10.11",
		migrate: `for i in $(seq 30); do mariadb-admin -h"$host" -P"$port" -u"$username" -p"$password" --connect-timeout=2 ping >/dev/null 2>&1 && break; sleep 1; done
mariadb -h"$host" -P"$port" -u"$username" -p"$password" "$database" -e "CREATE TABLE schema_migrations (version int PRIMARY KEY); INSERT INTO schema_migrations VALUES (20261124); SELECT COUNT(*) FROM shop.orders; SELECT version FROM schema_migrations;"`,
	},
	{
		engine:     myaasv1.EngineSpec{Type: myaasv1.EnginePostgreSQL, Image: "localhost/myaas/postgres:15"},
		dumps:      "postgresql/",
		database:   "shop",
		superuser:  "postgres",
		connect:    connectPostgres,
		open:       openPostgres,
		secretType: "postgresql", uriScheme: "postgresql", jdbcScheme: "jdbc:postgresql",
		parseDSN: func(dsn string) (connection, error) {
			c, err := pgx.ParseConfig(dsn)
			if err != nil {
				return connection{}, err
			}
			return connection{addr: net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), user: c.User, password: c.Password, database: c.Database}, nil
		},
		clientImage: "localhost/myaas/postgres:15",
		// The uri asks for sslmode=verify-full: libpq verifies with the Secret's ca.crt.
		migrate: `for i in $(seq 30); do pg_isready -h "$host" -p "$port" -t 2 >/dev/null 2>&1 && break; sleep 1; done
PGSSLROOTCERT=/etc/db/ca.crt psql "$uri" -v ON_ERROR_STOP=1 -c "CREATE TABLE schema_migrations (version int PRIMARY KEY)" -c "INSERT INTO schema_migrations VALUES (20261124)" -c "SELECT COUNT(*) FROM shop.orders" -c "SELECT version FROM schema_migrations"`,
	},
}

func (e engineCase) name() string { return string(e.engine.Type) }

// forEachEngine runs a flow once per engine, each as a subtest named after the engine.
func forEachEngine(t *testing.T, flow func(t *testing.T, e engineCase)) {
	for _, e := range engines {
		t.Run(e.name(), func(t *testing.T) { flow(t, e) })
	}
}

// dump is the URL of one of the engine's dumps on the dump server at base.
func (e engineCase) dump(base, name string) string { return base + "/" + e.dumps + name }

// onEngine makes a template the engine's (a mutation for newTemplate).
func (e engineCase) onEngine(d *myaasv1.DatabaseTemplate) { d.Spec.Engine = e.engine }

// withDumpDatabase gives an instance credentials for the dump's database (for newInstance).
func (e engineCase) withDumpDatabase(d *myaasv1.DatabaseInstance) {
	if e.database != "" {
		d.Spec.Database = e.database
	}
}

// connection is where and as whom one of the Secret's keys says to connect.
type connection struct {
	addr, user, password, database string
}

// checkCredentials checks every key of an instance's Secret: each of uri, jdbc-uri and dsn leads
// to the same server, user, password and database as the single keys, in the engine's formats.
func (e engineCase) checkCredentials(t *testing.T, ns, instance string, creds map[string]string) {
	t.Helper()
	want := connection{
		addr: net.JoinHostPort(instance+"."+ns+".svc", creds["port"]),
		user: creds["username"], password: creds["password"], database: creds["database"],
	}
	if want.user == "" || want.password == "" || want.database == "" || creds["port"] == "" {
		t.Errorf("Secret %s-credentials lacks username, password, database or port: %v", instance, keys(creds))
	}
	if creds["host"] != instance+"."+ns+".svc" {
		t.Errorf("host %q, want the Service's name %s.%s.svc", creds["host"], instance, ns)
	}
	if creds["type"] != e.secretType || creds["provider"] != "myaas" {
		t.Errorf("type %q, provider %q; want %s, myaas", creds["type"], creds["provider"], e.secretType)
	}
	uri, err := urlConnection(creds["uri"], e.uriScheme)
	if err != nil || uri != want {
		t.Errorf("uri %q: %+v, %v; want %+v", creds["uri"], uri, err, want)
	}
	jdbc, err := urlConnection(strings.TrimPrefix(creds["jdbc-uri"], "jdbc:"), strings.TrimPrefix(e.jdbcScheme, "jdbc:"))
	if err != nil || !strings.HasPrefix(creds["jdbc-uri"], e.jdbcScheme+"://") || jdbc != want {
		t.Errorf("jdbc-uri %q: %+v, %v; want %+v", creds["jdbc-uri"], jdbc, err, want)
	}
	dsn, err := e.parseDSN(creds["dsn"])
	if err != nil || dsn != want {
		t.Errorf("dsn %q: %+v, %v; want %+v", creds["dsn"], dsn, err, want)
	}
}

// urlConnection reads a connection URL, with the credentials in its user info or, as JDBC has
// them, in its user and password parameters.
func urlConnection(raw, scheme string) (connection, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return connection{}, err
	}
	if u.Scheme != scheme {
		return connection{}, fmt.Errorf("scheme %q, want %q", u.Scheme, scheme)
	}
	c := connection{addr: u.Host, database: strings.TrimPrefix(u.Path, "/"), user: u.Query().Get("user"), password: u.Query().Get("password")}
	if u.User != nil {
		c.user = u.User.Username()
		c.password, _ = u.User.Password()
	}
	return c, nil
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// connectPostgres logs in with the Secret's uri, at the pod's address: the uri's host is the
// Service's name, which only the cluster's DNS resolves.
func connectPostgres(t *testing.T, ns, instance string) *sql.DB {
	t.Helper()
	creds := secretData(t, ns, instance+"-credentials")
	cfg, err := pgx.ParseConfig(creds["uri"])
	if err != nil {
		t.Fatalf("the Secret's uri: %v", err)
	}
	// The uri asks for a verified server (sslmode=verify-full); ca.crt is what libpq's
	// sslrootcert would name.
	if cfg.TLSConfig != nil {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM([]byte(creds["ca.crt"])) {
			t.Fatalf("the Secret's ca.crt holds no certificate")
		}
		cfg.TLSConfig.RootCAs = roots
	}
	return openPostgresConfig(t, cfg, podAddr(t, ns, instance))
}

func openPostgres(t *testing.T, addr, user, password, database string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password, cfg.Database = user, password, database
	return openPostgresConfig(t, cfg, addr)
}

func openPostgresConfig(t *testing.T, cfg *pgx.ConnConfig, addr string) *sql.DB {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.Port, cfg.ConnectTimeout = host, uint16(p), 10*time.Second
	// The fallbacks (without TLS, under sslmode=prefer) would dial the Service's name again.
	for _, fb := range cfg.Fallbacks {
		fb.Host, fb.Port = host, uint16(p)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}
