// Package chart tests the Helm chart offline: it lints, its defaults render exactly what
// config/default renders, its values do what values.yaml says, its alerts pass promtool's rule
// tests and every query of its dashboard parses.
//
// It needs helm (bin/tools/helm, or HELM), kustomize (bin/kustomize, or KUSTOMIZE) and promtool
// (PATH, or PROMTOOL); a missing one skips the tests unless MYAAS_REQUIRE_CHART is set, as
// `make test` does.
package chart

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/myaas/myaas/internal/testdeps"
)

// chartTools makes helm, kustomize and promtool required (MYAAS_REQUIRE_CHART).
const chartTools testdeps.Dep = "CHART"

const (
	root      = "../.."
	chartDir  = root + "/charts/myaas"
	namespace = "myaas-system"
)

type object = map[string]any

// tool finds a binary: the variable env, else the project's bin/ path, else PATH.
func tool(t *testing.T, env, local, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if local != "" {
		if p, err := filepath.Abs(filepath.Join(root, local)); err == nil {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	testdeps.Missing(t, chartTools, fmt.Sprintf("no %s: run make helm kustomize install-prometheus, or set %s", name, env))
	return ""
}

func helm(t *testing.T) string { return tool(t, "HELM", "bin/tools/helm", "helm") }

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// render is `helm template` of the chart with the given --set values, CRDs included.
func render(t *testing.T, set ...string) []object {
	t.Helper()
	args := []string{"template", "myaas", chartDir, "--namespace", namespace, "--include-crds"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return parse(t, run(t, helm(t), args...))
}

func parse(t *testing.T, b []byte) []object {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(bytes.NewReader(b)), 4096)
	var objs []object
	for {
		var o object
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("parse rendered manifests: %v", err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
}

func key(o object) string {
	md, _ := o["metadata"].(object)
	ns, _ := md["namespace"].(string)
	return fmt.Sprintf("%s %s/%s", o["kind"], ns, md["name"])
}

func byKey(objs []object) map[string]object {
	m := map[string]object{}
	for _, o := range objs {
		m[key(o)] = o
	}
	return m
}

func find(t *testing.T, objs []object, kind string) object {
	t.Helper()
	for _, o := range objs {
		if o["kind"] == kind {
			return o
		}
	}
	t.Fatalf("no %s rendered", kind)
	return nil
}

func TestHelmLint(t *testing.T) {
	h := helm(t)
	run(t, h, "lint", "--strict", chartDir)
	run(t, h, "lint", "--strict", chartDir, "--set", "metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,prometheusRule.enabled=true,dashboard.enabled=true,dashboard.folder=Databases")
}

// TestDefaultsRenderConfigDefault: with its default values the chart installs exactly the objects
// `kubectl kustomize config/default` does, except the Namespace, which Helm users pick.
func TestDefaultsRenderConfigDefault(t *testing.T) {
	kustomize := tool(t, "KUSTOMIZE", "bin/kustomize", "kustomize")
	want := byKey(parse(t, run(t, kustomize, "build", root+"/config/default")))
	delete(want, "Namespace /"+namespace)
	got := byKey(render(t))
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("the chart does not render %s", k)
			continue
		}
		if !reflect.DeepEqual(g, w) {
			gb, _ := yaml.Marshal(g)
			wb, _ := yaml.Marshal(w)
			t.Errorf("%s differs from config/default:\n--- chart\n%s\n--- config/default\n%s", k, gb, wb)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("the chart renders %s, which config/default does not have", k)
		}
	}
}

func container(t *testing.T, objs []object) (deploy, pod, manager object) {
	t.Helper()
	deploy = find(t, objs, "Deployment")
	pod = deploy["spec"].(object)["template"].(object)
	for _, c := range pod["spec"].(object)["containers"].([]any) {
		if c := c.(object); c["name"] == "manager" {
			return deploy, pod, c
		}
	}
	t.Fatal("no manager container")
	return nil, nil, nil
}

func args(c object) []string {
	var out []string
	for _, a := range c["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

func env(c object, name string) string {
	for _, e := range c["env"].([]any) {
		if e := e.(object); e["name"] == name {
			return e["value"].(string)
		}
	}
	return ""
}

func TestValues(t *testing.T) {
	t.Run("image sets the manager's and the agent's", func(t *testing.T) {
		_, _, c := container(t, render(t, "image.repository=registry.example/myaas", "image.tag=1.2.3"))
		if c["image"] != "registry.example/myaas:1.2.3" || env(c, "MYAAS_AGENT_IMAGE") != "registry.example/myaas:1.2.3" {
			t.Errorf("image %v, agent image %v; want both registry.example/myaas:1.2.3", c["image"], env(c, "MYAAS_AGENT_IMAGE"))
		}
	})
	t.Run("flags", func(t *testing.T) {
		_, _, c := container(t, render(t, "leaderElection.enabled=false", "allowedServiceTypes=ClusterIP\\,NodePort", "logLevel=debug",
			"extraArgs[0]=--zap-encoder=console"))
		want := []string{"manager", "--health-probe-bind-address=:8081", "--allowed-service-types=ClusterIP,NodePort", "--zap-log-level=debug", "--zap-encoder=console"}
		if got := args(c); !reflect.DeepEqual(got, want) {
			t.Errorf("args %q, want %q", got, want)
		}
	})
	t.Run("replicas, resources, scheduling", func(t *testing.T) {
		d, pod, c := container(t, render(t, "replicas=2", "resources.limits.memory=1Gi", "nodeSelector.disk=ssd",
			"podAnnotations.a=b", "imagePullSecrets[0].name=pull"))
		if d["spec"].(object)["replicas"] != float64(2) {
			t.Errorf("replicas %v", d["spec"].(object)["replicas"])
		}
		if m := c["resources"].(object)["limits"].(object)["memory"]; m != "1Gi" {
			t.Errorf("memory limit %v", m)
		}
		spec := pod["spec"].(object)
		if spec["nodeSelector"].(object)["disk"] != "ssd" || pod["metadata"].(object)["annotations"].(object)["a"] != "b" ||
			spec["imagePullSecrets"].([]any)[0].(object)["name"] != "pull" {
			t.Errorf("pod template %v", pod)
		}
	})
	t.Run("watchNamespaces grants namespaced resources only there", func(t *testing.T) {
		objs := byKey(render(t, "watchNamespaces={team-a,team-b}"))
		_, _, c := container(t, render(t, "watchNamespaces={team-a,team-b}"))
		if !slices.Contains(args(c), "--watch-namespaces=team-a,team-b") {
			t.Errorf("args %q lack --watch-namespaces=team-a,team-b", args(c))
		}
		resources := func(o object) []string {
			var out []string
			rules, _ := o["rules"].([]any)
			for _, r := range rules {
				for _, res := range r.(object)["resources"].([]any) {
					out = append(out, res.(string))
				}
			}
			return out
		}
		cluster := resources(objs["ClusterRole /myaas-manager-role"])
		if slices.Contains(cluster, "secrets") || slices.Contains(cluster, "pods") || !slices.Contains(cluster, "persistentvolumes") {
			t.Errorf("the manager's ClusterRole grants %v; want only cluster-scoped resources", cluster)
		}
		for _, ns := range []string{"team-a", "team-b"} {
			role, ok := objs["Role "+ns+"/myaas-manager-role"]
			if !ok || !slices.Contains(resources(role), "secrets") || slices.Contains(resources(role), "persistentvolumes") {
				t.Errorf("namespace %s: Role %v", ns, role)
			}
			rb, ok := objs["RoleBinding "+ns+"/myaas-manager-rolebinding"]
			if !ok {
				t.Fatalf("no RoleBinding in %s", ns)
			}
			subject := rb["subjects"].([]any)[0].(object)
			if rb["roleRef"].(object)["kind"] != "Role" || subject["namespace"] != namespace || subject["name"] != "myaas-controller-manager" {
				t.Errorf("RoleBinding in %s: %v", ns, rb)
			}
		}
	})
	t.Run("config/namespaced grants what the chart does cluster-wide", func(t *testing.T) {
		chartRole := byKey(render(t, "watchNamespaces={team-a}"))["ClusterRole /myaas-manager-role"]
		overlay := byKey(parse(t, run(t, tool(t, "KUSTOMIZE", "bin/kustomize", "kustomize"), "build", root+"/config/namespaced")))
		overlayRole, ok := overlay["ClusterRole /myaas-manager-cluster-role"]
		if !ok {
			t.Fatal("config/namespaced has no ClusterRole myaas-manager-cluster-role")
		}
		if !reflect.DeepEqual(chartRole["rules"], overlayRole["rules"]) {
			t.Errorf("config/namespaced/manager_cluster_role.yaml grants %v; the chart's cluster-scoped rules are %v",
				overlayRole["rules"], chartRole["rules"])
		}
		if _, ok := overlay["ClusterRoleBinding /myaas-manager-rolebinding"]; ok {
			t.Errorf("config/namespaced keeps the cluster-wide binding of the manager's ClusterRole")
		}
	})
	t.Run("monitoring selects the manager", func(t *testing.T) {
		objs := render(t, "metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true", "prometheusRule.enabled=true", "dashboard.enabled=true")
		_, pod, c := container(t, objs)
		podLabels := pod["metadata"].(object)["labels"].(object)
		matches := func(sel object) bool {
			for k, v := range sel {
				if podLabels[k] != v {
					return false
				}
			}
			return len(sel) > 0
		}
		svc := find(t, objs, "Service")
		if !matches(svc["spec"].(object)["selector"].(object)) {
			t.Errorf("the metrics Service does not select the manager pods")
		}
		if !matches(find(t, objs, "PodMonitor")["spec"].(object)["selector"].(object)["matchLabels"].(object)) {
			t.Errorf("the PodMonitor does not select the manager pods")
		}
		svcLabels := svc["metadata"].(object)["labels"].(object)
		for k, v := range find(t, objs, "ServiceMonitor")["spec"].(object)["selector"].(object)["matchLabels"].(object) {
			if svcLabels[k] != v {
				t.Errorf("the ServiceMonitor selects %s=%v, the Service has %v", k, v, svcLabels[k])
			}
		}
		ports := c["ports"].([]any)
		if len(ports) == 0 || ports[0].(object)["name"] != "metrics" {
			t.Errorf("the manager has no port named metrics: %v", ports)
		}
		find(t, objs, "PrometheusRule")
		if data := find(t, objs, "ConfigMap")["data"].(object)["myaas.json"].(string); !strings.Contains(data, `"uid": "myaas"`) {
			t.Errorf("the dashboard ConfigMap does not hold the dashboard")
		}
	})
}

// rulesFile renders the chart's PrometheusRule and writes its spec, a Prometheus rule file, into dir.
func rulesFile(t *testing.T, dir string) string {
	t.Helper()
	rule := find(t, render(t, "prometheusRule.enabled=true"), "PrometheusRule")
	b, err := yaml.Marshal(rule["spec"])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAlertRules(t *testing.T) {
	promtool := tool(t, "PROMTOOL", "", "promtool")
	dir := t.TempDir()
	rules := rulesFile(t, dir)
	run(t, promtool, "check", "rules", rules)
	tests, err := os.ReadFile("testdata/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, promtool, "test", "rules", filepath.Join(dir, "alerts_test.yaml"))
	t.Logf("%s", out)

	// Every alert has a test.
	var spec struct {
		Groups []struct {
			Rules []struct{ Alert string } `json:"rules"`
		} `json:"groups"`
	}
	b, _ := os.ReadFile(rules)
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	for _, g := range spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !bytes.Contains(tests, []byte("alertname: "+r.Alert)) {
				t.Errorf("alert %s has no test in testdata/alerts_test.yaml", r.Alert)
			}
		}
	}
}

// grafanaVariables stand in for what Grafana replaces before a query reaches Prometheus.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "5m", "$__range", "1d", "$__interval", "1m",
	"$namespace", ".*", "$template", ".*", "${datasource}", "prometheus",
)

// TestDashboardQueries parses every query of the dashboard (panel targets and template
// variables' label_values) with promtool, and checks that each metric it reads is one the
// manager exports (docs/metrics.md lists them all; a controllers test keeps that list complete).
func TestDashboardQueries(t *testing.T) {
	promtool := tool(t, "PROMTOOL", "", "promtool")
	b, err := os.ReadFile(chartDir + "/files/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := yaml.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		q, _ := v.Query.(string)
		if inner, ok := strings.CutPrefix(q, "label_values("); ok {
			// label_values(SELECTOR, LABEL) is Grafana's; its selector is PromQL.
			exprs = append(exprs, inner[:strings.LastIndex(inner, ",")])
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d queries found in the dashboard", len(exprs))
	}

	var rules strings.Builder
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	for i, e := range exprs {
		if e == "" {
			t.Errorf("query %d is empty", i)
			continue
		}
		// A JSON string is a YAML double-quoted scalar.
		q, _ := json.Marshal(grafanaVariables.Replace(e))
		fmt.Fprintf(&rules, "  - record: dashboard_query_%d\n    expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard.yaml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, promtool, "check", "rules", path)

	docs, err := os.ReadFile(root + "/docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, e := range exprs {
		for _, f := range strings.FieldsFunc(e, func(r rune) bool { return r != '_' && (r < 'a' || r > 'z') && (r < '0' || r > '9') }) {
			if strings.HasPrefix(f, "myaas_") {
				used[strings.TrimSuffix(f, "_bucket")] = true
			}
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !bytes.Contains(docs, []byte("`"+n+"`")) {
			t.Errorf("the dashboard reads %s, which docs/metrics.md does not list", n)
		}
	}
}

// TestShowCRDs: `helm show crds CHART | kubectl apply -f -` is how CRDs are upgraded
// (docs/operations.md), so its output must hold every CRD as a document of its own.
func TestShowCRDs(t *testing.T) {
	files, err := filepath.Glob(chartDir + "/crds/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in the chart: %v", err)
	}
	var names []string
	for _, o := range parse(t, run(t, helm(t), "show", "crds", chartDir)) {
		if o["kind"] == "CustomResourceDefinition" {
			names = append(names, o["metadata"].(object)["name"].(string))
		}
	}
	if len(names) != len(files) {
		t.Errorf("helm show crds gives %v, the chart has %d CRD files", names, len(files))
	}
}
