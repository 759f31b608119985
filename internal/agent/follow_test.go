package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
)

// writeSecretFiles writes the keys the way the kubelet does: each file replaced at once.
func writeSecretFiles(t *testing.T, dir string, creds map[string]string) {
	t.Helper()
	for k, v := range creds {
		tmp := filepath.Join(dir, "."+k)
		if err := os.WriteFile(tmp, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
}

// smallTemplate is a template datadir the small dump was imported into.
func smallTemplate(t *testing.T) string {
	t.Helper()
	dump, _ := sourceDumpSmall()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "d.sql"), dump, 0o644); err != nil {
		t.Fatal(err)
	}
	template, _, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "d.sql"}})
	if err != nil {
		t.Fatal(err)
	}
	return template
}

// agentStart runs `agent start` on datadir, as the pod does, until cancel is called or the test
// ends. It returns the server's TCP address and where the agent's result arrives.
func agentStart(t *testing.T, datadir, credDir, adminDir string, extraFlags ...string) (addr string, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		result <- runStart(ctx, append([]string{
			agentapi.Flag(agentapi.FlagDatadir, datadir),
			agentapi.Flag(agentapi.FlagRunDir, filepath.Join(t.TempDir(), "run")),
			agentapi.Flag(agentapi.FlagCredentialsDir, credDir),
			agentapi.Flag(agentapi.FlagAdminCredentialsDir, adminDir),
			agentapi.Flag(agentapi.FlagPort, fmt.Sprint(port)),
		}, extraFlags...))
	}()
	ended := make(chan error, 1)
	go func() { err := <-result; ended <- err; close(ended) }()
	t.Cleanup(func() {
		cancel()
		<-ended
	})
	return fmt.Sprintf("127.0.0.1:%d", port), cancel, ended
}

// The Secret is the source of truth: a password edited in it reaches the running server, with no
// restart, and the old one stops working.
func TestStartedServerFollowsTheSecret(t *testing.T) {
	template := smallTemplate(t)
	creds := map[string]string{"username": "alice", "password": "pw-1", "database": "app", "root-password": "root-1"}
	credDir, adminDir := credentialDirs(t, creds)
	addr, cancel, done := agentStart(t, copyDir(t, template), credDir, adminDir)
	waitLogin := func(user, password, db string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for login(addr, user, password, db) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s never logged in with %s", user, password)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitLogin("alice", "pw-1", "app")

	waitLogin(agentapi.AdminUsername, "admin-root-1", "")
	creds["password"], creds["root-password"] = "pw-2", "root-2"
	writeSecrets(t, credDir, adminDir, creds)
	waitLogin("alice", "pw-2", "app")
	waitLogin(agentapi.AdminUsername, "admin-root-2", "")
	if err := login(addr, "alice", "pw-1", "app"); err == nil {
		t.Fatal("the old password still works")
	}
	if err := login(addr, agentapi.AdminUsername, "admin-root-1", ""); err == nil {
		t.Fatal("the old admin password still works")
	}
	// Root, changed too, is what the agent logs in with: a second change proves it took.
	creds["password"] = "pw-3"
	writeSecrets(t, credDir, adminDir, creds)
	waitLogin("alice", "pw-3", "app")

	// SIGTERM (the context) reaches the server, which shuts down cleanly.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent start after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the server did not stop after SIGTERM")
	}
}
