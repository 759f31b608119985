package main

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/test/e2e/dumpgen"
)

// benchPostgreSQL loads the same data as pg_dump --create writes it: the agent against psql -f
// into a server with default settings, then a custom-format archive of it restored by the agent
// and by pg_restore -j into a default server.
func benchPostgreSQL(myaas, dir string, rows int, memory int64, cpus int) {
	base := filepath.Join(dir, "postgresql")
	// The servers run as the postgres user when this runs as root.
	for d := dir; d != "/" && d != filepath.Dir(d); d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o005 == 0 {
			_ = os.Chmod(d, st.Mode().Perm()|0o055)
		}
	}
	mustMkdir(base)
	dump := filepath.Join(base, "dump.sql")
	spec := dumpgen.Spec{Dialect: dumpgen.PostgreSQL, Database: "bench", Rows: rows, Seed: 42, Owner: "bench_owner"}
	start := time.Now()
	if err := writeDump(dump, spec); err != nil {
		log.Fatal(err)
	}
	st, _ := os.Stat(dump)
	size := float64(st.Size())
	fmt.Printf("postgresql dump: %s, %.0f MB, %d orders (generated in %s)\n", dump, size/1e6, spec.Rows, time.Since(start).Round(time.Second))
	want := spec.Expect()

	fmt.Println("(a) myaas agent import, plain SQL ...")
	agentPlain := runPGAgent(myaas, base, "agent-plain", "dump.sql", memory, cpus)
	checkPG("agent, plain", filepath.Join(base, "agent-plain", "data"), want)

	fmt.Println("(b) psql -f dump.sql into a default server ...")
	plainData := filepath.Join(base, "psql", "data")
	plain := timed(func() {
		srv := newPGServer(filepath.Join(base, "psql"))
		srv.initdb()
		srv.start()
		// The role the dump's OWNER TO statements name, as on the source's server.
		srv.psql("postgres", "-c", "CREATE ROLE bench_owner")
		srv.psql("postgres", "--set=ON_ERROR_STOP=1", "--file="+dump)
		srv.stop()
	})
	checkPG("psql", plainData, want)

	archive := filepath.Join(base, "dump.custom")
	srv := newPGServer(filepath.Join(base, "psql"))
	srv.start()
	srv.run("pg_dump", "--format=custom", "--dbname=bench", "--file="+archive)
	srv.stop()
	st, _ = os.Stat(archive)
	fmt.Printf("custom archive: %.0f MB\n", float64(st.Size())/1e6)

	fmt.Printf("(c) myaas agent import, custom archive, pg_restore -j %d ...\n", cpus)
	agentCustom := runPGAgent(myaas, base, "agent-custom", "dump.custom", memory, cpus)
	checkPG("agent, custom", filepath.Join(base, "agent-custom", "data"), want)

	fmt.Printf("(d) pg_restore -j %d into a default server ...\n", cpus)
	restore := timed(func() {
		srv := newPGServer(filepath.Join(base, "restore"))
		srv.initdb()
		srv.start()
		srv.run("pg_restore", "--no-owner", "--exit-on-error", "--create", "--dbname=postgres", "--jobs="+strconv.Itoa(cpus), archive)
		srv.stop()
	})
	checkPG("pg_restore", filepath.Join(base, "restore", "data"), want)

	fmt.Println()
	fmt.Printf("%-52s %10s %10s\n", "method (PostgreSQL, same data)", "time", "MB/s")
	row := func(name string, d time.Duration) {
		fmt.Printf("%-52s %10s %10.1f\n", name, d.Round(100*time.Millisecond), size/1e6/d.Seconds())
	}
	row("myaas agent import, plain SQL", agentPlain)
	row("psql -f dump.sql, default server settings", plain)
	row(fmt.Sprintf("myaas agent import, custom archive (-j %d)", cpus), agentCustom)
	row(fmt.Sprintf("pg_restore -j %d, default server settings", cpus), restore)
	fmt.Printf("speed-up, plain SQL: %.2fx (target >= 2x)\n", plain.Seconds()/agentPlain.Seconds())
	fmt.Println("(MB/s counts the plain dump's size for every row)")
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func mustMkdir(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
}

// runPGAgent times `myaas agent import --engine=postgresql`, as the import Job runs it.
func runPGAgent(myaas, base, name, glob string, memory int64, cpus int) time.Duration {
	dir := filepath.Join(base, name)
	mustMkdir(filepath.Join(dir, "run"))
	cmd := exec.Command(myaas, "agent", "import", "--engine=postgresql",
		"--datadir="+filepath.Join(dir, "data"), "--run-dir="+filepath.Join(dir, "run"),
		"--source-dir="+base, "--source-glob="+glob, "--progress-addr=",
		"--termination-log="+filepath.Join(dir, "termination-log"), "--post-import-sql-file=")
	cmd.Env = append(os.Environ(), fmt.Sprintf("MYAAS_MEMORY_LIMIT=%d", memory), fmt.Sprintf("MYAAS_CPU_LIMIT=%d", cpus))
	logFile, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		log.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	d := timed(func() {
		if err := cmd.Run(); err != nil {
			log.Fatalf("agent import %s: %v (log: %s)", glob, err, logFile.Name())
		}
	})
	return d
}

// pgServer is a server with default settings; only its socket directory is set.
type pgServer struct{ dir, datadir string }

func newPGServer(dir string) pgServer {
	mustMkdir(dir)
	s := pgServer{dir: dir, datadir: filepath.Join(dir, "data")}
	chownToPostgres(dir)
	return s
}

func (s pgServer) initdb() {
	s.run("initdb", "--pgdata="+s.datadir, "--username=postgres", "--encoding=UTF8", "--locale=C.UTF-8")
}

func (s pgServer) start() {
	s.run("pg_ctl", "start", "--wait", "--timeout=600", "--pgdata="+s.datadir, "--log="+filepath.Join(s.dir, "server.log"),
		"--options=-c listen_addresses= -c unix_socket_directories="+s.dir)
}

func (s pgServer) stop() {
	s.run("pg_ctl", "stop", "--wait", "--timeout=3600", "--mode=fast", "--pgdata="+s.datadir)
}

func (s pgServer) psql(db string, args ...string) string {
	return s.run("psql", append([]string{"--no-psqlrc", "--quiet", "--dbname=" + db}, args...)...)
}

// run runs one of PostgreSQL's programs against the server; the server's own as the postgres user
// under root, which they require.
func (s pgServer) run(name string, args ...string) string {
	bin, err := (engine.PostgreSQL{}).Binary(name)
	if err != nil {
		log.Fatal(err)
	}
	client := false
	switch name {
	case "psql", "pg_dump", "pg_restore":
		args = append([]string{"--host=" + s.dir, "--username=postgres"}, args...)
		client = true
	}
	cmd := exec.Command(bin, args...)
	if cred := postgresUser(); cred != nil && !client {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = append(os.Environ(), "HOME=/")
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		log.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tailOf([]byte(stderr.String()), 2000))
	}
	return string(out)
}

func postgresUser() *syscall.Credential {
	u, err := engine.PostgresOSUser()
	if err != nil {
		log.Fatal(err)
	}
	return u
}

func chownToPostgres(dir string) {
	cred := postgresUser()
	if cred == nil {
		return
	}
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
	if err != nil {
		log.Fatal(err)
	}
}

// checkPG starts a server with default settings on a loaded datadir and compares it with the dump.
func checkPG(name, datadir string, want dumpgen.Expected) {
	srv := pgServer{dir: filepath.Dir(datadir), datadir: datadir}
	chownToPostgres(srv.dir)
	srv.start()
	defer srv.stop()
	out := strings.Fields(srv.psql("bench", "--tuples-only", "--no-align", "--field-separator= ",
		"--command=SELECT (SELECT count(*) FROM bench.orders), (SELECT count(*) FROM bench.customers), (SELECT sum(total_cents) FROM bench.orders)"))
	if len(out) != 3 || out[0] != strconv.Itoa(want.Orders) || out[1] != strconv.Itoa(want.Customers) || out[2] != strconv.FormatInt(want.OrderTotalCents, 10) {
		log.Fatalf("%s: loaded %v; want %+v", name, out, want)
	}
	fmt.Printf("    %s: data verified (%s orders, sum %s)\n", name, out[0], out[2])
}
