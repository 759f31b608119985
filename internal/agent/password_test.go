package agent

import (
	"context"
	"testing"
	"time"

	"github.com/myaas/myaas/internal/engine"
)

// A claimed warm pool member's server takes its instance's password from the operator, which
// logs in as the application user with the pool's temporary password: that user may change its
// own password on both engines, and the temporary one stops working at once. Passwords a user
// may put in a Secret, quotes and backslashes included, arrive intact.
func TestApplicationUserChangesItsOwnPassword(t *testing.T) {
	const temporary = "pool-temporary"
	claimed := []string{`claimed-Xy7`, `it's a \back\slash "quote"`}
	ctx := context.Background()

	t.Run("mariadb", func(t *testing.T) {
		creds := map[string]string{"username": "alice", "password": temporary, "database": "app", "root-password": "root-1"}
		credDir, adminDir := credentialDirs(t, creds)
		addr, _, _ := agentStart(t, copyDir(t, smallTemplate(t)), credDir, adminDir)
		waitUntil(t, func() error { return login(addr, "alice", temporary, "app") })
		current := temporary
		for _, next := range claimed {
			l := engine.Login{Addr: addr, Username: "alice", Password: current, Database: "app", Timeout: 3 * time.Second}
			if err := (engine.MariaDB{}).ChangeOwnPassword(ctx, l, next); err != nil {
				t.Fatalf("change alice's own password to %q: %v", next, err)
			}
			if err := login(addr, "alice", next, "app"); err != nil {
				t.Fatalf("the new password %q does not log in: %v", next, err)
			}
			if err := login(addr, "alice", current, "app"); err == nil {
				t.Fatalf("the old password %q still logs in", current)
			}
			current = next
		}
	})

	t.Run("postgresql", func(t *testing.T) {
		creds := map[string]string{"username": "alice", "password": temporary, "database": "app", "root-password": "r"}
		c := startPGClone(t, true, creds)
		c.waitLogin(t, "alice", temporary, "app", nil)
		current := temporary
		for _, next := range claimed {
			l := engine.Login{Addr: c.addr, Username: "alice", Password: current, Database: "app", Timeout: 3 * time.Second}
			if err := (engine.PostgreSQL{}).ChangeOwnPassword(ctx, l, next); err != nil {
				t.Fatalf("change alice's own password to %q: %v", next, err)
			}
			if err := c.login("alice", next, "app", nil); err != nil {
				t.Fatalf("the new password %q does not log in: %v", next, err)
			}
			if err := c.login("alice", current, "app", nil); err == nil {
				t.Fatalf("the old password %q still logs in", current)
			}
			current = next
		}
	})
}

func waitUntil(t *testing.T, try func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
