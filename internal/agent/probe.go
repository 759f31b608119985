package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
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
	eng, err := engine.Lookup(o.engine)
	if err != nil {
		return err
	}
	creds, err := readUserCredentials(o.credentialsDir)
	if err != nil {
		return err
	}
	return probe(ctx, eng, o.addr, creds.Username, creds.Password, creds.Database, o.timeout)
}

// probe logs in with the instance's own credentials: Ready means usable, not merely running.
func probe(ctx context.Context, eng engine.Engine, addr, user, password, database string, timeout time.Duration) error {
	err := eng.Login(ctx, engine.Login{Addr: addr, Username: user, Password: password, Database: database, Timeout: timeout})
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}
