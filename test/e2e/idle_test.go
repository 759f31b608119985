//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// Idle expiry as a developer meets it: an open client session keeps the instance; once the last
// one closes, the instance is suspended after spec.idle.after, and `kubectl myaas connect`
// resumes it.
func TestIdleInstanceIsSuspendedAndConnectResumesIt(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	newInstance(t, ns, "quiet", "shop", func(d *myaasv1.DatabaseInstance) {
		d.Spec.Idle = &myaasv1.IdleSpec{After: metav1.Duration{Duration: 30 * time.Second}, Action: myaasv1.IdleSuspend}
	})
	waitReady(t, ns, "quiet")

	// A client holds a session open, doing nothing, for longer than spec.idle.after.
	db := connect(t, ns, "quiet")
	db.SetMaxIdleConns(1)
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	opened := time.Now().Truncate(time.Second)
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		if getInstance(t, ns, "quiet").Spec.Suspend {
			t.Fatal("suspended while a client had a session open")
		}
		time.Sleep(2 * time.Second)
	}
	if got := getInstance(t, ns, "quiet").Status.LastActiveAt; got == nil || !got.After(opened) {
		t.Fatalf("lastActiveAt %v: the open session was not seen", got)
	}
	if out := kubectl(t, "-n", ns, "get", "dbi", "quiet", "-o", "wide"); !strings.Contains(out, "LAST ACTIVE") {
		t.Errorf("kubectl get dbi -o wide has no Last Active column:\n%s", out)
	}

	// The session closes: suspended, data kept.
	db.Close()
	eventually(t, 90*time.Second, "suspended once idle", func() error {
		d := getInstance(t, ns, "quiet")
		if !d.Spec.Suspend || d.Status.Phase != myaasv1.InstanceSuspended {
			return fmt.Errorf("suspend %v, phase %s", d.Spec.Suspend, d.Status.Phase)
		}
		return nil
	})
	if out := kubectl(t, "-n", ns, "get", "events", "--field-selector", "reason=Idle"); !strings.Contains(out, "suspending") {
		t.Errorf("no Idle event:\n%s", out)
	}

	// connect resumes it and runs the query.
	out := mustMyaas(t, ns, "connect", "quiet", "--", "-N", "-B", "-e", "SELECT COUNT(*) FROM shop.orders")
	if strings.TrimSpace(out) != fmt.Sprint(shopDump.Expect().Orders) {
		t.Fatalf("connect after idle suspension printed %q", out)
	}
	if d := getInstance(t, ns, "quiet"); d.Spec.Suspend {
		t.Fatal("connect did not resume the instance")
	}
}
