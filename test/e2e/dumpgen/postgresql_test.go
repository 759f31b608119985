package dumpgen

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/myaas/myaas/internal/postgrestest"
	"github.com/myaas/myaas/internal/testdeps"
)

func TestPostgreSQLDumpHasPgDumpLayout(t *testing.T) {
	s := Spec{Dialect: PostgreSQL, Database: "shop", Rows: 1234, Seed: 7, Owner: "shop_owner"}
	dump := writeTwice(t, s)
	// As pg_dump 15.14 and later end it: the trailer, then \unrestrict with the key of \restrict.
	key := restrictKey(s.Seed)
	if !strings.HasPrefix(dump, "--\n-- PostgreSQL database dump\n--\n\n\\restrict "+key+"\n") ||
		!strings.HasSuffix(dump, "-- PostgreSQL database dump complete\n--\n\n\\unrestrict "+key+"\n\n") {
		t.Fatalf("no pg_dump header or trailer:\n%s...%s", dump[:120], dump[len(dump)-120:])
	}
	for _, want := range []string{"\\connect shop\n", "COPY shop.orders (id, customer_id, total_cents, note) FROM stdin;\n", "ALTER TABLE shop.orders OWNER TO shop_owner;\n"} {
		if !strings.Contains(dump, want) {
			t.Errorf("the dump has no %q", want)
		}
	}
	if n := strings.Count(dump, "\n\\.\n"); n != 3 {
		t.Errorf("%d COPY blocks ended, want 3 (audit, customers, orders)", n)
	}
	if strings.Contains(dump, "\nINSERT INTO") || strings.Contains(dump, "`") {
		t.Error("MariaDB syntax in the PostgreSQL dump")
	}
	var noOwner bytes.Buffer
	if err := (Spec{Dialect: PostgreSQL, Database: "shop", Rows: 10, Seed: 7}).Write(&noOwner); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(noOwner.String(), "OWNER TO") {
		t.Error("a dump without an owner names one")
	}
}

// TestPostgreSQLDumpLoadsIntoRealServer loads the dump with psql, as a plain pg_dump file is
// restored, into a server started for the test, and checks that it holds what Expect says.
func TestPostgreSQLDumpLoadsIntoRealServer(t *testing.T) {
	srv := startPostgres(t)
	s := Spec{Dialect: PostgreSQL, Database: "shop", Rows: 2500, Seed: 3, Owner: "shop_owner"}
	var dump bytes.Buffer
	if err := s.Write(&dump); err != nil {
		t.Fatal(err)
	}
	// The source's role: restoring a dump with owners needs it (the agent creates missing ones).
	srv.psql(t, "postgres", "CREATE ROLE shop_owner NOLOGIN")
	srv.load(t, &dump)

	want := s.Expect()
	got := srv.psql(t, "shop", "SELECT (SELECT count(*) FROM shop.customers), (SELECT count(*) FROM shop.orders), "+
		"(SELECT sum(total_cents) FROM shop.orders), (SELECT name FROM shop.customers WHERE id = 5), "+
		"(SELECT note FROM shop.orders WHERE id = 1), shop.order_count(), (SELECT count(*) FROM shop.customer_totals)")
	wantRow := fmt.Sprintf("%d|%d|%d|李雷 5|order 1: it's \"quoted\" – ✓|%d|", want.Customers, want.Orders, want.OrderTotalCents, want.Orders)
	if !strings.HasPrefix(got, wantRow) {
		t.Fatalf("loaded %q, want %q followed by the customers with orders", got, wantRow)
	}
	if owner := srv.psql(t, "shop", "SELECT tableowner FROM pg_tables WHERE schemaname = 'shop' AND tablename = 'orders'"); owner != "shop_owner" {
		t.Errorf("orders owned by %q, want shop_owner", owner)
	}
	// The sequence continues after the dumped rows and the trigger, created after the data, fires.
	if got := srv.psql(t, "shop", "INSERT INTO shop.orders (customer_id, total_cents) VALUES (1, 1) RETURNING id"); got != strconv.Itoa(s.Rows+1) {
		t.Errorf("new order id %s, want %d", got, s.Rows+1)
	}
	if got := srv.psql(t, "shop", "SELECT count(*) FROM shop.audit"); got != "1" {
		t.Errorf("%s audit rows after one insert, want 1: the trigger did not run", got)
	}
}

// TestBrokenPostgreSQLFailsOnLine5 keeps BrokenPostgreSQL what the e2e suite expects of it.
func TestBrokenPostgreSQLFailsOnLine5(t *testing.T) {
	srv := startPostgres(t)
	path := filepath.Join(srv.dir, "bad-statement.sql")
	if err := os.WriteFile(path, []byte(BrokenPostgreSQL), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(srv.bin("psql"), "-X", "-h", srv.dir, "-U", "postgres", "-d", "postgres",
		"-v", "ON_ERROR_STOP=1", "-f", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad-statement.sql:5: ERROR:") {
		t.Fatalf("psql: %v\n%s", err, out)
	}
}

// pgServer is a PostgreSQL server of the test's own, reached through its socket in dir.
type pgServer struct {
	binDir, dir string
}

func (s *pgServer) bin(name string) string { return filepath.Join(s.binDir, name) }

// startPostgres starts a server on a new datadir, stopped when the test ends. The server refuses
// to run as root, so under root it runs as the postgres user Debian's package creates.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	binDir := "/usr/lib/postgresql/15/bin"
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		binDir = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(filepath.Join(binDir, "postgres")); err != nil {
		testdeps.Missing(t, testdeps.PostgreSQL, "PostgreSQL 15 is not installed: apt-get install postgresql-15")
	}
	dir, err := os.MkdirTemp("", "dumpgen-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cred := postgrestest.ServerUser()
	if err := postgrestest.Give(dir); err != nil {
		t.Fatal(err)
	}
	s := &pgServer{binDir: binDir, dir: dir}
	asServer := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(s.bin(name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	data := filepath.Join(dir, "data")
	asServer("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	asServer("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "start",
		"-o", "-c listen_addresses='' -c fsync=off -k "+dir)
	t.Cleanup(func() {
		cmd := exec.Command(s.bin("pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		_ = cmd.Run()
	})
	return s
}

// psql runs one query in database db and returns its unaligned output.
func (s *pgServer) psql(t *testing.T, db, query string) string {
	t.Helper()
	out, err := exec.Command(s.bin("psql"), "-X", "-q", "-A", "-t", "-h", s.dir, "-U", "postgres", "-d", db,
		"-v", "ON_ERROR_STOP=1", "-c", query).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", query, err, out)
	}
	return strings.TrimSpace(string(out))
}

// load runs a plain dump through psql, stopping at the first error, as pg_dump's manual restores it.
func (s *pgServer) load(t *testing.T, dump *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(s.bin("psql"), "-X", "-q", "-h", s.dir, "-U", "postgres", "-d", "postgres",
		"-v", "ON_ERROR_STOP=1", "-f", "-")
	cmd.Stdin = dump
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql -f dump: %v\n%s", err, out)
	}
}
