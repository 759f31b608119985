package agent

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// getReadiness is the kubelet's probe: a GET of the agent's readiness path.
func getReadiness(port int) (int, string, error) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, agentapi.ReadinessPath))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// waitReadiness waits until the probe answers 200.
func waitReadiness(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body, err := getReadiness(port)
		if code == http.StatusOK && body == "ok\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the readiness probe never passed: %d %q %v", code, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The kubelet's readiness probe reaches the agent over HTTP, which logs in with the Secret's
// credentials as they are now: Ready means usable, and a password changed in the Secret is
// what the probe logs in with next.
func TestReadinessProbeLogsInWithTheSecret(t *testing.T) {
	template := smallTemplate(t)
	creds := map[string]string{"username": "alice", "password": "pw-1", "database": "app", "root-password": "root-1"}
	credDir, adminDir := credentialDirs(t, creds)
	probePort := freePort(t)
	runDir := filepath.Join(t.TempDir(), "run")
	addr, cancel, done := agentStart(t, copyDir(t, template), credDir, adminDir,
		agentapi.Flag(agentapi.FlagRunDir, runDir), agentapi.Flag(agentapi.FlagReadinessPort, fmt.Sprint(probePort)))
	// The agent listens before it starts the server: its first answer waits for the server to
	// take logins rather than failing at once, within the probe's time-out.
	for {
		asked := time.Now()
		code, body, err := getReadiness(probePort)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if code != http.StatusOK && time.Since(asked) < 3*time.Second {
			t.Fatalf("the first probe failed after %s without waiting for the starting server: %d %q", time.Since(asked), code, body)
		}
		break
	}
	waitReadiness(t, probePort)

	creds["password"] = "pw-2"
	writeSecrets(t, credDir, adminDir, creds)
	deadline := time.Now().Add(60 * time.Second)
	for login(addr, "alice", "pw-2", "app") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the server never took the Secret's new password")
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitReadiness(t, probePort)

	// Credentials the server does not accept fail the probe, with the reason and nothing secret.
	wrongDir := t.TempDir()
	writeSecretFiles(t, wrongDir, map[string]string{"username": "alice", "password": "not-the-password", "database": "app"})
	wrong := &readiness{eng: engine.MariaDB{}, addr: filepath.Join(runDir, agentapi.SocketName), credentialsDir: wrongDir, timeout: 3 * time.Second}
	rec := httptest.NewRecorder()
	wrong.handle(rec, httptest.NewRequest(http.MethodGet, agentapi.ReadinessPath, nil))
	if body := rec.Body.String(); rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, "probe:") || strings.Contains(body, "not-the-password") {
		t.Fatalf("wrong credentials: %d %q, want 503 with the login's error and no password", rec.Code, body)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent start after SIGTERM: %v", err)
	}
	if code, _, err := getReadiness(probePort); err == nil {
		t.Fatalf("the probe still answers (%d) after the agent ended", code)
	}
}

// PostgreSQL's clone answers the same probe, once the instance's role has the Secret's password.
func TestReadinessProbePostgreSQL(t *testing.T) {
	creds := map[string]string{"username": "alice", "password": "pw-1", "database": "app", "root-password": "root-1"}
	probePort := freePort(t)
	startPGClone(t, true, creds, agentapi.Flag(agentapi.FlagReadinessPort, fmt.Sprint(probePort)))
	waitReadiness(t, probePort)
}

// A taken port fails the start at once, naming it, rather than leaving a pod never Ready.
func TestReadinessPortTaken(t *testing.T) {
	l, err := listenReadiness(freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = listenReadiness(l.Addr().(*net.TCPAddr).Port)
	if err == nil || !strings.Contains(err.Error(), "readiness probe port") {
		t.Fatalf("second listen: %v, want an error naming the readiness probe port", err)
	}
}
