package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// importRun is what importDumps has set up for any engine: the source's files, the progress
// they feed, and the agent kept in the volume.
type importRun struct {
	files    []dumpFile
	tracker  *tracker
	total    int64
	started  time.Time
	now      func() time.Time
	agentSum string
}

// validSettings checks the template's server options, PostgreSQL settings as name=value.
func validSettings(opts []string) error {
	for _, o := range opts {
		if err := engine.ValidSetting(o); err != nil {
			return fmt.Errorf("--%s: %w", agentapi.FlagServerOption, err)
		}
	}
	return nil
}

// restoreJobs is the number of parallel pg_restore jobs: the pod's CPU limit, or every CPU the
// agent sees when it has none.
func restoreJobs() int {
	n, _ := strconv.Atoi(os.Getenv(agentapi.EnvCPULimit))
	if n <= 0 || n > runtime.NumCPU() {
		n = runtime.NumCPU()
	}
	return min(n, 32)
}

// importPostgres loads the source's files, in name order, into a new PostgreSQL datadir: plain SQL
// through psql, archives through pg_restore. A pg_dumpall --globals-only file loads like plain SQL;
// name it to sort first, as the roles it creates must exist before the dumps name them.
func importPostgres(ctx context.Context, o importOptions, eng engine.PostgreSQL, run importRun) (agentapi.Report, error) {
	t := run.tracker
	cred, err := engine.PostgresOSUser()
	if err != nil {
		return agentapi.Report{}, err
	}
	if err := initPostgres(ctx, eng, o.datadir, o.runDir, cred); err != nil {
		return agentapi.Report{}, err
	}
	volume, err := volumeSize(o.datadir)
	if err != nil {
		return agentapi.Report{}, err
	}
	memory, _ := strconv.ParseInt(os.Getenv(agentapi.EnvMemoryLimit), 10, 64)
	jobs := restoreJobs()
	settings := append(eng.BulkLoadSettings(engine.BulkLoad{MemoryLimit: memory, WALBytes: volume / 8, Jobs: jobs, SocketDir: o.runDir}), o.serverOptions...)
	serverLog := o.serverLog
	if serverLog == nil {
		serverLog = os.Stderr
	}
	srv, err := startPostgres(ctx, eng, o.datadir, o.runDir, settings, serverLog, cred)
	if err != nil {
		return agentapi.Report{}, err
	}
	ok := false
	defer func() {
		if !ok {
			srv.kill()
		}
	}()
	initialRoles, err := srv.roles(ctx)
	if err != nil {
		return agentapi.Report{}, err
	}

	t.setStep(agentapi.StepLoading)
	total := run.total
	ensured := map[string]bool{}
	dirs, files := archiveDirs(run.files)
	for _, f := range files {
		if err := pgLoadFile(ctx, o, srv, f, dirs, jobs, t, &total, ensured); err != nil {
			t.setStep(agentapi.StepFailed)
			return agentapi.Report{}, err
		}
	}

	postImportDB, err := srv.postImportDatabase(ctx)
	if err != nil {
		return agentapi.Report{}, err
	}
	locked, err := afterLoad(ctx, o, t,
		func(in sqlInput) error {
			return pgLoad{srv: srv, in: in, ensured: ensured, database: postImportDB}.load(ctx)
		},
		srv.requireUserTables,
		func(ctx context.Context) (int, error) { return srv.lockForeignRoles(ctx, o.keepAccounts, initialRoles) })
	if err != nil {
		return agentapi.Report{}, err
	}
	// After the roles are locked: the template's owner role it makes never logs in anyway.
	if err := eng.PrepareTemplate(ctx, eng.Socket(o.runDir)); err != nil {
		return agentapi.Report{}, fmt.Errorf("prepare the template for fast clones: %w", err)
	}
	if err := srv.analyze(ctx, jobs); err != nil {
		return agentapi.Report{}, err
	}
	t.setStep(agentapi.StepShuttingDown)
	if err := srv.exec(ctx, pgImportDatabase, "CHECKPOINT"); err != nil {
		return agentapi.Report{}, err
	}
	if err := srv.shutdown(ctx); err != nil {
		return agentapi.Report{}, err
	}
	ok = true
	// pg_ctl restart would start a clone with the import's settings, which postgres records there.
	if err := os.Remove(filepath.Join(o.datadir, "postmaster.opts")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return agentapi.Report{}, fmt.Errorf("remove the import's postmaster.opts: %w", err)
	}
	if err := syncDatadir(o.datadir); err != nil {
		return agentapi.Report{}, err
	}
	if _, err := os.Stat(filepath.Join(o.datadir, "postmaster.pid")); !errors.Is(err, fs.ErrNotExist) {
		return agentapi.Report{}, fmt.Errorf("postgres left its postmaster.pid after shutting down: a clone would take it for a running server (%w)", err)
	}
	return run.succeeded(o.datadir, locked)
}

// pgLoadFile loads one file: plain SQL through psql, an archive through pg_restore.
func pgLoadFile(ctx context.Context, o importOptions, srv *pgServer, f dumpFile, dirs map[string]bool, jobs int, t *tracker, total *int64, ensured map[string]bool) error {
	if f.Path != "" && dirs[filepath.Dir(f.Path)] {
		dir := filepath.Dir(f.Path)
		t.setFile(f.Name)
		log.Printf("restoring the directory archive %s", filepath.Dir(f.Name))
		size, _ := dirSize(dir)
		if err := pgRestore(ctx, srv, filepath.Dir(f.Name), dir, "directory", jobs); err != nil {
			return err
		}
		t.add(size)
		return nil
	}
	in, closeDump, err := openSQL(ctx, f, t, total)
	if err != nil {
		return err
	}
	defer closeDump()
	r := bufio.NewReaderSize(in.r, 64<<10)
	head, err := r.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return readFailure(in, newPGScript(), err)
	}
	format := pgArchiveFormat(head)
	if format == "" {
		in.r, in.dump, in.allowMissingTrailer = r, true, o.allowMissingTrailer
		log.Printf("loading %s", f.Name)
		return pgLoad{srv: srv, in: in, ensured: ensured}.loadSplit(ctx, jobs)
	}
	path := f.Path
	if path == "" || in.compressed() {
		log.Printf("spooling the %s archive %s", format, f.Name)
		if path, err = spool(filepath.Dir(o.datadir), f.Name, r); err != nil {
			return readFailure(in, newPGScript(), err)
		}
		defer os.Remove(path)
	} else {
		// pg_restore reads the file itself: count it once it has.
		defer t.add(f.Size)
	}
	log.Printf("restoring the %s archive %s", format, f.Name)
	return pgRestore(ctx, srv, f.Name, path, format, jobs)
}

// roles lists the server's roles, the predefined pg_* ones aside.
func (s *pgServer) roles(ctx context.Context) ([]string, error) {
	conn, err := s.connect(ctx, pgImportDatabase)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname")
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// lockForeignRoles leaves every role the dumps created, but those kept, unable to log in and
// without a password, and the superuser without one: it logs in through the pod's socket only.
// Roles are not dropped, as the objects and grants of the dumps refer to them. It counts the
// roles that could log in or had a password.
func (s *pgServer) lockForeignRoles(ctx context.Context, keep, initial []string) (int, error) {
	conn, err := s.connect(ctx, pgImportDatabase)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT rolname, rolcanlogin OR rolpassword IS NOT NULL FROM pg_authid WHERE rolname !~ '^pg_' ORDER BY rolname`)
	if err != nil {
		return 0, fmt.Errorf("list roles: %w", err)
	}
	type role struct {
		name   string
		usable bool
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (role, error) {
		var x role
		return x, r.Scan(&x.name, &x.usable)
	})
	if err != nil {
		return 0, fmt.Errorf("list roles: %w", err)
	}
	locked := 0
	for _, r := range all {
		stmt := fmt.Sprintf("ALTER ROLE %s NOLOGIN PASSWORD NULL", pgx.Identifier{r.name}.Sanitize())
		switch {
		case r.name == engine.PostgresSuperuser:
			stmt = fmt.Sprintf("ALTER ROLE %s LOGIN PASSWORD NULL", pgx.Identifier{r.name}.Sanitize())
		case slices.Contains(initial, r.name) || slices.Contains(keep, r.name):
			continue
		case r.usable:
			locked++
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return 0, fmt.Errorf("lock role %s: %w", r.name, err)
		}
	}
	return locked, nil
}

// requireUserTables fails a load that left nothing to clone: dumps of the wrong database, or only
// of roles, would otherwise replace the last good revision with an empty one.
func (s *pgServer) requireUserTables(ctx context.Context) error {
	databases, err := s.databases(ctx)
	if err != nil {
		return err
	}
	for _, db := range databases {
		conn, err := s.connect(ctx, db)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", db, err)
		}
		var n int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
			AND n.nspname !~ '^pg_toast'`).Scan(&n)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("count the tables loaded into %s: %w", db, err)
		}
		if n > 0 {
			return nil
		}
	}
	return failWith(agentapi.ReasonNoUserTables, fmt.Errorf("the load left no table outside pg_catalog and information_schema in databases %v: the dumps hold no data", databases))
}

// analyze gathers the planner's statistics, which a restore does not, in every database:
// autovacuum would otherwise do it in each clone, writing private copies of the catalog.
func (s *pgServer) analyze(ctx context.Context, jobs int) error {
	cmd, err := pgCommand(ctx, s.eng, nil, "vacuumdb", append(s.clientArgs(), "--all", "--analyze-only", "--quiet", "--jobs="+strconv.Itoa(jobs))...)
	if err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("analyze: %w: %s", err, firstLine(string(out)))
	}
	return nil
}
