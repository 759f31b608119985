package agent

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/agentapi"
)

// probeOptions are the flags of `agent probe`.
type probeOptions struct {
	engine         string
	credentialsDir string
	addr           string
	timeout        time.Duration
}

func parseProbeFlags(args []string) (probeOptions, error) {
	var o probeOptions
	fs := newFlagSet("probe")
	fs.StringVar(&o.engine, agentapi.FlagEngine, "mariadb", "database engine")
	fs.StringVar(&o.credentialsDir, agentapi.FlagCredentialsDir, agentapi.CredentialsDir, "the instance's mounted Secret")
	fs.StringVar(&o.addr, agentapi.FlagAddr, "127.0.0.1:3306", "server address: host:port, or the path of its socket")
	fs.DurationVar(&o.timeout, "timeout", 4*time.Second, "give up after")
	return o, fs.Parse(args)
}

func runProbe(ctx context.Context, args []string) error {
	o, err := parseProbeFlags(args)
	if err != nil {
		return err
	}
	// Both engines speak the same protocol: o.engine matters once another engine does not.
	creds, err := readUserCredentials(o.credentialsDir)
	if err != nil {
		return err
	}
	return probe(ctx, o.addr, creds.Username, creds.Password, creds.Database, o.timeout)
}

// probe logs in with the instance's own credentials: Ready means usable, not merely running.
func probe(ctx context.Context, addr, user, password, database string, timeout time.Duration) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", addr, database
	if strings.HasPrefix(addr, "/") {
		// The pod's own socket: the server counts this login as the pod's, not a client's.
		cfg.Net = "unix"
	}
	cfg.Timeout, cfg.ReadTimeout = timeout, timeout
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("probe %s as %s: %w", addr, user, err)
	}
	return nil
}
