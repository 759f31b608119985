// Command bench-import measures the agent's import against the way MyAAS users loaded dumps:
// `mariadb < dump.sql` into a server with default settings, the agent's physical path on a
// mariadb-backup stream of the same data, and for PostgreSQL `psql -f dump.sql` into a default
// server and pg_restore of a custom-format archive. Each engine loads the same deterministic data
// of at least 1 GB, one load after the other; the figures are printed, not asserted.
// --engines=postgresql runs the PostgreSQL rows only, -only picks MariaDB's rows.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/test/e2e/dumpgen"
)

func main() {
	myaas := flag.String("myaas", "bin/myaas", "the myaas binary")
	rows := flag.Int("rows", 14_500_000, "orders in the dump (about 75 bytes each)")
	work := flag.String("work", "", "work directory (default: a new temporary one, removed at the end)")
	memory := flag.Int64("memory", 4<<30, "memory limit given to the agent, as in a pod")
	cpus := flag.Int("cpus", runtime.NumCPU(), "CPU limit given to the agent, as in a pod: pg_restore's jobs")
	engines := flag.String("engines", "mariadb,postgresql", "engines to measure, comma-separated")
	only := flag.String("only", "agent,default,physical", "MariaDB rows to run, comma-separated: agent (the agent on the dump), default (mariadb < dump.sql, default server), physical (the agent on a mariadb-backup stream)")
	flag.Parse()
	rowsToRun := map[string]bool{}
	for _, r := range strings.Split(*only, ",") {
		rowsToRun[strings.TrimSpace(r)] = true
	}

	dir := *work
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "bench-import-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	for _, engine := range strings.Split(*engines, ",") {
		switch engine {
		case "mariadb":
			benchMariaDB(*myaas, dir, *rows, *memory, rowsToRun)
		case "postgresql":
			benchPostgreSQL(*myaas, dir, *rows, *memory, *cpus)
		default:
			log.Fatalf("--engines: unknown engine %q", engine)
		}
	}
}

func benchMariaDB(myaas, dir string, rows int, memory int64, run map[string]bool) {
	dump := filepath.Join(dir, "dump.sql")
	spec := dumpgen.Spec{Database: "bench", Rows: rows, Seed: 42, RowsPerInsert: 2000}
	start := time.Now()
	if err := writeDump(dump, spec); err != nil {
		log.Fatal(err)
	}
	st, _ := os.Stat(dump)
	size := float64(st.Size())
	fmt.Printf("dump: %s, %.0f MB, %d orders, %d customers, 3 tables with secondary indexes (generated in %s)\n",
		dump, size/1e6, spec.Rows, spec.Expect().Customers, time.Since(start).Round(time.Second))
	want := spec.Expect()

	var agent, plain time.Duration
	var physical physicalResult
	// The physical row backs up the data the agent loaded; it loads it untimed if that row is off.
	if run["agent"] || run["physical"] {
		fmt.Println("(a) myaas agent import ...")
		took, err := agentImport(myaas, filepath.Join(dir, "agent"), dir, "dump.sql", memory)
		if err != nil {
			log.Fatalf("agent import: %v", err)
		}
		check("agent", filepath.Join(dir, "agent", "data"), want)
		if run["agent"] {
			agent = took
		}
	}
	if run["default"] {
		var err error
		if plain, err = runPlain(dir, dump); err != nil {
			log.Fatalf("plain import: %v", err)
		}
		check("plain", filepath.Join(dir, "plain", "data"), want)
	}
	if run["physical"] {
		var err error
		if physical, err = runPhysical(myaas, dir, filepath.Join(dir, "agent", "data"), memory); err != nil {
			log.Fatalf("physical import: %v", err)
		}
		check("physical", filepath.Join(dir, "physical", "data"), want)
	}

	fmt.Println()
	fmt.Printf("%-52s %10s %10s %9s\n", "method", "time", "MB/s", "vs agent")
	if run["default"] {
		fmt.Printf("%-52s %10s %10.1f %9s\n", "mariadb < dump.sql, default server settings", plain.Round(100*time.Millisecond), size/1e6/plain.Seconds(), ratio(agent, plain))
	}
	if run["agent"] {
		fmt.Printf("%-52s %10s %10.1f %9s\n", "myaas agent import", agent.Round(100*time.Millisecond), size/1e6/agent.Seconds(), "1.00x")
	}
	if run["physical"] {
		printPhysical(physical, agent)
	}
	if run["agent"] && run["default"] {
		fmt.Printf("speed-up: %.2fx (target >= 3x)\n", plain.Seconds()/agent.Seconds())
	}
}

func writeDump(path string, spec dumpgen.Spec) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 4<<20)
	if err := spec.Write(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// agentImport times `myaas agent import` of glob in srcDir into base/data, from initialisation
// to clean shutdown, as the import Job runs it.
func agentImport(myaas, base, srcDir, glob string, memory int64) (time.Duration, error) {
	if err := os.MkdirAll(filepath.Join(base, "run"), 0o755); err != nil {
		return 0, err
	}
	cmd := exec.Command(myaas, "agent", "import", "--engine=mariadb",
		"--datadir="+filepath.Join(base, "data"), "--run-dir="+filepath.Join(base, "run"),
		"--source-dir="+srcDir, "--source-glob="+glob, "--progress-addr=",
		"--termination-log="+filepath.Join(base, "termination-log"), "--post-import-sql-file=")
	cmd.Env = append(os.Environ(), fmt.Sprintf("MYAAS_MEMORY_LIMIT=%d", memory))
	logFile, err := os.Create(filepath.Join(base, "agent.log"))
	if err != nil {
		return 0, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%w (log: %s)", err, logFile.Name())
	}
	return time.Since(start), nil
}

// runPlain times the MyAAS way: an initialised datadir, a server with default settings, the
// client reading the dump, and the server stopped.
func runPlain(dir, dump string) (time.Duration, error) {
	base := filepath.Join(dir, "plain")
	datadir := filepath.Join(base, "data")
	socket := filepath.Join(base, "mysqld.sock")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return 0, err
	}
	fmt.Println("(b) mariadb < dump.sql into a default server ...")
	start := time.Now()
	root := []string{}
	if os.Geteuid() == 0 {
		root = []string{"--user=root"}
	}
	if out, err := exec.Command("mariadb-install-db", append([]string{"--no-defaults", "--datadir=" + datadir, "--auth-root-authentication-method=normal"}, root...)...).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("install-db: %w: %s", err, out)
	}
	srv := exec.Command("/usr/sbin/mariadbd", append([]string{"--no-defaults", "--datadir=" + datadir, "--socket=" + socket, "--skip-networking",
		"--log-error=" + filepath.Join(base, "error.log")}, root...)...)
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	if err := waitSocket(socket); err != nil {
		return 0, err
	}
	in, err := os.Open(dump)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	client := exec.Command("mariadb", "--no-defaults", "--socket="+socket, "-uroot")
	client.Stdin = in
	if out, err := client.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("mariadb: %w: %s", err, out)
	}
	if out, err := exec.Command("mariadb-admin", "--no-defaults", "--socket="+socket, "-uroot", "shutdown").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("shutdown: %w: %s", err, out)
	}
	_ = srv.Wait()
	return time.Since(start), nil
}

func waitSocket(socket string) error {
	for i := 0; i < 600; i++ {
		db := rootDB(socket)
		err := db.Ping()
		db.Close()
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("server on %s did not start", socket)
}

func rootDB(socket string) *sql.DB {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", socket
	c, _ := mysql.NewConnector(cfg)
	return sql.OpenDB(c)
}

// check starts a server on the loaded datadir and compares it with what the dump holds.
func check(name, datadir string, want dumpgen.Expected) {
	socket := filepath.Join(filepath.Dir(datadir), "check.sock")
	root := []string{}
	if os.Geteuid() == 0 {
		root = []string{"--user=root"}
	}
	srv := exec.Command("/usr/sbin/mariadbd", append([]string{"--no-defaults", "--datadir=" + datadir, "--socket=" + socket, "--skip-networking",
		"--log-error=" + socket + ".log"}, root...)...)
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	if err := waitSocket(socket); err != nil {
		log.Fatal(err)
	}
	db := rootDB(socket)
	defer db.Close()
	var orders, customers int
	var total int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := db.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM bench.orders), (SELECT COUNT(*) FROM bench.customers), (SELECT SUM(total_cents) FROM bench.orders)").Scan(&orders, &customers, &total); err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	if orders != want.Orders || customers != want.Customers || total != want.OrderTotalCents {
		log.Fatalf("%s: loaded %d orders, %d customers, total %d; want %+v", name, orders, customers, total, want)
	}
	fmt.Printf("    %s: data verified (%d orders, sum %d)\n", name, orders, total)
}
