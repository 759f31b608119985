//go:build install

// Package install tests the ways users install and run myaas, on the local cluster
// (hack/test-install.sh prepares two releases and runs it; see that script).
package install

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

var env struct {
	kubeconfig, kubectl, helm, kustomize string
	// work holds the releases (dist-VERSION/) and the Prometheus data.
	work         string
	v1, v2, repo string
}

const (
	system       = "myaas-system"
	release      = "myaas"
	demo         = "myaas-demo"
	manager      = "myaas-controller-manager"
	demoTemplate = "shop"
)

func TestMain(m *testing.M) {
	for _, v := range []struct {
		dst  *string
		name string
	}{
		{&env.kubeconfig, "KUBECONFIG"}, {&env.kubectl, "KUBECTL"}, {&env.helm, "HELM"}, {&env.kustomize, "KUSTOMIZE"},
		{&env.work, "MYAAS_INSTALL_WORK"}, {&env.v1, "MYAAS_INSTALL_V1"}, {&env.v2, "MYAAS_INSTALL_V2"}, {&env.repo, "MYAAS_INSTALL_REPO"},
	} {
		if *v.dst = os.Getenv(v.name); *v.dst == "" {
			fmt.Fprintf(os.Stderr, "%s is not set: run make test-install (hack/test-install.sh)\n", v.name)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

func chart(v string) string       { return fmt.Sprintf("%s/dist-%s/myaas-%s.tgz", env.work, v, v) }
func installYAML(v string) string { return fmt.Sprintf("%s/dist-%s/install.yaml", env.work, v) }
func image(v string) string       { return env.repo + ":" + v }

// TestInstall runs the steps in order: each needs what the one before left.
func TestInstall(t *testing.T) {
	for _, s := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"kustomize-deployed operator removed", removeKustomizeOperator},
		{"helm install", helmInstall},
		{"demo on the helm release", demoWorks},
		{"metrics through Prometheus", metricsThroughPrometheus},
		{"helm upgrade leaves instances running", helmUpgrade},
		{"helm uninstall and CRD removal leave nothing", helmUninstall},
		{"helm install watching one namespace", namespacedInstall},
		{"kubectl apply -f install.yaml", applyInstallYAML},
	} {
		if !t.Run(s.name, s.f) {
			t.FailNow()
		}
	}
}

// removeKustomizeOperator starts from a clean cluster: no demo left by make demo, and none of the
// operator's objects but its CRDs (Helm adopts nothing it did not create).
func removeKustomizeOperator(t *testing.T) {
	// With the operator still running, so that the finalizers of the demo's objects are served.
	kubectl(t, "delete", "namespace", demo, "--ignore-not-found", "--wait", "--timeout=300s")
	if _, err := run("", env.helm, "--kubeconfig", env.kubeconfig, "status", release, "-n", system); err == nil {
		helm(t, "uninstall", release, "-n", system, "--wait") // left by an interrupted run
	}
	rendered, err := run("", env.kustomize, "build", "../../config/default")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var o struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if o.Kind != "CustomResourceDefinition" && o.Kind != "Namespace" && o.Kind != "" {
			keep = append(keep, doc)
		}
	}
	kubectlIn(t, strings.Join(keep, "\n---\n"), "delete", "--ignore-not-found", "--wait", "-f", "-")
	eventually(t, 2*time.Minute, "manager pods gone", func() error {
		if out := kubectl(t, "-n", system, "get", "pods", "-l", "control-plane=controller-manager", "-o", "name"); out != "" {
			return fmt.Errorf("still there: %s", out)
		}
		return nil
	})
}

func deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if !getJSON(t, d, "-n", system, "deployment", manager) {
		t.Fatalf("no deployment %s", manager)
	}
	return d
}

// expectManager checks the manager and its agent image are version v, and that the version is
// the one the binary says, in its log and from `myaas version` in its image.
func expectManager(t *testing.T, v string) {
	t.Helper()
	c := deployment(t).Spec.Template.Spec.Containers[0]
	agent := ""
	for _, e := range c.Env {
		if e.Name == "MYAAS_AGENT_IMAGE" {
			agent = e.Value
		}
	}
	if c.Image != image(v) || agent != image(v) {
		t.Errorf("manager image %s, agent image %s; want both %s", c.Image, agent, image(v))
	}
	kubectl(t, "-n", system, "rollout", "status", "deployment/"+manager, "--timeout=180s")
	eventually(t, time.Minute, "the manager logs its version", func() error {
		logs := kubectl(t, "-n", system, "logs", "deployment/"+manager)
		if !strings.Contains(logs, `"version":"`+v+`"`) {
			return fmt.Errorf("no version %s in the log:\n%s", v, firstLines(logs, 5))
		}
		return nil
	})
	name := "myaas-version-" + strings.NewReplacer(".", "-").Replace(v)
	kubectl(t, "-n", system, "delete", "pod", name, "--ignore-not-found", "--wait")
	kubectl(t, "-n", system, "run", name, "--restart=Never", "--image="+image(v), "--image-pull-policy=Never", "--", "version")
	kubectl(t, "-n", system, "wait", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=60s", "pod/"+name)
	if out := strings.TrimSpace(kubectl(t, "-n", system, "logs", name)); out != v {
		t.Errorf("myaas version in image %s prints %q", image(v), out)
	}
	kubectl(t, "-n", system, "delete", "pod", name, "--wait")
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func helmInstall(t *testing.T) {
	helm(t, "install", release, chart(env.v1), "-n", system, "--create-namespace", "--wait", "--timeout=5m")
	expectManager(t, env.v1)
}

// demoWorks is make demo's flow: a template imports the generated shop dump, an instance of it
// becomes Ready, and its Secret's credentials log in and find the masked data.
func demoWorks(t *testing.T) {
	kubectl(t, "apply", "-k", "../../config/samples/demo")
	waitForRevision(t, demo, demoTemplate, 1)
	waitReady(t, demo, "shop-demo")
	login(t, demo, "shop-demo")
}

const secondInstance = `apiVersion: myaas.io/v1alpha1
kind: DatabaseInstance
metadata:
  name: shop-demo-2
  namespace: myaas-demo
spec:
  templateRef: {name: shop}
  database: shop
  username: app
`

// expiredInstance is past its expiry when it is created: it is deleted at once, never Ready.
const expiredInstance = `apiVersion: myaas.io/v1alpha1
kind: DatabaseInstance
metadata:
  name: shop-expired
  namespace: myaas-demo
spec:
  templateRef: {name: shop}
  expiresAt: "2020-01-01T00:00:00Z"
`

// metricsThroughPrometheus scrapes the manager with a Prometheus server on this host, after an
// import, two instances, a reset and an expiry, and compares what Prometheus answers with the
// objects' status.
func metricsThroughPrometheus(t *testing.T) {
	kubectlIn(t, secondInstance, "apply", "-f", "-")
	waitReady(t, demo, "shop-demo-2")
	login(t, demo, "shop-demo-2")

	kubectl(t, "-n", demo, "annotate", "databaseinstance", "shop-demo-2", "myaas.io/reset=install-test", "--overwrite")
	eventually(t, 3*time.Minute, "shop-demo-2 reset and Ready", func() error {
		inst := instance(t, demo, "shop-demo-2")
		if inst.Status.Resets != 1 || inst.Status.Phase != myaasv1.InstanceReady {
			return fmt.Errorf("resets %d, phase %s", inst.Status.Resets, inst.Status.Phase)
		}
		return nil
	})
	kubectlIn(t, expiredInstance, "apply", "-f", "-")
	eventually(t, time.Minute, "the expired instance deleted", func() error {
		if getJSON(t, &myaasv1.DatabaseInstance{}, "-n", demo, "databaseinstance", "shop-expired") {
			return fmt.Errorf("still there")
		}
		return nil
	})

	managerPod := kubectl(t, "-n", system, "get", "pods", "-l", "control-plane=controller-manager",
		"--field-selector=status.phase=Running", "-o", "jsonpath={.items[0].status.podIP}")
	target := managerPod + ":8443"
	prom := startPrometheus(t, target, metricsNeedAnAuthorizedToken(t, target))

	tmpl := template(t, demo, demoTemplate)
	if len(tmpl.Status.Revisions) != 1 {
		t.Fatalf("revisions %v, want one", tmpl.Status.Revisions)
	}
	rev := tmpl.Status.Revisions[0]
	age := time.Since(rev.ImportedAt.Time).Seconds()
	sel := `{namespace="myaas-demo",template="shop"}`
	with := func(extra string) string { return `{namespace="myaas-demo",template="shop",` + extra + `}` }
	for _, c := range []struct {
		query string
		want  float64
		// tolerance for values that move with time
		tolerance float64
		// absent: the query must return nothing
		absent bool
	}{
		{query: `myaas_build_info{version="` + env.v1 + `"}`, want: 1},
		{query: `myaas_template_latest_revision` + sel, want: float64(tmpl.Status.LatestRevision)},
		{query: `myaas_template_revisions` + sel, want: 1},
		{query: `myaas_template_revision_instances` + with(`revision="1"`), want: 2},
		{query: `myaas_template_latest_revision_age_seconds` + sel, want: age, tolerance: 120},
		{query: `myaas_template_refresh_interval_seconds` + sel, want: 86400},
		{query: `myaas_template_last_import_failed` + sel, want: 0},
		{query: `myaas_template_imports_total` + with(`result="succeeded"`), want: 1},
		{query: `myaas_template_imports_total` + with(`result="failed"`), want: 0},
		{query: `myaas_template_import_duration_seconds_count` + with(`result="succeeded"`), want: 1},
		{query: `myaas_template_import_duration_seconds_sum` + with(`result="succeeded"`), want: rev.ImportDuration.Seconds(), tolerance: 0.5},
		{query: `myaas_template_imported_bytes_total` + sel, want: float64(rev.DumpBytes)},
		{query: `myaas_template_import_running_seconds` + sel, absent: true},
		{query: `myaas_template_import_progress_ratio` + sel, absent: true},
		{query: `myaas_instances` + with(`phase="Ready"`), want: 2},
		{query: `sum(myaas_instances` + sel + `)`, want: 2},
		{query: `myaas_instance_not_ready_seconds` + sel, absent: true},
		// shop-demo once, shop-demo-2 twice (created, then reset).
		{query: `myaas_instance_time_to_ready_seconds_count` + sel, want: 3},
		{query: `myaas_instance_resets_total` + sel, want: 1},
		{query: `myaas_instance_expirations_total` + sel, want: 1},
	} {
		eventually(t, time.Minute, c.query, func() error {
			got, err := prom.query(c.query)
			switch {
			case err != nil:
				return err
			case c.absent && len(got) == 0:
				return nil
			case c.absent:
				return fmt.Errorf("got %v, want nothing", got)
			case len(got) != 1:
				return fmt.Errorf("got %v, want one sample", got)
			case math.Abs(got[0].value-c.want) > c.tolerance:
				return fmt.Errorf("got %v, want %v (±%v)", got[0].value, c.want, c.tolerance)
			}
			return nil
		})
	}
}

type podState struct {
	uid      string
	restarts int32
}

func podStates(t *testing.T, names ...string) map[string]podState {
	t.Helper()
	m := map[string]podState{}
	for _, n := range names {
		p := pod(t, demo, n)
		s := podState{uid: string(p.UID)}
		for _, c := range p.Status.ContainerStatuses {
			s.restarts += c.RestartCount
		}
		m[n] = s
	}
	return m
}

// helmUpgrade moves the release to another build, CRDs first as docs/operations.md says, and
// checks that the running instances were not touched: the new manager only notes that their agent
// is older than its own.
func helmUpgrade(t *testing.T) {
	instances := []string{"shop-demo", "shop-demo-2"}
	before := podStates(t, "shop-demo-0", "shop-demo-2-0")
	kubectlIn(t, helm(t, "show", "crds", chart(env.v2)), "apply", "--server-side", "--force-conflicts", "-f", "-")
	helm(t, "upgrade", release, chart(env.v2), "-n", system, "--wait", "--timeout=5m")
	expectManager(t, env.v2)
	eventually(t, 2*time.Minute, "the new manager reconciled the instances", func() error {
		for _, n := range instances {
			if a := instance(t, demo, n).Status.Agent; a != myaasv1.AgentOutdated {
				return fmt.Errorf("%s: agent %q, want %s", n, a, myaasv1.AgentOutdated)
			}
		}
		return nil
	})
	time.Sleep(10 * time.Second) // room for a restart the upgrade should not cause
	after := podStates(t, "shop-demo-0", "shop-demo-2-0")
	for n, b := range before {
		if after[n] != b {
			t.Errorf("pod %s: %+v before the upgrade, %+v after", n, b, after[n])
		}
	}
	for _, n := range instances {
		if p := instance(t, demo, n).Status.Phase; p != myaasv1.InstanceReady {
			t.Errorf("%s is %s after the upgrade", n, p)
		}
		login(t, demo, n)
	}
}

// helmUninstall removes everything the way docs/operations.md says: the databases first (their
// finalizers need the operator), then the release, then the CRDs, then the namespace.
func helmUninstall(t *testing.T) {
	kubectl(t, "delete", "databaseinstances", "--all", "--all-namespaces", "--wait", "--timeout=300s")
	kubectl(t, "delete", "databasetemplates", "--all", "--all-namespaces", "--wait", "--timeout=300s")
	kubectl(t, "delete", "namespace", demo, "--wait", "--timeout=300s")
	helm(t, "uninstall", release, "-n", system, "--wait", "--timeout=5m")
	kubectlIn(t, helm(t, "show", "crds", chart(env.v2)), "delete", "--wait", "-f", "-")

	if out := helm(t, "list", "--all-namespaces", "--all", "-q"); strings.Contains(out, release) {
		t.Errorf("helm still lists the release: %s", out)
	}
	eventually(t, 2*time.Minute, "nothing of the operator left", func() error {
		var left []string
		for _, kind := range []string{"customresourcedefinitions", "clusterroles", "clusterrolebindings"} {
			for _, name := range strings.Fields(kubectl(t, "get", kind, "-o", "name")) {
				if strings.Contains(name, "myaas") {
					left = append(left, name)
				}
			}
		}
		// What remains in the namespace: what Kubernetes puts into every namespace, and the
		// manager's leader-election Lease, which the manager made itself (no chart owns it).
		for _, name := range strings.Fields(kubectl(t, "-n", system, "get",
			"all,serviceaccounts,roles,rolebindings,configmaps,secrets,leases,persistentvolumeclaims", "-o", "name")) {
			switch name {
			case "serviceaccount/default", "configmap/kube-root-ca.crt", "lease.coordination.k8s.io/manager.myaas.io":
			default:
				left = append(left, system+": "+name)
			}
		}
		// The demo's volumes: their PVs go with their claims.
		for _, line := range strings.Split(kubectl(t, "get", "persistentvolumes", "-o",
			`jsonpath={range .items[*]}{.metadata.name} {.spec.claimRef.namespace}{"\n"}{end}`), "\n") {
			if strings.HasSuffix(line, " "+demo) {
				left = append(left, "persistentvolume "+line)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left: %s", strings.Join(left, ", "))
		}
		return nil
	})
	kubectl(t, "delete", "namespace", system, "--wait", "--timeout=300s")
}

// applyInstallYAML installs the release's single manifest, as users without Helm do, and runs the
// demo on it; the demo is removed afterwards.
func applyInstallYAML(t *testing.T) {
	kubectl(t, "apply", "--server-side", "-f", installYAML(env.v2))
	expectManager(t, env.v2)
	demoWorks(t)
	if a := instance(t, demo, "shop-demo").Status.Agent; a != myaasv1.AgentCurrent {
		t.Errorf("an instance of a template imported by this manager has agent %q, want %s", a, myaasv1.AgentCurrent)
	}
	kubectl(t, "delete", "namespace", demo, "--wait", "--timeout=300s")
	if t.Failed() {
		return
	}
	var ns corev1.Namespace
	if getJSON(t, &ns, "namespace", demo) {
		t.Errorf("namespace %s still there: %s", demo, ns.Status.Phase)
	}
}
