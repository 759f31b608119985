package agent

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// server is a database server the agent started and must stop cleanly.
type server struct {
	cmd    *exec.Cmd
	socket string
	exited chan error
}

func runAsRoot() bool { return os.Geteuid() == 0 }

// initDatadir creates an empty datadir. Anything already there is the remains of an interrupted
// import on this volume, never a revision: revisions are snapshots, not this PVC.
func initDatadir(ctx context.Context, eng engine.MySQLFamily, datadir string) error {
	if err := os.RemoveAll(datadir); err != nil {
		return fmt.Errorf("clear datadir %s: %w", datadir, err)
	}
	if err := os.MkdirAll(datadir, 0o750); err != nil {
		return fmt.Errorf("create datadir %s: %w", datadir, err)
	}
	name, args, err := eng.InitCommand(datadir, runAsRoot())
	if err != nil {
		return err
	}
	// A private tmpdir: a server starting beside this one (another import on the node, a test)
	// removes the temporary tables it finds in its tmpdir, which would break this bootstrap.
	tmp, err := os.MkdirTemp("", "myaas-init-")
	if err != nil {
		return fmt.Errorf("initialise datadir: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initialise datadir with %s: %w\n%s", filepath.Base(name), err, tail(out, 2000))
	}
	return nil
}

// startServer starts the engine's server on datadir with opts, listening on socket.
func startServer(ctx context.Context, eng engine.MySQLFamily, datadir, runDir string, opts []string, serverLog io.Writer) (*server, error) {
	bin, err := engine.FindBinary(eng.ServerBinaries())
	if err != nil {
		return nil, err
	}
	socket := filepath.Join(runDir, agentapi.SocketName)
	args := append([]string{
		"--no-defaults",
		"--datadir=" + datadir,
		"--socket=" + socket,
		"--pid-file=" + filepath.Join(runDir, "mysqld.pid"),
		"--tmpdir=" + runDir,
	}, opts...)
	if runAsRoot() {
		args = append(args, "--user=root")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = serverLog, serverLog
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{cmd: cmd, socket: socket, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	if err := s.waitReady(ctx, 5*time.Minute); err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	return s, nil
}

func (s *server) rootDB() (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", s.socket
	cfg.MultiStatements = true
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

func (s *server) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		db, err := s.rootDB()
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		if err == nil {
			return nil
		}
		select {
		case werr := <-s.exited:
			s.exited <- werr
			return fmt.Errorf("the server exited while starting, see its log above: %w", werr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not answer within %s: %w", timeout, err)
		}
	}
}

// exec runs statements as root.
func (s *server) exec(ctx context.Context, stmts ...string) error {
	db, err := s.rootDB()
	if err != nil {
		return err
	}
	defer db.Close()
	for _, stmt := range stmts {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

// shutdown stops the server with a slow, clean shutdown: every change is in the tablespaces and
// the redo log is empty, so clones start without crash recovery.
func (s *server) shutdown(ctx context.Context) error {
	if err := s.exec(ctx, "SET GLOBAL innodb_fast_shutdown = 0", "SHUTDOWN"); err != nil {
		var merr *mysql.MySQLError
		// The connection may drop before SHUTDOWN answers; the exit below is what counts.
		if errors.As(err, &merr) {
			return fmt.Errorf("shut down the server: %w", err)
		}
	}
	select {
	case err := <-s.exited:
		s.exited <- err
		if err != nil {
			return fmt.Errorf("the server exited with %w during shutdown", err)
		}
		return nil
	case <-ctx.Done():
		// Stopped from outside: the caller kills the server, the report must go out before the
		// pod's grace period ends.
		return ctx.Err()
	case <-time.After(30 * time.Minute):
		return errors.New("the server did not shut down within 30 minutes")
	}
}

// kill stops a server that is being abandoned (a failed import).
func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.exited <- nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// accounts lists the server's accounts.
func (s *server) accounts(ctx context.Context) ([]engine.Account, error) {
	db, err := s.rootDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return listAccounts(ctx, db)
}

// dropForeignAccounts leaves the template with the engine's own accounts and those kept.
func (s *server) dropForeignAccounts(ctx context.Context, keep []string, initial []engine.Account) (int, error) {
	db, err := s.rootDB()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return dropForeignAccounts(ctx, db, keep, initial)
}

// requireUserTables fails a load that left nothing to clone: dumps of the wrong database, or
// only of users and grants, would otherwise replace the last good revision with an empty one.
func (s *server) requireUserTables(ctx context.Context) error {
	db, err := s.rootDB()
	if err != nil {
		return err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables
		WHERE table_schema NOT IN ('mysql', 'sys', 'information_schema', 'performance_schema')
		AND table_type <> 'VIEW'`).Scan(&n)
	if err != nil {
		return fmt.Errorf("count the loaded tables: %w", err)
	}
	if n == 0 {
		return failWith(agentapi.ReasonNoUserTables, errors.New("the load left no table outside mysql, sys, information_schema and performance_schema: the dumps hold no data"))
	}
	return nil
}
