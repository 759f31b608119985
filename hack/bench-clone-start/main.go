// Command bench-clone-start measures what `agent start --engine=postgresql` adds to a PostgreSQL
// clone's start (make bench-clone-start): on fresh copies of one datadir, as an import leaves it,
// the time from running the command to a successful login over TCP, for
//
//   - `pg_ctl start -w`, then postgres logging in (the datadir's own hba file trusts it);
//   - `postgres` run directly, logged in to as soon as it answers: the server's own start-up;
//   - `myaas agent start`, the application role logging in with the Secret's password.
//
// It prints the median of each and the differences; it asserts nothing.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/internal/postgrestest"
)

func main() {
	agent := flag.String("agent", "bin/myaas", "the myaas binary")
	runs := flag.Int("runs", 10, "starts of each kind")
	tables := flag.Int("tables", 200, "tables in the template's database, each with a sequence and an index")
	prepare := flag.Bool("prepared", true, "the template prepared for fast clones, as the import leaves it; false: a plain datadir")
	flag.Parse()
	if err := run(*agent, *runs, *tables, *prepare); err != nil {
		log.Fatal(err)
	}
}

func run(agent string, runs, tables int, prepare bool) error {
	agent, err := filepath.Abs(agent)
	if err != nil {
		return err
	}
	pg := engine.PostgreSQL{}
	pgCtl, err := pg.Binary("pg_ctl")
	if err != nil {
		return err
	}
	postgres, err := pg.Binary("postgres")
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "bench-clone-start-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	template := filepath.Join(work, "template", "data")
	var ddl strings.Builder
	for i := range tables {
		fmt.Fprintf(&ddl, "CREATE TABLE shop.t%d (id bigserial PRIMARY KEY, v text); INSERT INTO shop.t%d (v) SELECT md5(g::text) FROM generate_series(1, 100) g;\n", i, i)
	}
	log.Printf("making a template datadir with %d tables (prepared for clones: %v)", tables, prepare)
	err = postgrestest.MakeDatadir(template, prepare,
		postgrestest.Step{Database: "postgres", SQL: "CREATE ROLE legacy LOGIN PASSWORD 'legacy'"},
		postgrestest.Step{Database: "postgres", SQL: "CREATE DATABASE shop"},
		postgrestest.Step{Database: "shop", SQL: "CREATE SCHEMA shop; " + ddl.String()},
	)
	if err != nil {
		return err
	}
	var ctlTimes, directTimes, agentTimes []time.Duration
	for i := range runs {
		// Each kind in turn, so that the page cache and the disk favour none.
		d, err := timeStart(work, i, "pg_ctl", template, func(dir, runDir string, port int) (func(), error) {
			opts := fmt.Sprintf("-c port=%d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s", port, runDir)
			if out, err := postgrestest.Command(pgCtl, "start", "-w", "-s", "-D", dir, "-l", filepath.Join(runDir, "log"), "-o", opts).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("pg_ctl start: %w\n%s", err, out)
			}
			return func() { _ = postgrestest.Command(pgCtl, "stop", "-w", "-s", "-m", "fast", "-D", dir).Run() }, nil
		}, engine.PostgresSuperuser, "")
		if err != nil {
			return err
		}
		ctlTimes = append(ctlTimes, d)
		d, err = timeStart(work, i, "postgres", template, func(dir, runDir string, port int) (func(), error) {
			cmd := postgrestest.Command(postgres, "-D", dir, "-c", "port="+strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+runDir)
			return startProcess(cmd, syscall.SIGINT)
		}, engine.PostgresSuperuser, "")
		if err != nil {
			return err
		}
		directTimes = append(directTimes, d)
		d, err = timeStart(work, i, "agent", template, func(dir, runDir string, port int) (func(), error) {
			secrets := filepath.Join(filepath.Dir(dir), "secrets")
			if err := writeSecrets(secrets); err != nil {
				return nil, err
			}
			cmd := exec.Command(agent, "agent", agentapi.CommandStart,
				agentapi.Flag(agentapi.FlagEngine, pg.Name()),
				agentapi.Flag(agentapi.FlagDatadir, dir),
				agentapi.Flag(agentapi.FlagRunDir, runDir),
				agentapi.Flag(agentapi.FlagCredentialsDir, filepath.Join(secrets, "user")),
				agentapi.Flag(agentapi.FlagAdminCredentialsDir, filepath.Join(secrets, "admin")),
				agentapi.Flag(agentapi.FlagPort, strconv.Itoa(port)))
			return startProcess(cmd, syscall.SIGTERM)
		}, "app", "app-password")
		if err != nil {
			return err
		}
		agentTimes = append(agentTimes, d)
	}
	ctl, direct, viaAgent := median(ctlTimes), median(directTimes), median(agentTimes)
	fmt.Printf("PostgreSQL clone start to a successful TCP login, median of %d, %d tables, template prepared: %v\n", runs, tables, prepare)
	fmt.Printf("  pg_ctl start -w, then login as postgres   %7.0f ms\n", ms(ctl))
	fmt.Printf("  postgres, login as soon as it answers      %7.0f ms\n", ms(direct))
	fmt.Printf("  myaas agent start, login as the app role   %7.0f ms\n", ms(viaAgent))
	fmt.Printf("  agent - pg_ctl                             %+7.0f ms (target: at most +300 ms)\n", ms(viaAgent-ctl))
	fmt.Printf("  agent - postgres                           %+7.0f ms\n", ms(viaAgent-direct))
	return nil
}

// timeStart copies the template, runs start on the copy and times it to the first login over
// TCP as user, then stops the server.
func timeStart(work string, i int, kind, template string, start func(dir, runDir string, port int) (stop func(), err error), user, password string) (time.Duration, error) {
	parent := filepath.Join(work, fmt.Sprintf("%s-%d", kind, i))
	dir, runDir := filepath.Join(parent, "data"), filepath.Join(parent, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return 0, err
	}
	if err := postgrestest.CopyDir(template, dir); err != nil {
		return 0, err
	}
	if err := postgrestest.Give(parent); err != nil {
		return 0, err
	}
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	stop, err := start(dir, runDir, port)
	if err != nil {
		return 0, err
	}
	defer stop()
	if err := waitLogin(port, user, password); err != nil {
		return 0, fmt.Errorf("%s: %w", kind, err)
	}
	return time.Since(t0), nil
}

func waitLogin(port int, user, password string) error {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable connect_timeout=1", port, user))
	if err != nil {
		return err
	}
	cfg.Password = password
	if user != engine.PostgresSuperuser {
		cfg.Database = "shop"
	}
	deadline := time.Now().Add(time.Minute)
	for {
		conn, err := pgx.ConnectConfig(context.Background(), cfg)
		if err == nil {
			var one int
			err = conn.QueryRow(context.Background(), "SELECT 1").Scan(&one)
			conn.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no login within a minute: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startProcess(cmd *exec.Cmd, stopSignal syscall.Signal) (func(), error) {
	logFile, err := os.CreateTemp("", "bench-clone-start-*.log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() {
		_ = cmd.Process.Signal(stopSignal)
		_ = cmd.Wait()
		logFile.Close()
		os.Remove(logFile.Name())
	}, nil
}

// writeSecrets writes the instance's two Secrets as the kubelet mounts them.
func writeSecrets(dir string) error {
	for sub, keys := range map[string]map[string]string{
		"user": {agentapi.SecretKeyUsername: "app", agentapi.SecretKeyPassword: "app-password", agentapi.SecretKeyDatabase: "app"},
		"admin": {agentapi.AdminKeyUsername: agentapi.AdminUsername, agentapi.AdminKeyPassword: "admin-password",
			agentapi.AdminKeyRootPassword: "root-password"},
	} {
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		for k, v := range keys {
			if err := os.WriteFile(filepath.Join(d, k), []byte(v), 0o400); err != nil {
				return err
			}
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
