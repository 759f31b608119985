package engine

import (
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/agentapi"
)

// Connection is where and as whom a client reaches an instance.
type Connection struct {
	Host     string
	Port     int32
	Username string
	Password string
	Database string
}

func (c Connection) hostPort() string { return c.Host + ":" + strconv.Itoa(int(c.Port)) }

// Login is one login to a server: at Addr, host:port or the absolute path of the server's socket,
// with TLS unless it is nil.
type Login struct {
	Addr     string
	Username string
	Password string
	Database string
	TLS      *tls.Config
	// Timeout bounds the whole login and query; zero means 5 s.
	Timeout time.Duration
	// DialTimeout bounds the TCP connect alone; zero means 1 s. A server starting on a clone
	// refuses at once or answers in milliseconds: a short dial timeout keeps one dropped SYN (a
	// Service not routed yet) from holding a login back until the kernel resends it, a second later.
	DialTimeout time.Duration
}

func (l Login) timeout() time.Duration {
	if l.Timeout == 0 {
		return 5 * time.Second
	}
	return l.Timeout
}

func (l Login) dialTimeout() time.Duration {
	if l.DialTimeout == 0 {
		return min(l.timeout(), time.Second)
	}
	return min(l.timeout(), l.DialTimeout)
}

func (l Login) isSocket() bool { return filepath.IsAbs(l.Addr) }

// mysqlFamily holds what MariaDB and MySQL do alike for clients: the protocol, the driver, the
// Secret's keys.
type mysqlFamily struct{}

func (mysqlFamily) PortName() string            { return "mysql" }
func (mysqlFamily) Socket(runDir string) string { return filepath.Join(runDir, agentapi.SocketName) }
func (mysqlFamily) BindingType() string         { return "servicebinding.io/mysql" }

// mysqlConnectionDetails differ between the engines only in the JDBC URI's scheme, which picks
// MariaDB's or MySQL's Connector/J.
func mysqlConnectionDetails(c Connection, jdbcScheme string) map[string]string {
	uri := url.URL{Scheme: "mysql", User: url.UserPassword(c.Username, c.Password), Host: c.hostPort(), Path: "/" + c.Database}
	jdbcQuery := url.Values{"user": {c.Username}, "password": {c.Password}}
	dsn := mysql.NewConfig()
	dsn.User, dsn.Passwd, dsn.Net, dsn.Addr, dsn.DBName = c.Username, c.Password, "tcp", c.hostPort(), c.Database
	dsn.ParseTime = true
	return map[string]string{
		agentapi.SecretKeyURI:     uri.String(),
		agentapi.SecretKeyJDBCURI: fmt.Sprintf("jdbc:%s://%s/%s?%s", jdbcScheme, c.hostPort(), c.Database, jdbcQuery.Encode()),
		agentapi.SecretKeyDSN:     dsn.FormatDSN(),
		agentapi.SecretKeyType:    "mysql",
	}
}

// mysqlRequireVerifiedTLS: jdbcTLS is the JDBC parameter asking for a verified server name, which
// MariaDB Connector/J 3 and MySQL Connector/J 8 spell differently.
func mysqlRequireVerifiedTLS(d map[string]string, jdbcTLS url.Values) error {
	uri, err := url.Parse(d[agentapi.SecretKeyURI])
	if err != nil {
		return fmt.Errorf("uri: %w", err)
	}
	q := uri.Query()
	q.Set("ssl-mode", "VERIFY_IDENTITY")
	uri.RawQuery = q.Encode()
	d[agentapi.SecretKeyURI] = uri.String()
	d[agentapi.SecretKeyJDBCURI] += "&" + jdbcTLS.Encode()
	dsn, err := mysql.ParseDSN(d[agentapi.SecretKeyDSN])
	if err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	dsn.TLSConfig = "true"
	d[agentapi.SecretKeyDSN] = dsn.FormatDSN()
	return nil
}

func (f mysqlFamily) open(l Login) (*sql.DB, error) { return f.openWith(l, nil) }

// openWith opens l's connections with the driver's options, changed by adjust unless nil.
func (mysqlFamily) openWith(l Login, adjust func(*mysql.Config)) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = l.Username, l.Password, "tcp", l.Addr, l.Database
	if l.isSocket() {
		// The pod's own socket: the server counts this login as the pod's, not a client's.
		cfg.Net = "unix"
	}
	cfg.TLS = l.TLS
	cfg.Timeout, cfg.ReadTimeout = l.dialTimeout(), l.timeout()
	if adjust != nil {
		adjust(cfg)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(connector), nil
}

func (f mysqlFamily) Login(ctx context.Context, l Login) error {
	db, err := f.open(l)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, l.timeout())
	defer cancel()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("log in to %s as %s: %w", l.Addr, l.Username, err)
	}
	return nil
}

// changeOwnPassword runs stmt, whose one placeholder is the password, as l. The server takes no
// placeholder there: the driver quotes the password into the statement, as the connection's
// sql_mode asks.
func (f mysqlFamily) changeOwnPassword(ctx context.Context, l Login, stmt, password string) error {
	db, err := f.openWith(l, func(cfg *mysql.Config) { cfg.InterpolateParams = true })
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, l.timeout())
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt, password); err != nil {
		return fmt.Errorf("change the password of %s on %s: %w", l.Username, l.Addr, err)
	}
	return nil
}

func (f mysqlFamily) ClientSessions(ctx context.Context, l Login) (int, error) {
	db, err := f.open(l)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, l.timeout())
	defer cancel()
	var n int
	err = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.PROCESSLIST
		WHERE ID <> CONNECTION_ID() AND HOST <> 'localhost'
		AND USER NOT IN ('system user', 'event_scheduler', 'unauthenticated user')
		AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID')`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the sessions on %s: %w", l.Addr, err)
	}
	return n, nil
}
