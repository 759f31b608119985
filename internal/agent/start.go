package agent

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// startOptions are the flags of `agent start`.
type startOptions struct {
	engine         string
	datadir        string
	runDir         string
	credentialsDir string
	serverID       uint
	serverOptions  multiFlag
	port           int
}

func parseStartFlags(args []string) (startOptions, error) {
	var o startOptions
	fs := newFlagSet("start")
	fs.StringVar(&o.engine, agentapi.FlagEngine, "mariadb", "database engine: mariadb or mysql")
	fs.StringVar(&o.datadir, agentapi.FlagDatadir, agentapi.DataDir, "the cloned datadir")
	fs.StringVar(&o.runDir, agentapi.FlagRunDir, agentapi.RunDir, "directory for the socket, pid and init file")
	fs.StringVar(&o.credentialsDir, agentapi.FlagCredentialsDir, agentapi.CredentialsDir, "the instance's mounted Secret")
	fs.UintVar(&o.serverID, agentapi.FlagServerID, 1, "server_id of this instance")
	fs.Var(&o.serverOptions, agentapi.FlagServerOption, "server option name=value (repeatable)")
	fs.IntVar(&o.port, agentapi.FlagPort, 3306, "TCP port")
	return o, fs.Parse(args)
}

// readCredentials reads the instance's mounted Secret.
func readCredentials(dir string) (engine.Credentials, error) {
	read := func(key string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, key))
		if err != nil {
			return "", fmt.Errorf("credentials: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	var c engine.Credentials
	var err error
	for _, f := range []struct {
		key string
		dst *string
	}{
		{agentapi.SecretKeyUsername, &c.Username},
		{agentapi.SecretKeyPassword, &c.Password},
		{agentapi.SecretKeyDatabase, &c.Database},
		{agentapi.SecretKeyRootPassword, &c.RootPassword},
	} {
		if *f.dst, err = read(f.key); err != nil {
			return c, err
		}
		if *f.dst == "" {
			return c, fmt.Errorf("credentials: key %s is empty", f.key)
		}
	}
	return c, nil
}

// startCommand prepares the datadir and returns the server command line. Every start rewrites the
// init file from the Secret, so it is idempotent and a restarted pod keeps its credentials.
func startCommand(o startOptions) (string, []string, error) {
	eng, err := engine.Lookup(o.engine)
	if err != nil {
		return "", nil, err
	}
	creds, err := readCredentials(o.credentialsDir)
	if err != nil {
		return "", nil, err
	}
	if st, err := os.Stat(filepath.Join(o.datadir, "mysql")); err != nil || !st.IsDir() {
		return "", nil, fmt.Errorf("%s holds no database: the clone of the template's snapshot is missing or empty", o.datadir)
	}
	keep, err := eng.PrepareClone(o.datadir)
	if err != nil {
		return "", nil, err
	}
	extra, err := serverOptions(o.serverOptions)
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(o.runDir, 0o750); err != nil {
		return "", nil, err
	}
	initFile := filepath.Join(o.runDir, "init.sql")
	sql := strings.Join(eng.CredentialSQL(creds), ";\n") + ";\n"
	if err := os.WriteFile(initFile, []byte(sql), 0o600); err != nil {
		return "", nil, fmt.Errorf("write init file: %w", err)
	}
	scratch, err := filepath.Rel(o.datadir, o.runDir)
	if err != nil {
		return "", nil, fmt.Errorf("run dir %s relative to the datadir: %w", o.runDir, err)
	}
	bin, err := engine.FindBinary(eng.ServerBinaries())
	if err != nil {
		return "", nil, err
	}
	args := append([]string{
		bin,
		"--no-defaults",
		"--datadir=" + o.datadir,
		"--socket=" + filepath.Join(o.runDir, "mysqld.sock"),
		"--pid-file=" + filepath.Join(o.runDir, "mysqld.pid"),
		"--tmpdir=" + o.runDir,
		"--bind-address=0.0.0.0",
		fmt.Sprintf("--port=%d", o.port),
		"--init-file=" + initFile,
	}, eng.ServingOptions(bufferPoolSize(), uint32(o.serverID), scratch)...)
	args = append(args, keep...)
	args = append(args, extra...)
	if runAsRoot() {
		args = append(args, "--user=root")
	}
	return bin, args, nil
}

func runStart(_ context.Context, args []string) error {
	o, err := parseStartFlags(args)
	if err != nil {
		return err
	}
	bin, argv, err := startCommand(o)
	if err != nil {
		return err
	}
	log.Printf("starting %s on %s", filepath.Base(bin), o.datadir)
	// The server replaces the agent as PID 1, so it receives SIGTERM and shuts down cleanly.
	return syscall.Exec(bin, argv, os.Environ())
}
