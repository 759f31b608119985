//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// actionStep is the composite action's one step, as GitHub runs it.
type actionStep struct {
	Run string            `json:"run"`
	Env map[string]string `json:"env"`
}

func readAction(t *testing.T) (map[string]struct{ Default string }, actionStep) {
	t.Helper()
	b, err := os.ReadFile("../../ci/github/action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var action struct {
		Inputs map[string]struct{ Default string } `json:"inputs"`
		Runs   struct {
			Using string       `json:"using"`
			Steps []actionStep `json:"steps"`
		} `json:"runs"`
	}
	if err := yaml.Unmarshal(b, &action); err != nil {
		t.Fatal(err)
	}
	if action.Runs.Using != "composite" || len(action.Runs.Steps) != 1 {
		t.Fatalf("action.yml: %+v", action.Runs)
	}
	return action.Inputs, action.Runs.Steps[0]
}

var inputExpr = regexp.MustCompile(`^\$\{\{ inputs\.([a-z-]+) \}\}$`)

// runAction runs the action's step as the runner would: its env with the inputs substituted
// (defaults where the workflow sets none), the workflow's files, and the event of the run.
func runAction(t *testing.T, with map[string]string, event string) (stdout string, outputs, envFile map[string]string) {
	t.Helper()
	inputs, step := readAction(t)
	dir := t.TempDir()
	files := map[string]string{}
	for _, f := range []string{"GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_EVENT_PATH"} {
		files[f] = filepath.Join(dir, strings.ToLower(f))
	}
	if err := os.WriteFile(files["GITHUB_EVENT_PATH"], []byte(event), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"KUBECONFIG="+kubeconfig, "MYAAS_PLUGIN="+pluginPath(t),
		"GITHUB_ACTIONS=true", "GITHUB_EVENT_NAME=pull_request", "GITHUB_REPOSITORY=acme/shop",
		"GITHUB_HEAD_REF=feature/Login", "GITHUB_REF_NAME=7/merge", "RUNNER_TEMP="+dir,
		"GITHUB_ACTION_PATH="+mustAbs(t, "../../ci/github"),
	)
	for f, path := range files {
		env = append(env, f+"="+path)
	}
	for name, value := range step.Env {
		m := inputExpr.FindStringSubmatch(value)
		if m == nil {
			t.Fatalf("action env %s=%q is not an input", name, value)
		}
		v, ok := with[m[1]]
		if !ok {
			v = inputs[m[1]].Default
		}
		env = append(env, name+"="+v)
	}
	cmd := exec.Command("bash", "-c", step.Run)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("the action's step failed: %v\n%s%s", err, out.String(), errOut.String())
	}
	t.Logf("action step with %v:\n%s", with, errOut.String())
	read := func(f string) map[string]string {
		b, err := os.ReadFile(files[f])
		if os.IsNotExist(err) {
			return map[string]string{}
		}
		if err != nil {
			t.Fatal(err)
		}
		return parseKV(t, string(b))
	}
	return out.String(), read("GITHUB_OUTPUT"), read("GITHUB_ENV")
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func prEvent(action string, n int) string {
	return fmt.Sprintf(`{"action":%q,"number":%d,"pull_request":{"number":%d,"head":{"ref":"feature/Login"}}}`, action, n, n)
}

// The GitHub action through a pull request's life: opened creates the database and exports its
// details with the password masked; synchronize finds the same one; closed leaves nothing. The
// scheduled clean-up deletes what a missed closed event left.
func TestPluginGitHubAction(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	with := map[string]string{"mode": "create", "template": "shop", "namespace": ns, "ttl": "2h"}

	start := time.Now()
	stdout, outputs, envFile := runAction(t, with, prEvent("opened", 7))
	t.Logf("opened: Ready and exported after %s", time.Since(start).Round(10*time.Millisecond))
	creds := secretData(t, ns, "pr-7-credentials")
	if !strings.Contains(stdout, "::add-mask::"+creds["password"]+"\n") {
		t.Errorf("the password is not masked; stdout:\n%s", stdout)
	}
	if strings.Count(stdout, creds["password"]) != 1 {
		t.Errorf("the password is printed outside the mask command:\n%s", stdout)
	}
	for out, key := range map[string]string{"host": "host", "port": "port", "username": "username", "password": "password",
		"database": "database", "uri": "uri", "jdbc-uri": "jdbc-uri"} {
		if outputs[out] != creds[key] {
			t.Errorf("output %s=%q, the Secret's %s is %q", out, outputs[out], key, creds[key])
		}
	}
	if outputs["name"] != "pr-7" || outputs["host"] != "pr-7."+ns+".svc" {
		t.Errorf("outputs %v", outputs)
	}
	if envFile["MYAAS_URI"] != creds["uri"] || envFile["MYAAS_PASSWORD"] != creds["password"] {
		t.Errorf("GITHUB_ENV %v", envFile)
	}
	inst := getInstance(t, ns, "pr-7")
	if inst.Labels["myaas.io/repository"] != "acme-shop" || inst.Labels["myaas.io/pr"] != "7" || inst.Spec.TTL == nil {
		t.Errorf("instance labels %v, ttl %v", inst.Labels, inst.Spec.TTL)
	}
	// A later step logs in with the outputs (at the pod's address: Service IPs are not routed here).
	db := open(t, podAddr(t, ns, "pr-7"), outputs["username"], outputs["password"], outputs["database"])
	if n := queryInt(t, db, "SELECT COUNT(*) FROM shop.orders"); n != int64(shopDump.Expect().Orders) {
		t.Fatalf("%d orders", n)
	}

	// synchronize: the next push reuses the database.
	_, again, _ := runAction(t, with, prEvent("synchronize", 7))
	if again["password"] != outputs["password"] || getInstance(t, ns, "pr-7").UID != inst.UID {
		t.Fatalf("synchronize made a new database")
	}

	// closed: the delete step leaves nothing of the instance.
	runAction(t, map[string]string{"mode": "delete", "namespace": ns}, prEvent("closed", 7))
	nothingLeft(t, ns, "pr-7")
	// A create step run on the closed event by a careless workflow creates nothing.
	runAction(t, with, prEvent("closed", 7))
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pr-7"}, &myaasv1.DatabaseInstance{}); err == nil {
		t.Fatal("a create step on a closed pull request made an instance")
	}

	// The scheduled clean-up: pull request 8 closed while no workflow ran, 9 is still open.
	runAction(t, with, prEvent("opened", 8))
	runAction(t, with, prEvent("opened", 9))
	mustMyaas(t, ns, "cleanup", "--repository", "acme/shop", "--open-prs", "9")
	nothingLeft(t, ns, "pr-8")
	waitReady(t, ns, "pr-9")
	mustMyaas(t, ns, "cleanup", "--repository", "acme/shop", "--closed-prs", "9")
	nothingLeft(t, ns, "pr-9")
}

// nothingLeft checks that the instance and every object it owned are gone.
func nothingLeft(t *testing.T, ns, name string) {
	t.Helper()
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &myaasv1.DatabaseInstance{}); err == nil {
		t.Fatalf("instance %s still exists", name)
	}
	sel := client.MatchingLabels{myaasv1.LabelInstance: name}
	for _, list := range []client.ObjectList{&appsv1.StatefulSetList{}, &corev1.ServiceList{}, &corev1.SecretList{}, &corev1.PersistentVolumeClaimList{}, &corev1.PodList{}} {
		if err := k8s.List(ctx, list, client.InNamespace(ns), sel); err != nil {
			t.Fatal(err)
		}
		if n := lenList(list); n > 0 {
			t.Errorf("%d %T of %s left after the delete step returned", n, list, name)
		}
	}
}
