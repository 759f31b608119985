// Command bench-import measures the agent's import against the ways a user could load the same
// data: for MariaDB `mariadb < dump.sql` into a default server and into a server with the agent's
// own bulk-load settings, myloader on a mydumper dump of it, and the agent on a mariadb-backup
// stream; for PostgreSQL `psql -f dump.sql` into a default server and pg_restore of a
// custom-format archive. Every method goes from an empty datadir to a clean shutdown, on the same
// deterministic data of about 1 GB; the figures are printed, not asserted.
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
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/agent"
	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/test/e2e/dumpgen"
)

// bench is what every method shares: the dump, its mydumper copy, and where to work.
type bench struct {
	myaas  string
	dir    string
	dump   string
	memory int64
	want   dumpgen.Expected
	// mydumperDir is the same data as written by mydumper; made on first use.
	mydumperDir string
	// physical is row 6's own figures, once it ran.
	physical *physicalResult
}

// method is one row of the table.
type method struct {
	row  string
	name string
	run  func(b *bench) (datadir string, took time.Duration, err error)
}

// reference is today's agent: the import in one client session, as before parallel loading.
const reference = "A"

// methods are the rows of the table, in order. Row 6, the physical backup, is added by
// physical.go to extraMethods.
func methods() []method {
	return append([]method{
		{reference, "myaas agent, one session (before parallel loading)", func(b *bench) (string, time.Duration, error) {
			return b.runAgent("agent-serial", "dump.sql", 1)
		}},
		{"1", "mariadb < dump.sql, default server", func(b *bench) (string, time.Duration, error) { return b.runClient("plain", nil) }},
		{"2", "mariadb < dump.sql, the agent's tuned server", func(b *bench) (string, time.Duration, error) { return b.runTunedClient() }},
		{"3", "myloader on a mydumper dump, tuned server", func(b *bench) (string, time.Duration, error) { return b.runMyloader() }},
		{"4", "myaas agent, single file", func(b *bench) (string, time.Duration, error) {
			return b.runAgent("agent-file", "dump.sql", 0)
		}},
		{"5", "myaas agent, mydumper directory", func(b *bench) (string, time.Duration, error) {
			if err := b.ensureMydumper(); err != nil {
				return "", 0, err
			}
			return b.runAgent("agent-mydumper", filepath.Base(b.mydumperDir), 0)
		}},
	}, extraMethods...)
}

// extraMethods are rows defined in other files of this command.
var extraMethods []method

func main() {
	myaas := flag.String("myaas", "bin/myaas", "the myaas binary")
	rows := flag.Int("rows", 14_500_000, "orders in the dump (about 75 bytes each)")
	work := flag.String("work", "", "work directory (default: a new temporary one, removed at the end)")
	memory := flag.Int64("memory", 4<<30, "memory limit given to the agent, as in a pod")
	only := flag.String("methods", "", "comma-separated MariaDB rows to run (A,1,2,3,4,5,6); default all")
	cpus := flag.Int("cpus", runtime.NumCPU(), "CPU limit given to the agent, as in a pod: pg_restore's jobs")
	engines := flag.String("engines", "mariadb,postgresql", "engines to measure, comma-separated")
	flag.Parse()

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
			benchMariaDB(&bench{myaas: *myaas, dir: dir, dump: filepath.Join(dir, "dump.sql"), memory: *memory}, *rows, *only)
		case "postgresql":
			benchPostgreSQL(*myaas, dir, *rows, *memory, *cpus)
		default:
			log.Fatalf("--engines: unknown engine %q", engine)
		}
	}
}

// benchMariaDB runs the MariaDB rows named in only (all when empty) and prints their table.
func benchMariaDB(b *bench, rows int, only string) {
	spec := dumpgen.Spec{Database: "bench", Rows: rows, Seed: 42, RowsPerInsert: 2000}
	start := time.Now()
	if err := writeDump(b.dump, spec); err != nil {
		log.Fatal(err)
	}
	st, _ := os.Stat(b.dump)
	size := float64(st.Size())
	fmt.Printf("dump: %s, %.0f MB, %d orders, %d customers, 3 tables with secondary indexes (generated in %s)\n",
		b.dump, size/1e6, spec.Rows, spec.Expect().Customers, time.Since(start).Round(time.Second))
	fmt.Printf("machine: %d CPUs; the agent and myloader use %d sessions\n", runtime.NumCPU(), runtime.NumCPU())
	b.want = spec.Expect()

	selected := strings.Split(only, ",")
	took := map[string]time.Duration{}
	var ran []method
	for _, m := range methods() {
		if only != "" && !slices.Contains(selected, m.row) {
			continue
		}
		fmt.Printf("(%s) %s ...\n", m.row, m.name)
		datadir, d, err := m.run(b)
		if err != nil {
			log.Fatalf("%s: %v", m.name, err)
		}
		check(m.name, datadir, b.want)
		took[m.row] = d
		ran = append(ran, m)
	}

	fmt.Println()
	fmt.Printf("%-4s %-52s %10s %8s %10s\n", "row", "method", "time", "MB/s", "vs agent A")
	for _, m := range ran {
		d := took[m.row]
		ratio := "-"
		if ref, ok := took[reference]; ok {
			ratio = fmt.Sprintf("%.2fx", ref.Seconds()/d.Seconds())
		}
		fmt.Printf("%-4s %-52s %10s %8.1f %10s\n", m.row, m.name, d.Round(100*time.Millisecond), size/1e6/d.Seconds(), ratio)
	}
	fmt.Println("(MB/s: MB of dump.sql loaded per second, whatever the method read; vs agent A: how many times faster than row A)")
	target := func(label, fast, slow string, want float64) {
		f, okF := took[fast]
		s, okS := took[slow]
		if okF && okS {
			fmt.Printf("%s: %.2fx (target >= %.1fx)\n", label, s.Seconds()/f.Seconds(), want)
		}
	}
	target("agent single file vs row 2", "4", "2", 1.5)
	target("agent mydumper directory vs myloader", "5", "3", 1.0)
	if b.physical != nil {
		printPhysical(*b.physical)
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

// runAgent times `myaas agent import` from initialisation to clean shutdown, as the import Job
// runs it, with the pod's CPU limit set to cpus (0: none, every CPU).
func (b *bench) runAgent(name, source string, cpus int) (string, time.Duration, error) {
	base := filepath.Join(b.dir, name)
	if err := os.MkdirAll(filepath.Join(base, "run"), 0o755); err != nil {
		return "", 0, err
	}
	datadir := filepath.Join(base, "data")
	cmd := exec.Command(b.myaas, "agent", "import", "--engine=mariadb",
		"--datadir="+datadir, "--run-dir="+filepath.Join(base, "run"),
		"--source-dir="+b.dir, "--source-glob="+source, "--progress-addr=",
		"--termination-log="+filepath.Join(base, "termination-log"), "--post-import-sql-file=")
	cmd.Env = append(os.Environ(), fmt.Sprintf("MYAAS_MEMORY_LIMIT=%d", b.memory))
	if cpus > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("MYAAS_CPU_LIMIT=%d", cpus))
	}
	logFile, err := os.Create(filepath.Join(base, "agent.log"))
	if err != nil {
		return "", 0, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", 0, err
	}
	peak := make(chan int64)
	go func() { peak <- peakRSS(cmd.Process.Pid) }()
	err = cmd.Wait()
	took := time.Since(start)
	if err != nil {
		return "", 0, fmt.Errorf("%w (log: %s)", err, logFile.Name())
	}
	fmt.Printf("    the agent's own peak memory (RSS, without the server and clients): %d MiB\n", <-peak>>20)
	return datadir, took, nil
}

// peakRSS samples a process's resident memory until it exits: the agent's chunk buffers must stay
// bounded whatever the dump's size.
func peakRSS(pid int) int64 {
	var peak int64
	for {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return peak
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				var kb int64
				if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err == nil {
					peak = max(peak, kb<<10)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tunedOptions are the agent's own server options for a datadir under base, by construction.
func (b *bench) tunedOptions(base string) ([]string, error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	if err := os.Setenv("MYAAS_MEMORY_LIMIT", fmt.Sprint(b.memory)); err != nil {
		return nil, err
	}
	return agent.BulkLoadOptions(engine.MariaDB{}, filepath.Join(base, "data"))
}

func (b *bench) runTunedClient() (string, time.Duration, error) {
	opts, err := b.tunedOptions(filepath.Join(b.dir, "tuned"))
	if err != nil {
		return "", 0, err
	}
	return b.runClient("tuned", opts)
}

// runClient times a user's way: an initialised datadir, a server with the options given, the
// client reading the dump, and a clean shutdown (slow, as the agent's, when the server is tuned).
func (b *bench) runClient(name string, opts []string) (string, time.Duration, error) {
	return b.runServer(name, opts, b.loadDump)
}

// loadDump pipes the dump into the mariadb client, as a user loads it by hand.
func (b *bench) loadDump(socket string) error {
	in, err := os.Open(b.dump)
	if err != nil {
		return err
	}
	defer in.Close()
	client := exec.Command("mariadb", "--no-defaults", "--socket="+socket, "-uroot")
	client.Stdin = in
	if out, err := client.CombinedOutput(); err != nil {
		return fmt.Errorf("mariadb: %w: %s", err, out)
	}
	return nil
}

// runMyloader times myloader on the mydumper copy, into a tuned server, with as many threads as
// the agent has sessions.
func (b *bench) runMyloader() (string, time.Duration, error) {
	if err := b.ensureMydumper(); err != nil {
		return "", 0, err
	}
	opts, err := b.tunedOptions(filepath.Join(b.dir, "myloader"))
	if err != nil {
		return "", 0, err
	}
	return b.runServer("myloader", opts, func(socket string) error {
		out, err := exec.Command("myloader", "--socket="+socket, "--user=root", "--directory="+b.mydumperDir,
			fmt.Sprintf("--threads=%d", runtime.NumCPU())).CombinedOutput()
		if err != nil {
			return fmt.Errorf("myloader: %w: %s", err, out)
		}
		return nil
	})
}

// ensureMydumper writes the mydumper copy of the data, untimed: the dump loaded into a tuned
// server, then dumped by mydumper in chunks of a million rows, as a production job would.
func (b *bench) ensureMydumper() error {
	if b.mydumperDir != "" {
		return nil
	}
	dir := filepath.Join(b.dir, "mydumper")
	opts, err := b.tunedOptions(filepath.Join(b.dir, "mydumper-source"))
	if err != nil {
		return err
	}
	fmt.Println("    (untimed) writing the mydumper copy of the dump ...")
	_, _, err = b.runServer("mydumper-source", opts, func(socket string) error {
		if err := b.loadDump(socket); err != nil {
			return err
		}
		out, err := exec.Command("mydumper", "--socket="+socket, "--user=root", "--outputdir="+dir,
			"--database=bench", "--rows=1000000", "--triggers", "--routines", "--events").CombinedOutput()
		if err != nil {
			return fmt.Errorf("mydumper: %w: %s", err, out)
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.mydumperDir = dir
	return os.RemoveAll(filepath.Join(b.dir, "mydumper-source"))
}

// runServer initialises a datadir under dir/name, starts a server with opts, runs load and shuts
// the server down cleanly; it times all of it.
func (b *bench) runServer(name string, opts []string, load func(socket string) error) (string, time.Duration, error) {
	base := filepath.Join(b.dir, name)
	datadir := filepath.Join(base, "data")
	socket := filepath.Join(base, "mysqld.sock")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", 0, err
	}
	start := time.Now()
	root := []string{}
	if os.Geteuid() == 0 {
		root = []string{"--user=root"}
	}
	if out, err := exec.Command("mariadb-install-db", append([]string{"--no-defaults", "--datadir=" + datadir, "--auth-root-authentication-method=normal"}, root...)...).CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("install-db: %w: %s", err, out)
	}
	args := append([]string{"--no-defaults", "--datadir=" + datadir, "--socket=" + socket, "--skip-networking",
		"--log-error=" + filepath.Join(base, "error.log")}, root...)
	srv := exec.Command("/usr/sbin/mariadbd", append(args, opts...)...)
	if err := srv.Start(); err != nil {
		return "", 0, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	if err := waitSocket(socket); err != nil {
		return "", 0, err
	}
	if err := load(socket); err != nil {
		return "", 0, err
	}
	shutdown := []string{"SHUTDOWN"}
	if len(opts) > 0 {
		shutdown = []string{"SET GLOBAL innodb_fast_shutdown = 0", "SHUTDOWN"}
	}
	db := rootDB(socket)
	for _, stmt := range shutdown {
		if _, err := db.Exec(stmt); err != nil && stmt != "SHUTDOWN" {
			db.Close()
			return "", 0, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	db.Close()
	_ = srv.Wait()
	return datadir, time.Since(start), nil
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

// check starts a server on the loaded datadir and compares it with what the dump holds; the
// datadir is removed afterwards, so the runs never need more disk than two copies.
func check(name, datadir string, want dumpgen.Expected) {
	defer os.RemoveAll(datadir)
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
