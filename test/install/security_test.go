//go:build install

package install

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scraperToken makes a ServiceAccount bound to clusterRole (none when empty) and returns a file
// holding a token of it; both go when the test ends.
func scraperToken(t *testing.T, clusterRole string) string {
	t.Helper()
	name := "install-test-scraper"
	if clusterRole == "" {
		name = "install-test-nobody"
	}
	kubectl(t, "-n", system, "create", "serviceaccount", name)
	t.Cleanup(func() {
		_, _ = run("", env.kubectl, "--kubeconfig", env.kubeconfig, "-n", system, "delete", "serviceaccount", name)
	})
	if clusterRole != "" {
		kubectl(t, "create", "clusterrolebinding", name, "--clusterrole="+clusterRole, "--serviceaccount="+system+":"+name)
		t.Cleanup(func() {
			_, _ = run("", env.kubectl, "--kubeconfig", env.kubeconfig, "delete", "clusterrolebinding", name)
		})
	}
	token := strings.TrimSpace(kubectl(t, "-n", system, "create", "token", name, "--duration=1h"))
	file := filepath.Join(t.TempDir(), name+".token")
	if err := os.WriteFile(file, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// metricsNeedAnAuthorizedToken: the metrics endpoint speaks only HTTPS, refuses a client without
// a token and one whose ServiceAccount may not get /metrics, and answers a metrics-reader, whose
// token file it returns.
func metricsNeedAnAuthorizedToken(t *testing.T, target string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the manager's certificate is self-signed
	}}
	get := func(scheme, tokenFile string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, scheme+"://"+target+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if tokenFile != "" {
			token, err := os.ReadFile(tokenFile)
			if err != nil {
				return 0, "", err
			}
			req.Header.Set("Authorization", "Bearer "+string(token))
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(body), nil
	}
	if code, _, err := get("http", ""); err == nil && code == http.StatusOK {
		t.Errorf("plain HTTP served the metrics")
	}
	if code, _, err := get("https", ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("no token: status %d, %v; want 401", code, err)
	}
	if code, _, err := get("https", scraperToken(t, "")); err != nil || code != http.StatusForbidden {
		t.Errorf("a token not bound to metrics-reader: status %d, %v; want 403", code, err)
	}
	reader := scraperToken(t, "myaas-metrics-reader")
	eventually(t, time.Minute, "a metrics-reader gets the metrics", func() error {
		code, body, err := get("https", reader)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "myaas_build_info") {
			return fmt.Errorf("status %d: %s", code, firstLines(body, 3))
		}
		return nil
	})
	return reader
}

const (
	watchedNamespace   = "team-a"
	unwatchedNamespace = "team-b"
)

// namespacedInstall installs the chart watching one namespace: the manager may read Secrets
// there and nowhere else, and the demo works in that namespace.
func namespacedInstall(t *testing.T) {
	for _, ns := range []string{watchedNamespace, unwatchedNamespace} {
		kubectl(t, "create", "namespace", ns)
	}
	helm(t, "install", release, chart(env.v2), "-n", system, "--create-namespace", "--wait", "--timeout=5m",
		"--set", "watchNamespaces={"+watchedNamespace+"}")
	expectManager(t, env.v2)

	sa := "system:serviceaccount:" + system + ":" + manager
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "secrets", "-n", watchedNamespace}, "yes"},
		{[]string{"create", "statefulsets.apps", "-n", watchedNamespace}, "yes"},
		{[]string{"list", "secrets", "-n", unwatchedNamespace}, "no"},
		{[]string{"get", "pods", "-n", unwatchedNamespace}, "no"},
		{[]string{"list", "secrets", "--all-namespaces"}, "no"},
		{[]string{"get", "persistentvolumes"}, "yes"},
	} {
		// can-i exits 1 when the answer is no: read its output, not its status.
		out, _ := run("", env.kubectl, append([]string{"--kubeconfig", env.kubeconfig, "auth", "can-i", "--as=" + sa}, c.args...)...)
		if got := strings.TrimSpace(out); got != c.want {
			t.Errorf("can the manager %s? %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}

	// The demo, moved into the watched namespace.
	demoYAML, err := run("", env.kustomize, "build", "../../config/samples/demo")
	if err != nil {
		t.Fatal(err)
	}
	kubectlIn(t, strings.ReplaceAll(demoYAML, demo, watchedNamespace), "apply", "-f", "-")
	waitForRevision(t, watchedNamespace, demoTemplate, 1)
	waitReady(t, watchedNamespace, "shop-demo")
	login(t, watchedNamespace, "shop-demo")

	kubectl(t, "delete", "databaseinstances,databasetemplates", "--all", "-n", watchedNamespace, "--wait", "--timeout=300s")
	helm(t, "uninstall", release, "-n", system, "--wait", "--timeout=5m")
	kubectl(t, "delete", "namespace", watchedNamespace, unwatchedNamespace, "--wait", "--timeout=300s")
	// The next step starts, as before this one, from a cluster without the CRDs.
	kubectlIn(t, helm(t, "show", "crds", chart(env.v2)), "delete", "--wait", "-f", "-")
	if out := kubectl(t, "get", "roles,rolebindings", "--all-namespaces", "-o", "name"); strings.Contains(out, "myaas-manager") {
		t.Errorf("the manager's Roles outlive the release: %s", out)
	}
}
