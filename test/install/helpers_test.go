//go:build install

package install

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	corev1 "k8s.io/api/core/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
)

// run runs a command with stdin and returns its stdout; stderr goes into the error.
func run(stdin, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return kubectlIn(t, "", args...)
}

func kubectlIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := run(stdin, env.kubectl, append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run("", env.helm, append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// getJSON reads one object with kubectl into v; false when it does not exist.
func getJSON(t *testing.T, v any, args ...string) bool {
	t.Helper()
	out, err := run("", env.kubectl, append([]string{"--kubeconfig", env.kubeconfig, "get", "-o", "json", "--ignore-not-found"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) == "" {
		return false
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("parse kubectl get %s: %v", strings.Join(args, " "), err)
	}
	return true
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

// get reads one object that must exist.
func get[T any](t *testing.T, ns, kind, name string) *T {
	t.Helper()
	v := new(T)
	if !getJSON(t, v, "-n", ns, kind, name) {
		t.Fatalf("no %s %s/%s", kind, ns, name)
	}
	return v
}

func template(t *testing.T, ns, name string) *myaasv1.DatabaseTemplate {
	t.Helper()
	return get[myaasv1.DatabaseTemplate](t, ns, "databasetemplate", name)
}

func instance(t *testing.T, ns, name string) *myaasv1.DatabaseInstance {
	t.Helper()
	return get[myaasv1.DatabaseInstance](t, ns, "databaseinstance", name)
}

func pod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	return get[corev1.Pod](t, ns, "pod", name)
}

func waitForRevision(t *testing.T, ns, name string, n int32) {
	t.Helper()
	eventually(t, 5*time.Minute, fmt.Sprintf("template %s/%s revision %d", ns, name, n), func() error {
		d := template(t, ns, name)
		if f := d.Status.LastFailure; f != nil {
			t.Fatalf("import of %s/%s failed: %s: %s", ns, name, f.Reason, f.Message)
		}
		if d.Status.LatestRevision < n {
			return fmt.Errorf("status: %s", d.Status.Summary)
		}
		return nil
	})
}

func waitReady(t *testing.T, ns, name string) {
	t.Helper()
	kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "--timeout=300s", "databaseinstance/"+name)
}

// login logs in to an instance with its Secret's credentials on its pod's address (the host
// reaches pod IPs, not Service IPs) and counts the demo's customers, checking they are masked.
func login(t *testing.T, ns, name string) {
	t.Helper()
	inst := instance(t, ns, name)
	secret := get[corev1.Secret](t, ns, "secret", inst.Status.SecretName)
	data := func(k string) string { return string(secret.Data[k]) }
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.DBName, cfg.Net = data(agentapi.SecretKeyUsername), data(agentapi.SecretKeyPassword), data(agentapi.SecretKeyDatabase), "tcp"
	cfg.Addr = net.JoinHostPort(pod(t, ns, name+"-0").Status.PodIP, data(agentapi.SecretKeyPort))
	cfg.Timeout = 5 * time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var customers int
	var email string
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*), MIN(email) FROM customers").Scan(&customers, &email); err != nil {
		t.Fatalf("log in to %s/%s as %s and query: %v", ns, name, cfg.User, err)
	}
	if customers == 0 || !strings.HasSuffix(email, "@example.invalid") {
		t.Errorf("%s/%s: %d customers, first e-mail %q; want the masked demo data", ns, name, customers, email)
	}
	t.Logf("logged in to %s/%s: %d customers", ns, name, customers)
}

// prometheus is a Prometheus server on this host, scraping one target.
type prometheus struct {
	addr string
}

// startPrometheus runs Debian's Prometheus on a free loopback port with its data in the work
// directory, scraping target every second over HTTPS with the token in tokenFile. It is stopped when the test ends; its pid is left in
// the work directory for hack/test-install.sh, which stops it if the test could not.
func startPrometheus(t *testing.T, target, tokenFile string) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("no prometheus (make install-prometheus): %v", err)
	}
	dir, err := os.MkdirTemp(env.work, "prometheus-")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// The manager serves HTTPS with a self-signed certificate, to authorized tokens only.
	config := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n- job_name: myaas\n"+
		"  scheme: https\n  tls_config: {insecure_skip_verify: true}\n  authorization: {credentials_file: %q}\n"+
		"  static_configs: [{targets: [%q]}]\n", tokenFile, target)
	if err := os.WriteFile(dir+"/prometheus.yml", []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(dir + "/prometheus.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+dir+"/prometheus.yml", "--storage.tsdb.path="+dir+"/data",
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pidFile := env.work + "/prometheus.pid"
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		os.Remove(pidFile)
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	p := &prometheus{addr: addr}
	eventually(t, time.Minute, "Prometheus scraping the manager", func() error {
		up, err := p.query(`up{job="myaas"}`)
		if err != nil {
			return err
		}
		if len(up) != 1 || up[0].value != 1 {
			return fmt.Errorf("up: %v", up)
		}
		return nil
	})
	return p
}

type sample struct {
	labels map[string]string
	value  float64
}

// query asks Prometheus' HTTP API for an instant vector.
func (p *prometheus) query(q string) ([]sample, error) {
	answer, err := http.Get("http://" + p.addr + "/api/v1/query?" + url.Values{"query": {q}}.Encode())
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	defer answer.Body.Close()
	out, err := io.ReadAll(answer.Body)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("parse the answer to %s: %w", q, err)
	}
	if resp.Status != "success" || resp.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: %s %s (%s)", q, resp.Status, resp.Error, resp.Data.ResultType)
	}
	var samples []sample
	for _, r := range resp.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", q, r.Value[1], err)
		}
		samples = append(samples, sample{labels: r.Metric, value: v})
	}
	return samples, nil
}
