//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// A developer's day with the plugin: create (twice), query through connect, locally and from a
// pod in the cluster, change a row, reset it back, reach it through a port-forward, resume it
// from suspension, extend and delete it.
func TestPluginCreateConnectReset(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	orders := fmt.Sprint(shopDump.Expect().Orders)

	env := parseKV(t, mustMyaas(t, ns, "create", "pr-1", "--template", "shop", "--ttl", "2h", "--label", "app=pr-1", "--wait", "-o", "env"))
	creds := secretData(t, ns, "pr-1-credentials")
	for k, key := range map[string]string{"MYAAS_HOST": "host", "MYAAS_PORT": "port", "MYAAS_USERNAME": "username",
		"MYAAS_PASSWORD": "password", "MYAAS_DATABASE": "database", "MYAAS_URI": "uri", "MYAAS_JDBC_URI": "jdbc-uri"} {
		if env[k] != creds[key] {
			t.Errorf("%s=%q, the Secret's %s is %q", k, env[k], key, creds[key])
		}
	}
	inst := getInstance(t, ns, "pr-1")
	if inst.Labels["app"] != "pr-1" || inst.Spec.TTL == nil || inst.Spec.TTL.Duration != 2*time.Hour {
		t.Errorf("labels %v, ttl %v", inst.Labels, inst.Spec.TTL)
	}
	// Again, as the next push of the same pull request would: the same instance, the same details.
	again := myaas(t, ns, "create", "pr-1", "--template", "shop", "--ttl", "2h", "--wait", "-o", "env")
	if again.code != 0 || parseKV(t, again.stdout)["MYAAS_PASSWORD"] != env["MYAAS_PASSWORD"] || getInstance(t, ns, "pr-1").UID != inst.UID {
		t.Fatalf("a second create changed the instance: %+v", again)
	}

	// This machine has a mariadb client but no route to Service IPs: connect goes to the pod.
	query := func(sql string, extra ...string) string {
		t.Helper()
		args := append(append([]string{"connect", "pr-1"}, extra...), "--", "-N", "-B", "-e", sql)
		return strings.TrimSpace(mustMyaas(t, ns, args...))
	}
	if got := query("SELECT COUNT(*) FROM shop.orders"); got != orders {
		t.Fatalf("local client: %q orders, want %s", got, orders)
	}
	if got := query("SELECT COUNT(*) FROM shop.orders", "--in-cluster"); got != orders {
		t.Fatalf("client pod: %q orders, want %s", got, orders)
	}
	if r := myaas(t, ns, "connect", "pr-1", "--", "-e", "SELECT * FROM no_such_table"); r.code != 1 || !strings.Contains(r.stderr, "no_such_table") {
		t.Errorf("a failing query: exit %d, %q; want the client's exit 1 and its message", r.code, r.stderr)
	}
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"myaas.io/client-of": "pr-1"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			t.Errorf("client pod %s left behind", p.Name)
		}
	}

	// Reset: a changed row is back after the reset.
	original := query("SELECT total_cents FROM shop.orders WHERE id = 1")
	query("UPDATE shop.orders SET total_cents = 4242424242 WHERE id = 1")
	if got := query("SELECT total_cents FROM shop.orders WHERE id = 1"); got != "4242424242" {
		t.Fatalf("the update did not take: %q", got)
	}
	mustMyaas(t, ns, "reset", "pr-1", "--wait")
	if got := getInstance(t, ns, "pr-1").Status.Resets; got != 1 {
		t.Errorf("status.resets %d after one reset", got)
	}
	if got := query("SELECT total_cents FROM shop.orders WHERE id = 1"); got != original {
		t.Fatalf("after reset the row holds %q, want %q", got, original)
	}

	// list and status say what the instance is, and how old its data is.
	list := mustMyaas(t, ns, "list")
	for _, w := range []string{"NAME", "DATA AGE", "pr-1", "shop", "Ready", "in 1"} {
		if !strings.Contains(list, w) {
			t.Errorf("list lacks %q:\n%s", w, list)
		}
	}
	status := mustMyaas(t, ns, "status", "pr-1")
	for _, w := range []string{"Template:", "shop", "Revision:", "Phase:", "Ready", "Data age:", "imported", "Expires:", "Resets:"} {
		if !strings.Contains(status, w) {
			t.Errorf("status lacks %q:\n%s", w, status)
		}
	}

	portForwardWorks(t, ns, "pr-1", orders)

	// A suspended instance is resumed by connect.
	kubectl(t, "-n", ns, "patch", "dbi", "pr-1", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
	eventually(t, 60*time.Second, "suspended", func() error {
		sts := &appsv1.StatefulSet{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pr-1"}, sts); err != nil {
			return err
		}
		if sts.Status.Replicas != 0 || getInstance(t, ns, "pr-1").Status.Phase != myaasv1.InstanceSuspended {
			return fmt.Errorf("%d replicas", sts.Status.Replicas)
		}
		return nil
	})
	if got := query("SELECT COUNT(*) FROM shop.orders"); got != orders {
		t.Fatalf("after resume: %q orders", got)
	}
	if getInstance(t, ns, "pr-1").Spec.Suspend {
		t.Error("connect did not resume the instance")
	}

	mustMyaas(t, ns, "extend", "pr-1", "--ttl", "4h")
	inst = getInstance(t, ns, "pr-1")
	if inst.Spec.TTL != nil || inst.Spec.ExpiresAt == nil || time.Until(inst.Spec.ExpiresAt.Time) < 3*time.Hour+50*time.Minute {
		t.Errorf("after extend: ttl %v, expiresAt %v", inst.Spec.TTL, inst.Spec.ExpiresAt)
	}

	mustMyaas(t, ns, "delete", "--selector", "app=pr-1")
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pr-1"}, &myaasv1.DatabaseInstance{}); err == nil {
		t.Fatal("the instance is still there after delete --wait")
	}
	mustMyaas(t, ns, "delete", "pr-1") // twice is fine

	failsWith(t, myaas(t, ns, "create", "x", "--template", "nope"), `template "nope" not found`)
	failsWith(t, myaas(t, ns, "connect", "gone"), `instance "gone" not found`)
}

// portForwardWorks runs `port-forward` as a user would, logs in through the printed URI and stops it.
func portForwardWorks(t *testing.T, ns, name, orders string) {
	t.Helper()
	cmd := exec.Command(pluginPath(t), "--kubeconfig", kubeconfig, "-n", ns, "port-forward", name)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("port-forward printed no URI: %v", err)
	}
	u, err := url.Parse(strings.TrimSpace(line))
	if err != nil || u.Hostname() != "127.0.0.1" {
		t.Fatalf("port-forward URI %q: %v", line, err)
	}
	password, _ := u.User.Password()
	db := open(t, u.Host, u.User.Username(), password, strings.TrimPrefix(u.Path, "/"))
	if n := queryInt(t, db, "SELECT COUNT(*) FROM shop.orders"); fmt.Sprint(n) != orders {
		t.Fatalf("through the port-forward: %d orders", n)
	}
	if _, port, _ := net.SplitHostPort(u.Host); port == "" {
		t.Errorf("no local port in %q", line)
	}
}

// A refresh of a broken dump fails the command with the file and line; the log of that import is
// one command away; a wait that cannot end says why; RBAC denials are named.
func TestPluginRefreshReportsBrokenDump(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "broken", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/broken/bad-statement.sql"}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *", Suspend: true}
		d.Spec.Import.MaxAttempts = 1
		d.Spec.Import.KeepFailedVolume = true // and the import's Job, for its log
	})
	waitForFailure(t, ns, "broken", 0, 300*time.Second)

	start := time.Now()
	r := myaas(t, ns, "refresh", "broken", "--wait", "--timeout", "5m")
	failsWith(t, r, "bad-statement.sql", "line 5", "revision 2")
	t.Logf("refresh failed after %s", time.Since(start).Round(time.Second))

	if logs := mustMyaas(t, ns, "logs", "broken"); !strings.Contains(logs, "no_such_table") {
		t.Errorf("the import's log does not show the failing statement:\n%s", logs)
	}

	failsWith(t, myaas(t, ns, "create", "early", "--template", "broken", "--timeout", "5s"),
		"timed out after 5s", "early", myaasv1.ReasonTemplateNotReady)
	failsWith(t, myaas(t, ns, "refresh", "nope"), `template "nope" not found`)
	failsWith(t, myaas(t, ns, "--as", "system:serviceaccount:"+ns+":nobody", "list"), "permission denied", "forbidden")
}
