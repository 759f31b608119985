package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	go followCredentials(watchCtx, secretDirs{o.credentialsDir, o.adminDir, o.tlsDir}, srv.applied, func(ctx context.Context, _, want engine.Credentials) error {
		conn, err := eng.SuperuserSession(ctx, pgSocket(o), engine.PostgresMaintenanceDB)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		return applyPostgresRoles(ctx, eng, conn, want, o.extraPrivileges)
	}, func(ctx context.Context, _ engine.Credentials) error {
		conn, err := eng.SuperuserSession(ctx, pgSocket(o), engine.PostgresMaintenanceDB)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		// The server reads its ssl_* files again on a reload.
		_, err = conn.Exec(ctx, "SELECT pg_reload_conf()")
		return err
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
	creds, err := readCredentials(o.credentialsDir, o.adminDir)
	if err != nil {
		return nil, err
	}
	if err := eng.ValidateUser(creds.Username, o.extraPrivileges); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(o.datadir, "PG_VERSION")); err != nil {
		return nil, fmt.Errorf("%s holds no PostgreSQL database: the clone of the template's snapshot is missing or empty", o.datadir)
	}
	owner, err := pgServerUser(o.datadir)
	if err != nil {
		return nil, err
	}
	// PostgreSQL refuses a datadir others may write, as a volume's fsGroup handling can leave it.
	if st, err := os.Stat(o.datadir); err == nil && st.Mode().Perm()&^0o750 != 0 {
		if err := os.Chmod(o.datadir, 0o700); err != nil {
			return nil, fmt.Errorf("datadir %s has mode %v, which PostgreSQL refuses: %w", o.datadir, st.Mode().Perm(), err)
		}
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
	// server reads its hba file, puts its socket and listens: the instance's logins depend on them.
	args = append(args, extra...)
	args = append(args, "-c", "hba_file="+hbaFile, "-c", "unix_socket_directories="+o.runDir, "-c", "port="+strconv.Itoa(o.port))

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
	socket := pgSocket(o)
	conn, err := waitForPostgres(ctx, eng, socket, c.exited)
	if err != nil {
		return fail(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := applyPostgresCredentials(ctx, eng, conn, socket, creds, o.extraPrivileges); err != nil {
		return fail(err)
	}
	if err := writePostgresHBA(eng, hbaFile, hba, owner); err != nil {
		return fail(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fail(fmt.Errorf("let the instance's roles in: %w", err))
	}
	log.Print("the server lets in the instance's roles with the Secrets' passwords")
	return c, nil
}

// pgSocket is the server's socket, which it names after the port it listens on: the instance's
// port, unless a test gives it another.
func pgSocket(o startOptions) string {
	return filepath.Join(o.runDir, ".s.PGSQL."+strconv.Itoa(o.port))
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

// waitForPostgres waits until the server answers on its socket and returns a session as
// postgres in the maintenance database. A clone of a cleanly stopped template needs no recovery,
// so this is the server's own start-up time.
func waitForPostgres(ctx context.Context, eng engine.PostgreSQL, socket string, exited <-chan error) (*pgx.Conn, error) {
	deadline := time.Now().Add(10 * time.Minute) // a clone of a crashed server replays its WAL first
	for {
		conn, err := eng.SuperuserSession(ctx, socket, engine.PostgresMaintenanceDB)
		if err == nil {
			return conn, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the server did not answer on its socket: %w", err)
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("the server exited while starting (its log above says why): %w", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// applyPostgresCredentials gives the roles the Secrets' passwords, and the application role the
// instance's database and the dump's databases and objects: through membership of the template's
// owner when the import left one, else by taking them over one by one.
func applyPostgresCredentials(ctx context.Context, eng engine.PostgreSQL, conn *pgx.Conn, socket string, c engine.Credentials, extra []string) error {
	if err := applyPostgresRoles(ctx, eng, conn, c, extra); err != nil {
		return err
	}
	var exists, spare, templateOwner bool
	if err := conn.QueryRow(ctx, engine.DatabaseStateSQL, c.Database).Scan(&exists, &spare, &templateOwner); err != nil {
		return fmt.Errorf("databases: %w", err)
	}
	switch {
	case exists:
	case spare:
		if _, err := conn.Exec(ctx, eng.ClaimSpareDatabaseSQL(c.Database)); err != nil {
			return fmt.Errorf("name the spare database %s: %w", c.Database, err)
		}
		if _, err := conn.Exec(ctx, eng.DatabaseOwnerSQL(c.Database, c.Username)); err != nil {
			return fmt.Errorf("give %s database %s: %w", c.Username, c.Database, err)
		}
	default:
		if _, err := conn.Exec(ctx, eng.CreateDatabaseSQL(c.Database, c.Username)); err != nil {
			return fmt.Errorf("create database %s: %w", c.Database, err)
		}
	}
	if templateOwner {
		return nil
	}
	if err := eng.GiveDumpTo(ctx, socket, c.Username); err != nil {
		return fmt.Errorf("give %s the dump: %w", c.Username, err)
	}
	return nil
}

// applyPostgresRoles sets the roles' passwords and privileges, at start and whenever the
// Secrets change. One transaction: a role is never left half-changed.
func applyPostgresRoles(ctx context.Context, eng engine.PostgreSQL, conn *pgx.Conn, c engine.Credentials, extra []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stmts := eng.RoleSQL(engine.PostgresRoles{Credentials: c, Extra: extra, Salt: scramSalt})
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", statementName(s), err)
			}
		}
		return nil
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
