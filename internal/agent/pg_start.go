package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/myaas/myaas/internal/engine"
)

// pgHBAName is the clone's pg_hba.conf, in the run directory: the cloned datadir's own stays the
// template's.
const pgHBAName = "pg_hba.conf"

// runPostgresStart starts PostgreSQL on a clone in one server start: the server comes up with an
// hba file that lets in only postgres on the pod's socket, the agent gives the roles the Secrets'
// passwords through it, and only then writes the file that lets the instance's roles in over TCP
// and has the server reload it. No client ever meets the template's roles or passwords, and the
// readiness probe, which logs in with the Secret's password, fails until then.
func runPostgresStart(ctx context.Context, eng engine.PostgreSQL, o startOptions) error {
	srv, err := startPostgresClone(ctx, eng, o)
	if err != nil {
		return err
	}
	watchCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	go followCredentials(watchCtx, secretDirs{o.credentialsDir, o.adminDir}, srv.applied, func(ctx context.Context, _, want engine.Credentials) error {
		return applyPostgresRoles(ctx, eng, o.runDir, want, o.extraPrivileges)
	}, credentialsPoll)
	select {
	case err := <-srv.exited:
		return serverExit(err)
	case <-ctx.Done():
		srv.stop()
		return serverExit(<-srv.exited)
	}
}

// pgClone is a clone's running server.
type pgClone struct {
	cmd    *exec.Cmd
	exited chan error
	// applied are the credentials the server has.
	applied engine.Credentials
}

// stop asks for PostgreSQL's fast shutdown: clients are disconnected and the server ends with a
// checkpoint, well within the kubelet's grace period. A smart shutdown would wait for every
// client to leave, and the kubelet's SIGKILL after the grace period would leave the next start
// a WAL replay.
func (c *pgClone) stop() { _ = c.cmd.Process.Signal(syscall.SIGINT) }

// startPostgresClone prepares the clone, starts its server and returns once the server lets in
// the instance's roles, with the Secrets' passwords, and no other.
func startPostgresClone(ctx context.Context, eng engine.PostgreSQL, o startOptions) (*pgClone, error) {
	if err := validatePostgresPrivileges(o.extraPrivileges); err != nil {
		return nil, err
	}
	creds, err := readCredentials(o.credentialsDir, o.adminDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(o.datadir, "PG_VERSION")); err != nil {
		return nil, fmt.Errorf("%s holds no PostgreSQL database: the clone of the template's snapshot is missing or empty", o.datadir)
	}
	owner, err := pgServerUser(o.datadir)
	if err != nil {
		return nil, err
	}
	// A clean shutdown leaves no pid file; one left by a crash names a process of another pod,
	// whose number a process of this one may have, and the server would refuse to start.
	if err := os.Remove(filepath.Join(o.datadir, "postmaster.pid")); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove the stale postmaster.pid: %w", err)
	}
	if err := os.MkdirAll(o.runDir, 0o750); err != nil {
		return nil, err
	}
	if err := owner.chown(o.runDir); err != nil {
		return nil, err
	}
	hba := engine.PostgresHBA{AppUser: creds.Username, AdminUser: creds.AdminUsername, RequireTLS: o.requireSecureTransport}
	hbaFile := filepath.Join(o.runDir, pgHBAName)
	if err := writePostgresHBA(eng, hbaFile, engine.PostgresHBA{Closed: true}, owner); err != nil {
		return nil, err
	}
	tls, err := tlsFiles(o)
	if err != nil {
		return nil, err
	}
	extra, err := serverOptions(o.serverOptions)
	if err != nil {
		return nil, err
	}
	bin, err := eng.Binary("postgres")
	if err != nil {
		return nil, err
	}
	args := []string{"-D", o.datadir}
	for _, s := range eng.ServingSettings(engine.PostgresServing{
		Port: o.port, RunDir: o.runDir, HBAFile: hbaFile, MemoryLimit: memoryLimit(), TLS: tls,
	}) {
		args = append(args, "-c", s)
	}
	// The template's settings come after the agent's, so that they win, but never over where the
	// server reads its hba file and puts its socket: the instance's logins depend on both.
	args = append(args, extra...)
	args = append(args, "-c", "hba_file="+hbaFile, "-c", "unix_socket_directories="+o.runDir)

	log.Printf("starting %s on %s", filepath.Base(bin), o.datadir)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = owner.procAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &pgClone{cmd: cmd, exited: make(chan error, 1), applied: creds}
	go func() { c.exited <- cmd.Wait() }()
	fail := func(err error) (*pgClone, error) {
		c.stop()
		<-c.exited
		return nil, err
	}
	if err := waitForPostgres(ctx, eng, o.runDir, c.exited); err != nil {
		return fail(err)
	}
	if err := applyPostgresCredentials(ctx, eng, o.runDir, creds, o.extraPrivileges); err != nil {
		return fail(err)
	}
	if err := writePostgresHBA(eng, hbaFile, hba, owner); err != nil {
		return fail(err)
	}
	if err := withPostgres(ctx, eng, o.runDir, engine.PostgresMaintenanceDB, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SELECT pg_reload_conf()")
		return err
	}); err != nil {
		return fail(fmt.Errorf("let the instance's roles in: %w", err))
	}
	log.Print("the server lets in the instance's roles with the Secrets' passwords")
	return c, nil
}

func validatePostgresPrivileges(privs []string) error {
	for i, p := range privs {
		if !slices.Contains(engine.PostgresExtraPrivileges, p) {
			return fmt.Errorf("extraPrivileges[%d] %q is not a privilege this operator grants on PostgreSQL: valid values are %s",
				i, p, strings.Join(engine.PostgresExtraPrivileges, ", "))
		}
	}
	return nil
}

// writePostgresHBA replaces the hba file at once, so that a reload never reads half of it.
func writePostgresHBA(eng engine.PostgreSQL, path string, h engine.PostgresHBA, owner pgUser) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(eng.HBA(h)), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := owner.chown(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// waitForPostgres waits until the server answers on its socket. A clone of a cleanly stopped
// template needs no recovery, so this is the server's own start-up time.
func waitForPostgres(ctx context.Context, eng engine.PostgreSQL, runDir string, exited <-chan error) error {
	deadline := time.Now().Add(10 * time.Minute) // a clone of a crashed server replays its WAL first
	for {
		err := withPostgres(ctx, eng, runDir, engine.PostgresMaintenanceDB, func(*pgx.Conn) error { return nil })
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not answer on its socket: %w", err)
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the server exited while starting: %w", errors.Join(err, errors.New("its log above says why")))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// withPostgres runs f on a connection as postgres over the pod's socket, which the hba file
// trusts: the agent needs no password of its own.
func withPostgres(ctx context.Context, eng engine.PostgreSQL, runDir, database string, f func(*pgx.Conn) error) error {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return err
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Database = runDir, uint16(eng.Port()), engine.PostgresSuperuser, database
	cfg.TLSConfig, cfg.Fallbacks, cfg.ConnectTimeout = nil, nil, time.Second
	if n := pgSocketPort(eng, runDir); n != 0 {
		cfg.Port = n
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return f(conn)
}

// pgSocketPort is the port in the name of the socket the server made in runDir: the server
// names its socket after the port it listens on, which the template's settings may change.
func pgSocketPort(eng engine.PostgreSQL, runDir string) uint16 {
	matches, _ := filepath.Glob(filepath.Join(runDir, ".s.PGSQL.*"))
	for _, m := range matches {
		if strings.HasSuffix(m, ".lock") {
			continue
		}
		var n uint16
		if _, err := fmt.Sscanf(filepath.Base(m), ".s.PGSQL.%d", &n); err == nil {
			return n
		}
	}
	return 0
}

// applyPostgresCredentials gives the roles the Secrets' passwords and the application role the
// instance's database and ownership of the dump's databases and objects.
func applyPostgresCredentials(ctx context.Context, eng engine.PostgreSQL, runDir string, c engine.Credentials, extra []string) error {
	if err := applyPostgresRoles(ctx, eng, runDir, c, extra); err != nil {
		return err
	}
	var databases []string
	err := withPostgres(ctx, eng, runDir, engine.PostgresMaintenanceDB, func(conn *pgx.Conn) error {
		var exists bool
		if err := conn.QueryRow(ctx, engine.DatabaseExistsSQL, c.Database).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := conn.Exec(ctx, eng.CreateDatabaseSQL(c.Database, c.Username)); err != nil {
				return fmt.Errorf("create database %s: %w", c.Database, err)
			}
		}
		rows, err := conn.Query(ctx, engine.AppDatabasesSQL)
		if err != nil {
			return err
		}
		if databases, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		for _, db := range databases {
			if _, err := conn.Exec(ctx, eng.DatabaseOwnerSQL(db, c.Username)); err != nil {
				return fmt.Errorf("give %s database %s: %w", c.Username, db, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("databases: %w", err)
	}
	for _, db := range append([]string{engine.PostgresMaintenanceDB}, databases...) {
		err := withPostgres(ctx, eng, runDir, db, func(conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, eng.OwnershipSQL(c.Username))
			return err
		})
		if err != nil {
			return fmt.Errorf("give %s the objects of database %s: %w", c.Username, db, err)
		}
	}
	return nil
}

// applyPostgresRoles sets the roles' passwords and privileges, at start and whenever the
// Secrets change. One transaction: a role is never left half-changed.
func applyPostgresRoles(ctx context.Context, eng engine.PostgreSQL, runDir string, c engine.Credentials, extra []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stmts := eng.RoleSQL(engine.PostgresRoles{Credentials: c, Extra: extra, Salt: scramSalt})
	err := withPostgres(ctx, eng, runDir, engine.PostgresMaintenanceDB, func(conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, s := range stmts {
				if _, err := tx.Exec(ctx, s); err != nil {
					return fmt.Errorf("%s: %w", statementName(s), err)
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("apply credentials: %w", err)
	}
	return nil
}

// statementName names a statement in an error without the password it may carry further on.
func statementName(stmt string) string {
	line, _, _ := strings.Cut(stmt, "\n")
	if i := strings.Index(line, " PASSWORD "); i >= 0 {
		line = line[:i] + " PASSWORD …"
	}
	return line
}

func scramSalt() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// pgUser is who the server runs as.
type pgUser struct {
	// switchTo is set when the agent runs as root, which PostgreSQL refuses to run as: the server
	// then runs as the owner of the datadir (tests; production pods run as the server's user).
	switchTo *syscall.Credential
}

func pgServerUser(datadir string) (pgUser, error) {
	if !runAsRoot() {
		return pgUser{}, nil
	}
	st, err := os.Stat(datadir)
	if err != nil {
		return pgUser{}, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys.Uid == 0 {
		return pgUser{}, fmt.Errorf("PostgreSQL does not run as root and %s is root's: give it to the server's user", datadir)
	}
	return pgUser{switchTo: &syscall.Credential{Uid: sys.Uid, Gid: sys.Gid}}, nil
}

func (u pgUser) procAttr() *syscall.SysProcAttr {
	if u.switchTo == nil {
		return nil
	}
	return &syscall.SysProcAttr{Credential: u.switchTo}
}

func (u pgUser) chown(path string) error {
	if u.switchTo == nil {
		return nil
	}
	if err := os.Chown(path, int(u.switchTo.Uid), int(u.switchTo.Gid)); err != nil {
		return fmt.Errorf("give %s to the server's user: %w", path, err)
	}
	return nil
}
