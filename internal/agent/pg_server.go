package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/myaas/myaas/internal/engine"
)

// pgServer is a postgres the agent started and must stop cleanly.
type pgServer struct {
	eng       engine.PostgreSQL
	cmd       *exec.Cmd
	socketDir string
	exited    chan error
}

// pgCommand runs one of PostgreSQL's programs, as cred when the agent is root.
func pgCommand(ctx context.Context, eng engine.PostgreSQL, cred *syscall.Credential, name string, args ...string) (*exec.Cmd, error) {
	bin, err := eng.Binary(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		// A root HOME the server cannot read would only produce warnings.
		cmd.Env = append(os.Environ(), "HOME=/")
	}
	return cmd, nil
}

// ownDirs hands the directories the server writes in to cred.
func ownDirs(cred *syscall.Credential, dirs ...string) error {
	if cred == nil {
		return nil
	}
	for _, d := range dirs {
		if err := filepath.WalkDir(d, func(p string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, int(cred.Uid), int(cred.Gid))
		}); err != nil {
			return fmt.Errorf("give %s to uid %d: %w", d, cred.Uid, err)
		}
	}
	return nil
}

// initPostgres creates an empty datadir. Anything already there is the remains of an interrupted
// import on this volume, never a revision: revisions are snapshots, not this PVC.
func initPostgres(ctx context.Context, eng engine.PostgreSQL, datadir, runDir string, cred *syscall.Credential) error {
	if err := os.RemoveAll(datadir); err != nil {
		return fmt.Errorf("clear datadir %s: %w", datadir, err)
	}
	// initdb refuses a datadir others can read.
	if err := os.MkdirAll(datadir, 0o700); err != nil {
		return fmt.Errorf("create datadir %s: %w", datadir, err)
	}
	if err := ownDirs(cred, datadir, runDir); err != nil {
		return err
	}
	cmd, err := pgCommand(ctx, eng, cred, "initdb", eng.InitdbArgs(datadir)...)
	if err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initialise datadir with initdb: %w\n%s", err, tail(out, 2000))
	}
	return nil
}

// startPostgres starts postgres on datadir with settings, listening on its socket in runDir only.
func startPostgres(ctx context.Context, eng engine.PostgreSQL, datadir, runDir string, settings []string, serverLog io.Writer, cred *syscall.Credential) (*pgServer, error) {
	// Not CommandContext: a stopped import still shuts the server down itself, or kills it.
	cmd, err := pgCommand(context.WithoutCancel(ctx), eng, cred, "postgres", append([]string{"-D", datadir}, engine.SettingArgs(settings)...)...)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = serverLog, serverLog
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &pgServer{eng: eng, cmd: cmd, socketDir: runDir, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	if err := s.waitReady(ctx, 5*time.Minute); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// connect logs in as the superuser through the socket, which trusts it.
func (s *pgServer) connect(ctx context.Context, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Database = s.socketDir, uint16(s.eng.Port()), engine.PostgresSuperuser, database
	cfg.TLSConfig, cfg.Fallbacks = nil, nil
	return pgx.ConnectConfig(ctx, cfg)
}

func (s *pgServer) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := s.connect(ctx, pgImportDatabase)
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case werr := <-s.exited:
			s.exited <- werr
			return fmt.Errorf("postgres exited while starting, see its log above: %w", werr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not answer within %s: %w", timeout, err)
		}
	}
}

// exec runs statements, each in its own transaction, in database.
func (s *pgServer) exec(ctx context.Context, database string, stmts ...string) error {
	conn, err := s.connect(ctx, database)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", database, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

// databases lists the databases a dump may have loaded into: all but the templates.
func (s *pgServer) databases(ctx context.Context) ([]string, error) {
	conn, err := s.connect(ctx, pgImportDatabase)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// postImportDatabase is where the template's post-import SQL starts: the one database the dumps
// created, as a masking statement names the dump's tables, or the import's own when they created
// none or several (the SQL then picks one with \connect).
func (s *pgServer) postImportDatabase(ctx context.Context) (string, error) {
	all, err := s.databases(ctx)
	if err != nil {
		return "", err
	}
	var created []string
	for _, db := range all {
		if db != pgImportDatabase && db != engine.PostgresSpareDatabase {
			created = append(created, db)
		}
	}
	if len(created) == 1 {
		return created[0], nil
	}
	return pgImportDatabase, nil
}

// shutdown is a fast shutdown: clients are disconnected, and a shutdown checkpoint writes every
// change to the data files, so a clone starts without recovery and finds no postmaster.pid.
func (s *pgServer) shutdown(ctx context.Context) error {
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("shut down postgres: %w", err)
	}
	select {
	case err := <-s.exited:
		s.exited <- err
		if err != nil {
			return fmt.Errorf("postgres exited with %w during shutdown", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Minute):
		return errors.New("postgres did not shut down within 30 minutes")
	}
}

// kill stops a server that is being abandoned (a failed import): an immediate shutdown, which
// also ends the backends, then SIGKILL if that hangs.
func (s *pgServer) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case err := <-s.exited:
		s.exited <- err
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		err := <-s.exited
		s.exited <- err
	}
}

// syncDatadir flushes the datadir to disk: the server ran with fsync off, so its shutdown
// checkpoint is only in the page cache, and a snapshot must see it on disk. One syncfs of the
// template volume, as initdb --sync-only=syncfs does from PostgreSQL 16: fsyncing file by file
// waits for each in turn.
func syncDatadir(datadir string) error {
	f, err := os.Open(datadir)
	if err != nil {
		return fmt.Errorf("sync the datadir: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync the datadir: %w", err)
	}
	return nil
}
