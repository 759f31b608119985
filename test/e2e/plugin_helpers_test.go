//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The plugin is built once per run, from this tree, as `make build-plugin` builds it.
var (
	pluginOnce sync.Once
	pluginBin  string
	pluginErr  error
)

func pluginPath(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kubectl-myaas-e2e-")
		if err != nil {
			pluginErr = err
			return
		}
		pluginBin = filepath.Join(dir, "kubectl-myaas")
		out, err := exec.Command("go", "build", "-o", pluginBin, "../../cmd/kubectl-myaas").CombinedOutput()
		if err != nil {
			pluginErr = errors.New(string(out))
		}
	})
	if pluginErr != nil {
		t.Fatalf("build kubectl-myaas: %v", pluginErr)
	}
	return pluginBin
}

// pluginResult is one run of the plugin: what a user sees, and the exit status.
type pluginResult struct {
	stdout, stderr string
	code           int
}

// myaas runs `kubectl myaas -n ns args...` and returns whatever happened; want* helpers judge it.
func myaas(t *testing.T, ns string, args ...string) pluginResult {
	t.Helper()
	return myaasEnv(t, nil, "", ns, args...)
}

func myaasEnv(t *testing.T, env []string, stdin, ns string, args ...string) pluginResult {
	t.Helper()
	cmd := exec.Command(pluginPath(t), append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := pluginResult{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("kubectl myaas %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("kubectl myaas %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// mustMyaas runs the plugin and fails the test unless it succeeds.
func mustMyaas(t *testing.T, ns string, args ...string) string {
	t.Helper()
	r := myaas(t, ns, args...)
	if r.code != 0 {
		t.Fatalf("kubectl myaas %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// failsWith checks a failure is a non-zero exit with a message a user can act on.
func failsWith(t *testing.T, r pluginResult, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit 0, want a failure naming %q", want)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("the error does not name %q:\n%s", w, r.stderr)
		}
	}
}

// parseKV reads NAME=value lines (-o env without quoting, $GITHUB_OUTPUT, $GITHUB_ENV).
func parseKV(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("not a NAME=value line: %q", sc.Text())
		}
		out[k] = strings.Trim(v, "'")
	}
	return out
}
