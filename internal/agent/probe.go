package agent

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
)

func runProbe(ctx context.Context, args []string) error {
	fs := newFlagSet("probe")
	engineName := fs.String("engine", "mariadb", "database engine")
	credentialsDir := fs.String("credentials-dir", "/etc/myaas/credentials", "the instance's mounted Secret")
	addr := fs.String("addr", "127.0.0.1:3306", "server address")
	timeout := fs.Duration("timeout", 4*time.Second, "give up after")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_ = engineName // both engines speak the same protocol
	creds, err := readCredentials(*credentialsDir)
	if err != nil {
		return err
	}
	return probe(ctx, *addr, creds.Username, creds.Password, creds.Database, *timeout)
}

// probe logs in with the instance's own credentials: Ready means usable, not merely running.
func probe(ctx context.Context, addr, user, password, database string, timeout time.Duration) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", addr, database
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
