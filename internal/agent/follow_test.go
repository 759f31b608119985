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

// The Secret is the source of truth: a password edited in it reaches the running server, with no
// restart, and the old one stops working.
func TestStartedServerFollowsTheSecret(t *testing.T) {
	dump, _ := sourceDumpSmall()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "d.sql"), dump, 0o644); err != nil {
		t.Fatal(err)
	}
	template, _, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "d.sql"}})
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]string{"username": "alice", "password": "pw-1", "database": "app", "root-password": "root-1"}
	credDir, adminDir := credentialDirs(t, creds)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	var startErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		startErr = runStart(ctx, []string{
			agentapi.Flag(agentapi.FlagDatadir, copyDir(t, template)),
			agentapi.Flag(agentapi.FlagRunDir, filepath.Join(t.TempDir(), "run")),
			agentapi.Flag(agentapi.FlagCredentialsDir, credDir),
			agentapi.Flag(agentapi.FlagAdminCredentialsDir, adminDir),
			agentapi.Flag(agentapi.FlagPort, fmt.Sprint(port)),
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
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
	case <-done:
		if startErr != nil {
			t.Fatalf("agent start after SIGTERM: %v", startErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the server did not stop after SIGTERM")
	}
}
