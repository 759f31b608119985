package engine

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/myaas/myaas/internal/agentapi"
)

// The Secret's uri and dsn must parse, in the engines' own drivers, back to what they were made
// from, whatever the password holds.
func TestConnectionDetailsParseInTheDrivers(t *testing.T) {
	c := Connection{Host: "shop.dev.svc", Port: 0, Username: "app", Password: `p'a s\s:@/?#"w`, Database: "shop"}
	for _, eng := range []Engine{MariaDB{}, MySQL{}, PostgreSQL{}} {
		t.Run(eng.Name(), func(t *testing.T) {
			c := c
			c.Port = eng.Port()
			d := eng.ConnectionDetails(c)
			uri, err := url.Parse(d[agentapi.SecretKeyURI])
			if err != nil {
				t.Fatalf("uri %q: %v", d[agentapi.SecretKeyURI], err)
			}
			if pw, _ := uri.User.Password(); uri.User.Username() != c.Username || pw != c.Password || uri.Path != "/"+c.Database {
				t.Errorf("uri %q does not hold the credentials", uri)
			}
			if !strings.HasPrefix(d[agentapi.SecretKeyJDBCURI], "jdbc:") {
				t.Errorf("jdbc-uri %q", d[agentapi.SecretKeyJDBCURI])
			}
			switch eng.(type) {
			case PostgreSQL:
				for _, key := range []string{agentapi.SecretKeyURI, agentapi.SecretKeyDSN} {
					cfg, err := pgx.ParseConfig(d[key])
					if err != nil {
						t.Fatalf("%s %q: %v", key, d[key], err)
					}
					if cfg.Host != c.Host || int32(cfg.Port) != c.Port || cfg.User != c.Username || cfg.Password != c.Password || cfg.Database != c.Database {
						t.Errorf("%s parses to %s:%d %s/%q db %s", key, cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database)
					}
				}
				if d[agentapi.SecretKeyType] != "postgresql" {
					t.Errorf("type %q", d[agentapi.SecretKeyType])
				}
			default:
				cfg, err := mysql.ParseDSN(d[agentapi.SecretKeyDSN])
				if err != nil {
					t.Fatalf("dsn %q: %v", d[agentapi.SecretKeyDSN], err)
				}
				if cfg.Addr != "shop.dev.svc:3306" || cfg.User != c.Username || cfg.Passwd != c.Password || cfg.DBName != c.Database {
					t.Errorf("dsn parses to %+v", cfg)
				}
			}
		})
	}
}

// With TLS required, what each driver reads asks for a verified server name.
func TestRequireVerifiedTLS(t *testing.T) {
	c := Connection{Host: "shop.dev.svc", Port: 5432, Username: "app", Password: "pw", Database: "shop"}
	d := PostgreSQL{}.ConnectionDetails(c)
	if err := (PostgreSQL{}).RequireVerifiedTLS(d); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{agentapi.SecretKeyURI, agentapi.SecretKeyDSN} {
		cfg, err := pgx.ParseConfig(d[key])
		if err != nil {
			t.Fatalf("%s %q: %v", key, d[key], err)
		}
		if cfg.TLSConfig == nil || cfg.TLSConfig.InsecureSkipVerify || cfg.TLSConfig.ServerName != c.Host || len(cfg.Fallbacks) != 0 {
			t.Errorf("%s %q does not require a verified server", key, d[key])
		}
	}
	if !strings.Contains(d[agentapi.SecretKeyJDBCURI], "sslmode=verify-full") {
		t.Errorf("jdbc-uri %q", d[agentapi.SecretKeyJDBCURI])
	}
}

func TestPostgreSQLBinary(t *testing.T) {
	if _, err := exec.LookPath("initdb"); err != nil && !fileExists("/usr/lib/postgresql") {
		t.Skip("PostgreSQL is not installed")
	}
	p, err := PostgreSQL{}.Binary("initdb")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "initdb" {
		t.Errorf("initdb found at %s", p)
	}
	if _, err := (PostgreSQL{}).Binary("no-such-program"); err == nil || !strings.Contains(err.Error(), "no-such-program not found") {
		t.Errorf("a missing program gives %v", err)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
