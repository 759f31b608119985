package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/internal/postgrestest"
	"github.com/myaas/myaas/internal/testdeps"
)

// pgTestServer is a PostgreSQL server a test started on its own datadir, reachable through its
// socket directory only.
type pgTestServer struct {
	dir, datadir string
}

func requirePostgres(t *testing.T) {
	t.Helper()
	for _, name := range []string{"postgres", "initdb", "psql", "pg_dump", "pg_restore", "pg_ctl", "vacuumdb"} {
		postgrestest.Binary(t, name)
	}
	if _, err := os.Stat("/usr/share/postgresql/15/extension/hstore.control"); err != nil {
		testdeps.Missing(t, testdeps.PostgreSQL, "the hstore extension from contrib is not installed")
	}
}

// pgTempDir is a directory the server can use when the test runs as root and the server as the
// postgres user.
func pgTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := postgrestest.Give(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pgTestCommand runs a server-side program as the agent would: as the postgres user under root.
func pgTestCommand(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	return postgrestest.Command(postgrestest.Binary(t, name), args...)
}

// startPGServer starts pg_ctl on datadir (initialised first when init is set) with its default,
// durable settings; only where it listens is set.
func startPGServer(t *testing.T, datadir string, init bool) *pgTestServer {
	t.Helper()
	s := &pgTestServer{dir: pgTempDir(t), datadir: datadir}
	cred, _ := engine.PostgresOSUser()
	if init {
		if err := os.MkdirAll(datadir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := ownDirs(cred, datadir); err != nil {
			t.Fatal(err)
		}
		if out, err := pgTestCommand(t, "initdb", (engine.PostgreSQL{}).InitdbArgs(datadir)...).CombinedOutput(); err != nil {
			t.Fatalf("initdb: %v\n%s", err, out)
		}
	}
	if err := ownDirs(cred, s.dir); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(s.dir, "server.log")
	out, err := pgTestCommand(t, "pg_ctl", "start", "--wait", "--pgdata="+datadir, "--log="+logFile,
		"--options=-c listen_addresses= -c unix_socket_directories="+s.dir).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		_ = pgTestCommand(t, "pg_ctl", "stop", "--wait", "--mode=fast", "--pgdata="+datadir).Run()
	})
	return s
}

func (s *pgTestServer) log(t *testing.T) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}

func (s *pgTestServer) conn(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := postgrestest.Connect(context.Background(), s.dir, 5432, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func (s *pgTestServer) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := s.conn(t).Exec(context.Background(), sql); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

// client runs pg_dump, pg_dumpall or psql against the server.
func (s *pgTestServer) client(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	bin, err := (engine.PostgreSQL{}).Binary(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--host=" + s.dir, "--username=postgres"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.String())
	}
	return out
}

// pgSourceSQL builds a database with every kind of object pg_dump writes, and rows with what COPY
// must escape: tabs, newlines, backslashes, NULs in bytea, non-ASCII text.
const pgSourceSQL = `
CREATE EXTENSION hstore;
CREATE ROLE app_owner NOLOGIN;
CREATE ROLE reporting LOGIN PASSWORD 'report-secret';
CREATE SCHEMA shop;
CREATE TYPE shop.status AS ENUM ('new', 'paid', 'shipped');
CREATE SEQUENCE shop.invoice_no START 1000;
SELECT setval('shop.invoice_no', 4242);
CREATE TABLE shop.customers (
  id serial PRIMARY KEY, name text NOT NULL, tags text[], attrs hstore, profile jsonb, photo bytea,
  created timestamptz NOT NULL);
CREATE INDEX customers_name ON shop.customers (name);
CREATE TABLE shop.orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id int NOT NULL REFERENCES shop.customers,
  status shop.status NOT NULL, total numeric(10,2), ratio float8, placed date);
CREATE TABLE shop.audit (order_id bigint, note text);
CREATE TABLE shop.events (id int, at date NOT NULL, payload jsonb) PARTITION BY RANGE (at);
CREATE TABLE shop.events_2025 PARTITION OF shop.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE shop.events_2026 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE FUNCTION shop.log_order() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  -- a body line that looks like a statement of its own:
  GRANT SELECT ON shop.audit TO
    nobody_real;
  INSERT INTO shop.audit VALUES (NEW.id, 'it''s new; really');
  RETURN NEW;
END $body$;
CREATE TRIGGER orders_log AFTER INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.log_order();
ALTER FUNCTION shop.log_order() SET search_path = shop;
CREATE OR REPLACE FUNCTION shop.log_order() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  INSERT INTO shop.audit VALUES (NEW.id, 'it''s new; really');
  RETURN NEW;
END $body$;
INSERT INTO shop.customers (name, tags, attrs, profile, photo, created)
  SELECT 'Zoë 李雷 ' || i || E'\ttab\nnewline \\ backslash "quoted" it''s',
    ARRAY['a' || i, 'b,c', NULL], hstore('k' || i, 'v "' || i), jsonb_build_object('n', i, 'x', 1.0 / 3),
    decode(repeat(md5(i::text), 8) || '00ff5c0a09', 'hex'), timestamptz '2025-06-01 12:00:00+02' + i * interval '1 hour 7 seconds'
  FROM generate_series(1, 2000) i;
INSERT INTO shop.orders (customer_id, status, total, ratio, placed)
  SELECT i % 2000 + 1, (ARRAY['new', 'paid', 'shipped'])[i % 3 + 1]::shop.status, (i % 1000) * 1.25, i / 7.0, date '2025-01-01' + i % 500
  FROM generate_series(1, 20000) i;
INSERT INTO shop.events SELECT i, date '2025-01-01' + i % 700, jsonb_build_object('i', i) FROM generate_series(1, 5000) i;
CREATE VIEW shop.paid_orders AS SELECT * FROM shop.orders WHERE status = 'paid';
CREATE MATERIALIZED VIEW shop.totals AS SELECT customer_id, sum(total) AS total FROM shop.orders GROUP BY customer_id;
COMMENT ON TABLE shop.orders IS 'orders; one line per order';
COMMENT ON COLUMN shop.customers.attrs IS 'free-form attributes';
ALTER TABLE shop.customers OWNER TO app_owner;
GRANT USAGE ON SCHEMA shop TO app_owner;
GRANT SELECT ON shop.orders TO app_owner;
GRANT SELECT ON shop.paid_orders TO reporting;
`

// pgTableChecksums are the row count and a hash of every table's and materialized view's contents:
// each row hashed, the hashes aggregated in order, with the output settings pinned.
func pgTableChecksums(t *testing.T, conn *pgx.Conn) map[string]string {
	t.Helper()
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, table := range tables {
		var n int64
		var sum *string
		q := fmt.Sprintf("SELECT count(*), md5(string_agg(h, '' ORDER BY h)) FROM (SELECT md5(x::text) AS h FROM %s x) r", table)
		if err := conn.QueryRow(ctx, q).Scan(&n, &sum); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		s := "<no rows>"
		if sum != nil {
			s = *sum
		}
		sums[table] = fmt.Sprintf("%d rows, md5 %s", n, s)
	}
	return sums
}

// pgSource starts a server, builds the database and dumps it: globals, plain and custom format.
func pgSource(t *testing.T) (dir string, sums map[string]string) {
	t.Helper()
	src := startPGServer(t, filepath.Join(pgTempDir(t), "source"), true)
	src.exec(t, pgSourceSQL)
	sums = pgTableChecksums(t, src.conn(t))
	if len(sums) != 6 || !strings.HasPrefix(sums["shop.orders"], "20000 rows") {
		t.Fatalf("source checksums: %v", sums)
	}
	dir = t.TempDir()
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("00-globals.sql", src.client(t, "pg_dumpall", "--globals-only"))
	write("plain.sql", src.client(t, "pg_dump", "--dbname=postgres"))
	write("dump.custom", src.client(t, "pg_dump", "--dbname=postgres", "--format=custom"))
	src.client(t, "pg_dump", "--dbname=postgres", "--format=directory", "--file="+filepath.Join(dir, "dirdump"))
	return dir, sums
}

// pgImport runs the agent's import of the files matching glob in dir.
func pgImport(t *testing.T, dir, glob string, extra ...func(*importOptions)) (agentapi.Report, string, error) {
	t.Helper()
	base := pgTempDir(t)
	o := importOptions{
		engine: "postgresql", datadir: filepath.Join(base, "data"), runDir: filepath.Join(base, "run"),
		source:         sourceConfig{dir: dir, glob: glob},
		terminationLog: filepath.Join(base, "termination-log"),
		serverLog:      io.Discard,
		logInterval:    time.Hour,
	}
	if err := os.MkdirAll(o.runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range extra {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := importDumps(ctx, o, time.Now)
	if err != nil {
		r = failureReport(ctx, err)
	}
	return r, o.datadir, err
}

func TestPostgresImportPlainAndCustom(t *testing.T) {
	requirePostgres(t)
	dir, want := pgSource(t)
	custom, err := os.ReadFile(filepath.Join(dir, "dump.custom"))
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(custom) }))
	defer web.Close()
	overHTTP := func(o *importOptions) {
		o.source = sourceConfig{url: web.URL + "/dump.custom", stallTimeout: time.Minute}
	}
	for _, tc := range []struct {
		name, glob string
		opts       []func(*importOptions)
	}{
		{"plain SQL with the globals first", "[0p]*.sql", nil},
		{"custom archive in parallel", "dump.custom", nil},
		{"directory archive", "dirdump/*", nil},
		{"custom archive over HTTP and spooled", "", []func(*importOptions){overHTTP}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parallelSessions(t)
			logged := captureLog(t)
			report, datadir, err := pgImport(t, dir, tc.glob, tc.opts...)
			if err != nil || report.Outcome != agentapi.OutcomeSucceeded {
				t.Fatalf("import: %v %+v", err, report)
			}
			if strings.HasSuffix(tc.glob, ".sql") {
				// The plain dump went the parallel way: the rows of its five tables with rows (the events in
				// two partitions), then its two primary keys and one index, on two sessions.
				for _, w := range []string{"plain.sql: the rows of 5 tables loaded on 2 sessions", "plain.sql: 3 indexes and constraints on 2 sessions"} {
					if !strings.Contains(logged.String(), w) {
						t.Errorf("the log lacks %q:\n%s", w, logged)
					}
				}
			}
			for _, f := range []string{"postmaster.pid", "postmaster.opts"} {
				if _, err := os.Stat(filepath.Join(datadir, f)); err == nil {
					t.Errorf("%s left in the datadir: a clone would start with the import's settings or not at all", f)
				}
			}
			control := pgTestCommand(t, "pg_controldata", datadir)
			out, err := control.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Database cluster state:               shut down\n") {
				t.Fatalf("pg_controldata: %v\n%s", err, out)
			}
			// A plain start with durable settings, as a clone's: no recovery, the same data.
			srv := startPGServer(t, datadir, false)
			if log := srv.log(t); strings.Contains(log, "not properly shut down") || strings.Contains(log, "redo starts") {
				t.Errorf("the imported datadir needed recovery:\n%s", log)
			}
			conn := srv.conn(t)
			got := pgTableChecksums(t, conn)
			for table, sum := range want {
				if got[table] != sum {
					t.Errorf("%s: %s, want %s", table, got[table], sum)
				}
			}
			if len(got) != len(want) {
				t.Errorf("tables %v, want %v", got, want)
			}
			ctx := context.Background()
			var setting string
			if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&setting); err != nil || setting != "on" {
				t.Errorf("fsync = %q (%v): the import's settings reached the datadir", setting, err)
			}
			for what, q := range map[string]string{
				"extension hstore":        "SELECT count(*) FROM pg_extension WHERE extname = 'hstore'",
				"enum shop.status":        "SELECT count(*) FROM pg_type WHERE typname = 'status' AND typtype = 'e'",
				"sequence at 4242":        "SELECT count(*) FROM pg_sequences WHERE sequencename = 'invoice_no' AND last_value = 4242",
				"partitioned shop.events": "SELECT count(*) FROM pg_class WHERE relname = 'events' AND relkind = 'p'",
				"view shop.paid_orders":   "SELECT count(*) FROM pg_views WHERE viewname = 'paid_orders'",
				"populated matview":       "SELECT count(*) FROM pg_matviews WHERE matviewname = 'totals' AND ispopulated",
				"function shop.log_order": "SELECT count(*) FROM pg_proc WHERE proname = 'log_order' AND prosrc LIKE '%really%'",
				"trigger orders_log":      "SELECT count(*) FROM pg_trigger WHERE tgname = 'orders_log'",
				"comment on shop.orders":  "SELECT count(*) FROM pg_description WHERE description = 'orders; one line per order'",
				"index customers_name":    "SELECT count(*) FROM pg_indexes WHERE indexname = 'customers_name'",
				"statistics (ANALYZE)":    "SELECT count(*) FROM pg_stats WHERE tablename = 'orders' AND attname = 'status' LIMIT 1",
				"identity continues":      "SELECT count(*) FROM (SELECT 1 FROM pg_sequences WHERE sequencename = 'orders_id_seq' AND last_value = 20000) s",
			} {
				var n int
				if err := conn.QueryRow(ctx, q).Scan(&n); err != nil || n != 1 {
					t.Errorf("%s: %d (%v)", what, n, err)
				}
			}
			// What clones start fast from: the dump's objects owned by the template's owner role,
			// and a spare database.
			var spare, ownerRole bool
			if err := conn.QueryRow(ctx, engine.DatabaseStateSQL, "none").Scan(new(bool), &spare, &ownerRole); err != nil || !spare || !ownerRole {
				t.Errorf("template prepared: spare database %v, owner role %v (%v)", spare, ownerRole, err)
			}
			// The trigger works on the loaded data.
			if _, err := conn.Exec(ctx, "INSERT INTO shop.orders (customer_id, status) VALUES (1, 'new')"); err != nil {
				var who string
				var super bool
				_ = conn.QueryRow(ctx, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&who, &super)
				t.Errorf("insert after the load as %s (superuser %v): %v", who, super, err)
			}
			var canLogin bool
			var password *string
			err = conn.QueryRow(ctx, "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = 'reporting'").Scan(&canLogin, &password)
			switch {
			case !strings.HasSuffix(tc.glob, ".sql"):
				// An archive restores no roles: its owners and grants are left out.
				if !errors.Is(err, pgx.ErrNoRows) {
					t.Errorf("role reporting from an archive: %v", err)
				}
			case err != nil || canLogin || password != nil:
				t.Errorf("role reporting from the globals: login %v, password %v (%v)", canLogin, password != nil, err)
			case report.AccountsDropped != 1:
				t.Errorf("AccountsDropped = %d, want 1 (reporting)", report.AccountsDropped)
			}
		})
	}
}

// TestPostgresImportMissingRole loads a plain dump naming roles nothing creates: they are created
// unable to log in, and own what the dump gives them.
func TestPostgresImportMissingRole(t *testing.T) {
	requirePostgres(t)
	dir, _ := pgSource(t)
	report, datadir, err := pgImport(t, dir, "plain.sql")
	if err != nil {
		t.Fatalf("import: %v %+v", err, report)
	}
	srv := startPGServer(t, datadir, false)
	// The load gave app_owner shop.customers and SELECT on shop.orders; the template then went to
	// its owner role, the grant stays.
	var canLogin, canSelect bool
	if err := srv.conn(t).QueryRow(context.Background(), `SELECT rolcanlogin, has_table_privilege('app_owner', 'shop.orders', 'SELECT')
		FROM pg_roles WHERE rolname = 'app_owner'`).Scan(&canLogin, &canSelect); err != nil || canLogin || !canSelect {
		t.Errorf("role app_owner: login %v, SELECT on shop.orders %v (%v); want no login, the grant", canLogin, canSelect, err)
	}
	var n int
	if err := srv.conn(t).QueryRow(context.Background(), "SELECT count(*) FROM pg_roles WHERE rolname IN ('reporting', 'nobody_real')").Scan(&n); err != nil || n != 1 {
		t.Errorf("roles reporting (a grantee) and nobody_real (named in a function body only): %d, want 1 (%v)", n, err)
	}
}

// TestPostgresImportKeepsAccounts keeps the login of a role named in spec.import.keepAccounts.
func TestPostgresImportKeepsAccounts(t *testing.T) {
	requirePostgres(t)
	dir, _ := pgSource(t)
	report, datadir, err := pgImport(t, dir, "[0p]*.sql", func(o *importOptions) { o.keepAccounts = multiFlag{"reporting"} })
	if err != nil || report.AccountsDropped != 0 {
		t.Fatalf("import: %v %+v", err, report)
	}
	var canLogin, hasPassword bool
	err = startPGServer(t, datadir, false).conn(t).QueryRow(context.Background(),
		"SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'reporting'").Scan(&canLogin, &hasPassword)
	if err != nil || !canLogin || !hasPassword {
		t.Errorf("kept role reporting: login %v, password %v (%v)", canLogin, hasPassword, err)
	}
}

func writeTestFile(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresImportFailures(t *testing.T) {
	requirePostgres(t)
	src, _ := pgSource(t)
	plain, _ := os.ReadFile(filepath.Join(src, "plain.sql"))
	custom, _ := os.ReadFile(filepath.Join(src, "dump.custom"))
	dir := t.TempDir()
	writeTestFile(t, dir, "broken.sql", []byte("CREATE TABLE t (id int PRIMARY KEY, secret text);\n"+
		"INSERT INTO t VALUES (1, 'hunter2');\n\n"+
		"INSERT INTO no_such_table\n  VALUES (3, 'topsecret');\n"))
	writeTestFile(t, dir, "badrow.sql", []byte("CREATE TABLE t (id int PRIMARY KEY, secret text);\n"+
		"COPY public.t (id, secret) FROM stdin;\n1\tfine\nxyzzy\tswordfish\n\\.\n"))
	// psql stops at the error with megabytes of the file still to come.
	writeTestFile(t, dir, "early.sql", []byte("CREATE TABLE t (id int);\nINSERT INTO no_such_table VALUES (1);\n"+strings.Repeat("INSERT INTO t VALUES (2);\n", 200_000)))
	writeTestFile(t, dir, "syntax.sql", []byte("CREATE TABLE t (id int);\nINSERT INTO t VALUES (1) 'topsecret';\n"))
	// Cut inside the rows of the largest table: the header is there, the trailer is not.
	cut := strings.Index(string(plain), "COPY shop.orders")
	writeTestFile(t, dir, "truncated.sql", plain[:cut+5000])
	writeTestFile(t, dir, "truncated.custom", custom[:len(custom)*6/10])
	writeTestFile(t, dir, "empty.sql", nil)
	// A bad row among the rows of a table loaded on a session of its own, and a duplicate key
	// that fails a primary key built beside the other indexes.
	copyAt := strings.Index(string(plain), "COPY shop.orders ")
	copyLine := strings.Count(string(plain[:copyAt]), "\n") + 1
	badRow := copyAt + strings.Index(string(plain[copyAt:]), "\n5\t") + 1
	writeTestFile(t, dir, "badcopy.sql", append(append(append([]byte(nil), plain[:badRow]...), "xyzzy"...), plain[badRow+1:]...))
	customers := strings.Index(string(plain), "COPY shop.customers ")
	firstRow := customers + strings.Index(string(plain[customers:]), "\n") + 1
	rowEnd := firstRow + strings.Index(string(plain[firstRow:]), "\n") + 1
	dup := append(append(append([]byte(nil), plain[:rowEnd]...), plain[firstRow:rowEnd]...), plain[rowEnd:]...)
	writeTestFile(t, dir, "dupkey.sql", dup)
	keyAt := strings.Index(string(dup), "ALTER TABLE ONLY shop.customers\n    ADD CONSTRAINT customers_pkey PRIMARY KEY")
	keyLine := strings.Count(string(dup[:keyAt]), "\n") + 1
	writeTestFile(t, dir, "nothing.sql", []byte("-- only a comment\nSELECT 1;\n"))
	for _, tc := range []struct {
		glob, reason string
		want         []string
		never        []string
	}{
		{"broken.sql", agentapi.ReasonSQLError,
			[]string{"broken.sql: line 5", `relation "no_such_table" does not exist`, "the statement starts at line 4: INSERT INTO no_such_table"},
			[]string{"topsecret", "hunter2"}},
		{"badrow.sql", agentapi.ReasonSQLError,
			[]string{"badrow.sql: line 4", "invalid input syntax for type integer", "COPY t, row 2", "statement starts at line 2: COPY public.t (id, secret) FROM stdin"},
			[]string{"xyzzy", "swordfish", "fine"}},
		{"badcopy.sql", agentapi.ReasonSQLError,
			[]string{fmt.Sprintf("badcopy.sql: line %d", copyLine+5), "invalid input syntax for type bigint", "COPY orders, row 5",
				fmt.Sprintf("statement starts at line %d: COPY shop.orders (id, customer_id", copyLine)},
			[]string{"xyzzy"}},
		{"dupkey.sql", agentapi.ReasonSQLError,
			[]string{fmt.Sprintf("dupkey.sql: line %d", keyLine), `could not create unique index "customers_pkey"`, "ALTER TABLE ONLY shop.customers"},
			[]string{"Zoë", "tab"}},
		{"early.sql", agentapi.ReasonSQLError, []string{"early.sql: line 2", `relation "no_such_table" does not exist`}, nil},
		{"syntax.sql", agentapi.ReasonSQLError, []string{"syntax.sql: line 2", `syntax error at or near "…"`}, []string{"topsecret"}},
		{"truncated.sql", agentapi.ReasonTruncatedDump,
			[]string{"truncated: no '-- PostgreSQL database dump complete' trailer", "pg_dump", "COPY shop.orders"}, nil},
		{"truncated.custom", agentapi.ReasonTruncatedDump, []string{"truncated.custom", "custom archive"}, nil},
		{"empty.sql", agentapi.ReasonEmptySource, []string{"empty.sql is empty"}, nil},
		{"nothing.sql", agentapi.ReasonNoUserTables, []string{"no table"}, nil},
	} {
		t.Run(tc.glob, func(t *testing.T) {
			parallelSessions(t)
			report, _, err := pgImport(t, dir, tc.glob)
			if err == nil {
				t.Fatalf("import succeeded: %+v", report)
			}
			if report.Reason != tc.reason || report.Outcome != agentapi.OutcomeFailed {
				t.Errorf("reason %s %s, want Failed %s: %s", report.Outcome, report.Reason, tc.reason, report.Message)
			}
			if len(report.Message) > agentapi.MaxMessageBytes {
				t.Errorf("message of %d bytes", len(report.Message))
			}
			for _, w := range tc.want {
				if !strings.Contains(report.Message, w) {
					t.Errorf("message lacks %q: %s", w, report.Message)
				}
			}
			for _, w := range tc.never {
				if strings.Contains(report.Message, w) {
					t.Errorf("message quotes row data %q: %s", w, report.Message)
				}
			}
		})
	}
}

// TestPostgresPostImportSQL masks data through psql, and a failing statement is the template's.
func TestPostgresPostImportSQL(t *testing.T) {
	requirePostgres(t)
	dir := t.TempDir()
	writeTestFile(t, dir, "d.sql", []byte("CREATE TABLE people (id int, email text);\nINSERT INTO people VALUES (1, 'a@real.example');\n"))
	t.Setenv(agentapi.EnvPostImportSQL, "UPDATE people SET email = 'user' || id || '@example.invalid';")
	report, datadir, err := pgImport(t, dir, "d.sql")
	if err != nil {
		t.Fatalf("import: %v %+v", err, report)
	}
	var email string
	if err := startPGServer(t, datadir, false).conn(t).QueryRow(context.Background(), "SELECT email FROM people").Scan(&email); err != nil || email != "user1@example.invalid" {
		t.Errorf("email %q (%v): the post-import SQL did not run", email, err)
	}
	// A dump that makes its own database (pg_dump --create): the masking statement names its
	// tables as a user would, without \connect.
	writeTestFile(t, dir, "shop.sql", []byte("CREATE DATABASE shop;\n\\connect shop\nCREATE TABLE people (id int, email text);\nINSERT INTO people VALUES (2, 'b@real.example');\n"))
	report, datadir, err = pgImport(t, dir, "shop.sql")
	if err != nil {
		t.Fatalf("import into the dump's database: %v %+v", err, report)
	}
	server := startPGServer(t, datadir, false)
	conn, err := postgrestest.Connect(context.Background(), server.dir, 5432, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), "SELECT email FROM people").Scan(&email); err != nil || email != "user2@example.invalid" {
		t.Errorf("email %q (%v): the post-import SQL did not run in the dump's database", email, err)
	}

	t.Setenv(agentapi.EnvPostImportSQL, "UPDATE no_such_table SET x = 1;")
	report, _, err = pgImport(t, dir, "d.sql")
	if err == nil || report.Reason != agentapi.ReasonPostImportSQLFailed || !strings.Contains(report.Message, "spec.postImportSQL.statements: line 1") {
		t.Errorf("failing post-import SQL: %v %+v", err, report)
	}
}
