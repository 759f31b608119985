// Package postgrestest makes PostgreSQL datadirs for tests and benchmarks: initdb, statements
// run as postgres, a clean shutdown, as an import leaves a template. Tests skip when PostgreSQL
// is not installed, unless MYAAS_REQUIRE_POSTGRES is set, where a missing server is a failure.
//
// PostgreSQL refuses to run as root. Run as root, as tests are here, the programs run as the
// postgres user the server packages create (nobody without it), and the datadirs are theirs.
package postgrestest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/internal/testdeps"
)

// Binary is one of PostgreSQL's programs, or a skip (a failure under MYAAS_REQUIRE_POSTGRES).
func Binary(t testing.TB, name string) string {
	t.Helper()
	p, err := engine.PostgreSQL{}.Binary(name)
	if err != nil {
		testdeps.Missing(t, testdeps.PostgreSQL, err.Error()+": install postgresql-15 (make install-test-deps)")
	}
	return p
}

// ServerUser is who PostgreSQL's programs run as: nil when not root, else the postgres user.
func ServerUser() *syscall.Credential {
	u, err := engine.PostgresOSUser()
	if err != nil {
		panic(err)
	}
	return u
}

// Command runs a PostgreSQL program as ServerUser.
func Command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	if u := ServerUser(); u != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u}
	}
	return cmd
}

// Give makes dir ServerUser's, and every directory above it up to the root traversable, so that
// the server reaches it in a test's private temporary directory.
func Give(dir string) error {
	u := ServerUser()
	if u == nil {
		return nil
	}
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.Uid), int(u.Gid))
	}); err != nil {
		return err
	}
	for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(d, st.Mode().Perm()|0o005); err != nil {
				return err
			}
		}
	}
	return nil
}

// Step is SQL run in one database.
type Step struct {
	Database string
	SQL      string
}

// MakeDatadir initialises datadir with superuser postgres, runs steps as postgres and shuts the
// server down cleanly: what a template volume holds after an import. prepare has the template
// prepared for fast clones as the import does (engine.PostgreSQL.PrepareTemplate).
func MakeDatadir(datadir string, prepare bool, steps ...Step) error {
	pg := engine.PostgreSQL{}
	initdb, err := pg.Binary("initdb")
	if err != nil {
		return err
	}
	pgCtl, err := pg.Binary("pg_ctl")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(datadir, 0o700); err != nil {
		return err
	}
	runDir := filepath.Join(filepath.Dir(datadir), "make-run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(runDir)
	for _, d := range []string{datadir, runDir} {
		if err := Give(d); err != nil {
			return err
		}
	}
	if out, err := Command(initdb, "-D", datadir, "-U", engine.PostgresSuperuser, "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	opts := "-c listen_addresses='' -c unix_socket_directories=" + runDir + " -c fsync=off"
	if out, err := Command(pgCtl, "start", "-w", "-D", datadir, "-l", filepath.Join(runDir, "log"), "-o", opts).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(runDir, "log"))
		return fmt.Errorf("pg_ctl start: %w\n%s%s", err, out, log)
	}
	runErr := runSteps(runDir, steps)
	if runErr == nil && prepare {
		runErr = pg.PrepareTemplate(context.Background(), pg.Socket(runDir))
	}
	if out, err := Command(pgCtl, "stop", "-w", "-m", "fast", "-D", datadir).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	if runErr != nil {
		return runErr
	}
	// As the import does before the snapshot: the clone's fsync=on must find the data on disk.
	return exec.Command("sync").Run()
}

func runSteps(runDir string, steps []Step) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, s := range steps {
		conn, err := Connect(ctx, runDir, int(engine.PostgreSQL{}.Port()), s.Database)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, s.SQL)
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("in database %s: %w", s.Database, err)
		}
	}
	return nil
}

// Connect logs in as postgres on the socket in runDir of the server listening on port.
func Connect(ctx context.Context, runDir string, port int, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Database = runDir, uint16(port), engine.PostgresSuperuser, database
	cfg.TLSConfig, cfg.Fallbacks = nil, nil
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect as postgres to %s on %s: %w", database, runDir, err)
	}
	return conn, nil
}

// CopyDir copies a datadir as a clone of its snapshot would be: owners and modes kept.
func CopyDir(src, dst string) error {
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %w %s", err, out)
	}
	return nil
}
