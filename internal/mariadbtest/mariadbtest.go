// Package mariadbtest starts a real MariaDB server for tests: its own datadir, socket and loopback
// port, stopped when the test ends. Tests skip when the server is not installed, unless
// MYAAS_REQUIRE_MARIADB is set (as in CI), where a missing server is a failure.
package mariadbtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/testdeps"
)

// Server is a running mariadbd.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr    string
	Socket  string
	DataDir string
	cmd     *exec.Cmd
	exited  chan error
}

// Binaries returns the paths of mariadbd and mariadb-install-db, skipping or failing the test
// when they are not installed.
func Binaries(t testing.TB) (server, installDB string) {
	t.Helper()
	server, err1 := lookPath("mariadbd")
	installDB, err2 := lookPath("mariadb-install-db")
	if err1 != nil || err2 != nil {
		msg := "mariadbd or mariadb-install-db not found: run hack/install-mariadb.sh"
		testdeps.Missing(t, testdeps.MariaDB, msg)
	}
	return server, installDB
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// Start initialises a datadir and starts a server on it, with extra server options if given.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	server, installDB := Binaries(t)
	dir, err := os.MkdirTemp("", "mariadbtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dataDir := filepath.Join(dir, "data")
	args := []string{"--no-defaults", "--datadir=" + dataDir, "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	// Servers of tests running side by side must not share a tmpdir: one that starts removes the
	// temporary tables it finds there, another's bootstrap tables among them.
	install := exec.Command(installDB, args...)
	install.Env = append(os.Environ(), "TMPDIR="+dir)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	return StartOn(t, server, dataDir, filepath.Join(dir, "mysqld.sock"), extra...)
}

// StartOn starts mariadbd on an existing datadir, with extra server options if given.
func StartOn(t testing.TB, server, dataDir, socket string, extra ...string) *Server {
	t.Helper()
	port := freePort(t)
	args := []string{
		"--no-defaults",
		"--datadir=" + dataDir,
		"--socket=" + socket,
		"--pid-file=" + socket + ".pid",
		"--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--skip-log-bin",
		"--innodb-buffer-pool-size=64M",
		"--innodb-log-file-size=16M",
		"--innodb-use-native-aio=0",
		"--log-error=" + filepath.Join(filepath.Dir(socket), "error.log"),
		"--tmpdir=" + filepath.Dir(socket),
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	args = append(args, extra...)
	cmd := exec.Command(server, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mariadbd: %v", err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Socket: socket, DataDir: dataDir, cmd: cmd, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	t.Cleanup(s.stop)

	deadline := time.Now().Add(60 * time.Second)
	for {
		db := s.Root(t)
		err := db.Ping()
		db.Close()
		if err == nil {
			return s
		}
		select {
		case err := <-s.exited:
			log, _ := os.ReadFile(filepath.Join(filepath.Dir(socket), "error.log"))
			t.Fatalf("mariadbd exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mariadbd did not answer within 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Root connects as root over the socket.
func (s *Server) Root(t testing.TB) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", s.Socket
	cfg.MultiStatements = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sql.OpenDB(connector)
}

// Exec runs statements as root.
func (s *Server) Exec(t testing.TB, stmts ...string) {
	t.Helper()
	db := s.Root(t)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, stmt := range stmts {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
