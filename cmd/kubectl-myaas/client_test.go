package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/internal/postgrestest"
)

// The in-pod psql session, as the client pod runs it: it waits for the go line on stdin, finds
// the server and runs the user's arguments with the login from the Secret's variables.
func TestPsqlPodScriptRunsTheUsersCommand(t *testing.T) {
	psql := postgrestest.Binary(t, "psql")
	postgres := postgrestest.Binary(t, "postgres")
	dir := t.TempDir()
	datadir := filepath.Join(dir, "data")
	if err := postgrestest.MakeDatadir(datadir, false); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	server := postgrestest.Command(postgres, "-D", datadir, "-c", "port="+strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=")
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = server.Process.Signal(syscall.SIGINT)
		_ = server.Wait()
	})
	// The script starts before the server answers, as a client pod may.
	cmd := exec.Command("sh", "-c", psqlPodScript, "sh", "-At", "-c", "SELECT current_user || '@' || current_database() || ':' || 40 + 2")
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(psql)+":"+os.Getenv("PATH"),
		"PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(port), "PGUSER="+engine.PostgresSuperuser, "PGDATABASE=postgres", "PGPASSWORD=unused")
	cmd.Stdin = strings.NewReader("\n")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the script did not end")
	}
	if got := strings.TrimSpace(string(out)); err != nil || got != fmt.Sprintf("%s@postgres:42", engine.PostgresSuperuser) {
		t.Fatalf("script: %v, output %q", err, got)
	}
}
