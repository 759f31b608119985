package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/myaas/myaas/internal/agentapi"
)

// PostgreSQL is PostgreSQL 13 and later. The agent's import and clone start for it live in
// internal/agent's pg_*.go; what the controllers and builders ask of it is here.
type PostgreSQL struct{}

func (PostgreSQL) Name() string                       { return "postgresql" }
func (PostgreSQL) DefaultVersion() string             { return "17" }
func (PostgreSQL) DefaultImage(version string) string { return "postgres:" + version }
func (PostgreSQL) Port() int32                        { return 5432 }
func (PostgreSQL) PortName() string                   { return "postgresql" }
func (PostgreSQL) BindingType() string                { return "servicebinding.io/postgresql" }

// Socket is the file libpq and the server name after the port, in the socket directory.
func (p PostgreSQL) Socket(runDir string) string {
	return filepath.Join(runDir, ".s.PGSQL."+strconv.Itoa(int(p.Port())))
}

func (PostgreSQL) ConnectionDetails(c Connection) map[string]string {
	uri := url.URL{Scheme: "postgresql", User: url.UserPassword(c.Username, c.Password), Host: c.hostPort(), Path: "/" + c.Database}
	jdbcQuery := url.Values{"user": {c.Username}, "password": {c.Password}}
	return map[string]string{
		agentapi.SecretKeyURI:     uri.String(),
		agentapi.SecretKeyJDBCURI: fmt.Sprintf("jdbc:postgresql://%s/%s?%s", c.hostPort(), url.PathEscape(c.Database), jdbcQuery.Encode()),
		agentapi.SecretKeyDSN: libpqDSN([][2]string{
			{"host", c.Host}, {"port", strconv.Itoa(int(c.Port))}, {"user", c.Username},
			{"password", c.Password}, {"dbname", c.Database},
		}),
		agentapi.SecretKeyType: "postgresql",
	}
}

// RequireVerifiedTLS asks libpq, pgJDBC and every driver that reads a libpq URI or DSN for TLS
// with the server's name checked against the CA: verify-full is the only sslmode that does both.
func (PostgreSQL) RequireVerifiedTLS(d map[string]string) error {
	uri, err := url.Parse(d[agentapi.SecretKeyURI])
	if err != nil {
		return fmt.Errorf("uri: %w", err)
	}
	q := uri.Query()
	q.Set("sslmode", "verify-full")
	uri.RawQuery = q.Encode()
	d[agentapi.SecretKeyURI] = uri.String()
	d[agentapi.SecretKeyJDBCURI] += "&" + url.Values{"sslmode": {"verify-full"}}.Encode()
	d[agentapi.SecretKeyDSN] += " sslmode=verify-full"
	return nil
}

// libpqDSN writes libpq's keyword/value form: values are single-quoted, with \ and ' escaped.
func libpqDSN(kv [][2]string) string {
	parts := make([]string, 0, len(kv))
	esc := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	for _, p := range kv {
		parts = append(parts, p[0]+"='"+esc.Replace(p[1])+"'")
	}
	return strings.Join(parts, " ")
}

func (p PostgreSQL) connConfig(l Login) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password, cfg.Database = l.Username, l.Password, l.Database
	if cfg.Database == "" {
		// A login that names no database (the operator's idle check) goes to the maintenance
		// database rather than, as libpq would, to one named after the role.
		cfg.Database = PostgresMaintenanceDB
	}
	cfg.TLSConfig, cfg.Fallbacks = l.TLS, nil
	// The connect and the whole of the start-up (TLS, authentication) each get their bound.
	cfg.DialFunc = (&net.Dialer{Timeout: l.dialTimeout()}).DialContext
	cfg.ConnectTimeout = min(l.timeout(), time.Second)
	if l.isSocket() {
		// pgx dials a socket directory and the port, as libpq does.
		cfg.Host, cfg.Port, cfg.TLSConfig = filepath.Dir(l.Addr), uint16(p.Port()), nil
		if n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(l.Addr), ".s.PGSQL.")); err == nil {
			cfg.Port = uint16(n)
		}
		return cfg, nil
	}
	host, port, err := splitHostPort(l.Addr)
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = host, port
	if cfg.TLSConfig != nil && cfg.TLSConfig.ServerName == "" {
		cfg.TLSConfig = cfg.TLSConfig.Clone()
		cfg.TLSConfig.ServerName = host
	}
	return cfg, nil
}

func splitHostPort(addr string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: port: %w", addr, err)
	}
	return host, uint16(n), nil
}

func (p PostgreSQL) connect(ctx context.Context, l Login) (*pgx.Conn, error) {
	cfg, err := p.connConfig(l)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("log in to %s as %s: %w", l.Addr, l.Username, err)
	}
	return conn, nil
}

func (p PostgreSQL) Login(ctx context.Context, l Login) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout())
	defer cancel()
	conn, err := p.connect(ctx, l)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("log in to %s as %s: %w", l.Addr, l.Username, err)
	}
	return nil
}

// ChangeOwnPassword implements Engine: a role may change its own password. The server is sent
// the SCRAM verifier, never the password.
func (p PostgreSQL) ChangeOwnPassword(ctx context.Context, l Login, password string) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout())
	defer cancel()
	conn, err := p.connect(ctx, l)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return fmt.Errorf("salt: %w", err)
	}
	if _, err := conn.Exec(ctx, "ALTER ROLE CURRENT_USER PASSWORD "+pgPassword(password, salt)); err != nil {
		return fmt.Errorf("change the password of %s on %s: %w", l.Username, l.Addr, err)
	}
	return nil
}

// ClientSessions counts client backends that came over TCP: the pod's own logins come through the
// socket and have no client address. The operator's admin role holds pg_read_all_stats (see
// PostgresAdminRole), without which other roles' sessions show no address.
func (p PostgreSQL) ClientSessions(ctx context.Context, l Login) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout())
	defer cancel()
	conn, err := p.connect(ctx, l)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND client_addr IS NOT NULL`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the sessions on %s: %w", l.Addr, err)
	}
	return n, nil
}

// PostgresSuperuser is the role initdb makes and the pod's own logins use, over the socket only.
const PostgresSuperuser = "postgres"

// Binary finds one of PostgreSQL's programs (postgres, initdb, psql, pg_restore, pg_ctl): on PATH,
// or in the versioned directory Debian and the official images install them in.
func (PostgreSQL) Binary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest first: an image carries one server, a test machine may carry several.
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	dirs = append(dirs, "/usr/local/pgsql/bin")
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in the image: neither on PATH nor in /usr/lib/postgresql/*/bin", name)
}

// versionOf is the major version in /usr/lib/postgresql/<major>/bin.
func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// PostgresOSUser is who PostgreSQL's programs must run as when the caller is root, as initdb and
// postgres refuse to: the image's postgres user, or nobody where there is none. Nil when the
// caller is not root (the pods run as the image's user already).
func PostgresOSUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(PostgresSuperuser)
	if err != nil {
		return &syscall.Credential{Uid: 65534, Gid: 65534}, nil
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", u.Username, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
