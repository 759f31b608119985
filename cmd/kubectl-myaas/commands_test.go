package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// run executes the plugin's command line without a cluster: every case here fails, or succeeds,
// before a client is needed.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	// A kubeconfig that does not exist: any attempt to reach a cluster fails loudly.
	cmd.SetArgs(append([]string{"--kubeconfig", filepath.Join(t.TempDir(), "none")}, args...))
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestFlagHandling(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "pr-1"}, `required flag(s) "template" not set`},
		{[]string{"create", "pr-1", "--template", "shop", "-o", "table"}, "unknown output format"},
		{[]string{"create", "pr-1", "--template", "shop", "--label", "novalue"}, "want key=value"},
		{[]string{"create", "pr-1", "--template", "shop", "--ttl", "soon"}, "invalid argument"},
		{[]string{"create"}, "accepts 1 arg"},
		{[]string{"create", "pr-1", "--template", "shared/"}, "want NAME or NAMESPACE/NAME"},
		{[]string{"create", "pr-1", "--template", "a/b/c"}, "want NAME or NAMESPACE/NAME"},
		{[]string{"create", "pr-1", "--template", "Shared_NS/shop"}, `namespace "Shared_NS"`},
		{[]string{"connect", "pr-1", "pr-2"}, "client arguments after --"},
		{[]string{"connect", "pr-1", "--in-cluster", "--local"}, "exclude each other"},
		{[]string{"port-forward", "pr-1", "http"}, "want a number"},
		{[]string{"extend", "pr-1"}, `required flag(s) "ttl" not set`},
		{[]string{"extend", "pr-1", "--ttl", "-1h"}, "must be positive"},
		{[]string{"delete"}, "not both or neither"},
		{[]string{"delete", "pr-1", "--selector", "app=x"}, "not both or neither"},
		{[]string{"cleanup", "--repository", "acme/shop"}, "at least one of"},
		{[]string{"cleanup", "--repository", "acme/shop", "--closed-prs", "1,x"}, `pull request number "x"`},
		{[]string{"cleanup", "--closed-prs", "1"}, `required flag(s) "repository" not set`},
		{[]string{"name", "--ci", "jenkins"}, "want github or gitlab"},
		{[]string{"status", "pr-1"}, "load kubeconfig"},
	} {
		_, _, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// -n, --context and --kubeconfig are kubectl's, and the namespace comes from the context unless -n
// overrides it.
func TestKubeconfigFlags(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "config")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: t}
contexts:
- name: one
  context: {cluster: c, user: u, namespace: ns-one}
- name: two
  context: {cluster: c, user: u, namespace: ns-two}
current-context: one
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "ns-one"},
		{[]string{"--context", "two"}, "ns-two"},
		{[]string{"--context", "two", "-n", "mine"}, "mine"},
		{[]string{"--namespace", "other"}, "other"},
	} {
		root, e := newRoot(streams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
		var namespace string
		root.AddCommand(&cobra.Command{Use: "probe", RunE: func(*cobra.Command, []string) error {
			err := e.connectCluster()
			namespace = e.namespace
			return err
		}})
		root.SetArgs(append(append([]string{"--kubeconfig", kc}, tc.args...), "probe"))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if namespace != tc.want {
			t.Errorf("%v: namespace %q, want %q", tc.args, namespace, tc.want)
		}
	}
}

func TestGitHubPipeline(t *testing.T) {
	dir := t.TempDir()
	event := func(body string) string {
		p := filepath.Join(dir, "event.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	envOf := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	p, err := githubPipeline(envOf(map[string]string{
		"GITHUB_REPOSITORY": "acme/shop", "GITHUB_HEAD_REF": "feature/Login",
		"GITHUB_EVENT_PATH": event(`{"action":"opened","number":42,"pull_request":{"number":42,"head":{"ref":"feature/Login"}}}`),
	}), "")
	if err != nil || p.Name != "pr-42" || p.PR != "42" || p.Closed {
		t.Fatalf("opened: %+v, %v", p, err)
	}
	if want := map[string]string{LabelRepository: "acme-shop", LabelPR: "42", LabelBranch: "feature-Login"}; !reflect.DeepEqual(p.labels(), want) {
		t.Errorf("labels %v, want %v", p.labels(), want)
	}
	p, _ = githubPipeline(envOf(map[string]string{
		"GITHUB_EVENT_PATH": event(`{"action":"closed","number":42,"pull_request":{"number":42,"head":{"ref":"x"}}}`),
	}), "shop-")
	if p.Name != "shop-pr-42" || !p.Closed {
		t.Errorf("closed: %+v", p)
	}
	p, err = githubPipeline(envOf(map[string]string{
		"GITHUB_REPOSITORY": "acme/shop", "GITHUB_REF_NAME": "release/2.0",
		"GITHUB_EVENT_PATH": event(`{"ref":"refs/heads/release/2.0"}`),
	}), "")
	if err != nil || p.Name != "release-2-0" || p.PR != "" {
		t.Errorf("push: %+v, %v", p, err)
	}
	if _, err := githubPipeline(envOf(nil), ""); err == nil {
		t.Error("no context at all was accepted")
	}
	if _, err := githubPipeline(envOf(map[string]string{"GITHUB_EVENT_PATH": event("{")}), ""); err == nil || !strings.Contains(err.Error(), "parse") {
		t.Errorf("a broken event: %v", err)
	}
}

func TestGitLabPipeline(t *testing.T) {
	p, err := gitlabPipeline(func(k string) string {
		return map[string]string{"CI_PROJECT_PATH": "group/sub/shop", "CI_MERGE_REQUEST_IID": "7", "CI_COMMIT_REF_NAME": "feat/x"}[k]
	}, "")
	if err != nil || p.Name != "mr-7" || p.labels()[LabelRepository] != "group-sub-shop" {
		t.Fatalf("%+v, %v", p, err)
	}
}

func TestCleanupVictims(t *testing.T) {
	now := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	inst := func(name, pr string, age time.Duration) myaasv1.DatabaseInstance {
		i := myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Add(-age)), Labels: map[string]string{}}}
		if pr != "" {
			i.Labels[LabelPR] = pr
		}
		return i
	}
	items := []myaasv1.DatabaseInstance{inst("pr-1", "1", time.Hour), inst("pr-2", "2", 100*time.Hour), inst("pr-3", "3", time.Hour), inst("main", "", 200*time.Hour)}
	for _, tc := range []struct {
		o         cleanupOptions
		openGiven bool
		want      []string
	}{
		{cleanupOptions{closedPRs: []string{"1", " 3"}}, false, []string{"pr-1", "pr-3"}},
		{cleanupOptions{openPRs: []string{"3"}}, true, []string{"pr-1", "pr-2"}},
		{cleanupOptions{}, true, []string{"pr-1", "pr-2", "pr-3"}}, // no PR open any more
		{cleanupOptions{olderThan: 72 * time.Hour}, false, []string{"main", "pr-2"}},
		{cleanupOptions{closedPRs: []string{"9"}}, false, nil},
	} {
		if got := cleanupVictims(items, &tc.o, tc.openGiven, now); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.o, got, tc.want)
		}
	}
}

func TestReadRefresh(t *testing.T) {
	tmpl := func(handled string, ci *myaasv1.CurrentImport, next int32, revs []int32, failed int32) *myaasv1.DatabaseTemplate {
		d := &myaasv1.DatabaseTemplate{Status: myaasv1.DatabaseTemplateStatus{HandledRefreshJob: handled, CurrentImport: ci, NextRevision: next}}
		for _, r := range revs {
			d.Status.Revisions = append(d.Status.Revisions, myaasv1.TemplateRevision{Revision: r})
		}
		if failed > 0 {
			d.Status.LastFailure = &myaasv1.FailedImport{Revision: failed, Reason: "BadStatement", Message: "x.sql line 5"}
		}
		return d
	}
	// Waiting behind another import: no revision yet.
	if st := readRefresh(tmpl("older", &myaasv1.CurrentImport{Revision: 2, Trigger: "created"}, 3, []int32{1}, 0), "job", 0); st.revision != 0 || st.done || !strings.Contains(st.progress, "queued behind") {
		t.Errorf("queued: %+v", st)
	}
	st := readRefresh(tmpl("job", &myaasv1.CurrentImport{Revision: 3, Trigger: "refresh job job", Phase: "Loading"}, 4, []int32{1, 2}, 0), "job", 0)
	if st.revision != 3 || st.done || !strings.Contains(st.progress, "revision 3: Loading") {
		t.Errorf("running: %+v", st)
	}
	// Ended between two polls.
	if st := readRefresh(tmpl("job", nil, 4, []int32{2, 3}, 0), "job", 0); st.revision != 3 || !st.done || st.failure != nil {
		t.Errorf("done: %+v", st)
	}
	if st := readRefresh(tmpl("job", nil, 4, []int32{2}, 3), "job", 3); !st.done || st.failure == nil {
		t.Errorf("failed: %+v", st)
	}
	// An older failure is not this refresh's.
	if st := readRefresh(tmpl("job", &myaasv1.CurrentImport{Revision: 4, Trigger: "refresh job job"}, 5, []int32{2}, 3), "job", 0); st.done {
		t.Errorf("old failure taken: %+v", st)
	}
}

func TestJobFromCronJob(t *testing.T) {
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "shop-refresh", Namespace: "ns", UID: "u1"}}
	cj.Spec.JobTemplate.Labels = map[string]string{myaasv1.LabelTemplate: "shop", myaasv1.LabelRole: myaasv1.RoleRefreshRequest}
	cj.Spec.JobTemplate.Spec.BackoffLimit = new(int32)
	j := jobFromCronJob(cj, "shop-refresh-manual-abc")
	if j.Labels[myaasv1.LabelRole] != myaasv1.RoleRefreshRequest || j.Annotations["cronjob.kubernetes.io/instantiate"] != "manual" ||
		len(j.OwnerReferences) != 1 || j.OwnerReferences[0].UID != "u1" || j.Spec.BackoffLimit == nil || j.Namespace != "ns" {
		t.Fatalf("%+v", j)
	}
}

func TestNewestImportPod(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(int64(s), 0)) }
	pod := func(name, job string, created int) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: at(created), Labels: map[string]string{"batch.kubernetes.io/job-name": job}}}
	}
	pods := []corev1.Pod{pod("a", "shop-import-r1", 1), pod("c", "shop-import-r2-a2", 3), pod("b", "shop-import-r2", 2), pod("x", "other", 9)}
	if got := newestImportPod(pods, []string{"shop-import-r1", "shop-import-r2", "shop-import-r2-a2"}); got == nil || got.Name != "c" {
		t.Fatalf("got %v", got)
	}
	if got := newestImportPod(pods, nil); got != nil {
		t.Fatalf("got %v", got.Name)
	}
}

func TestClientPod(t *testing.T) {
	inst := &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Name: "pr-1", Namespace: "ci"}}
	for _, tc := range []struct {
		engine       myaasv1.EngineType
		image        string
		args         []string
		passwordEnv  string
		verifiesCert string
	}{
		{myaasv1.EngineMariaDB, "mariadb:11.4", []string{"-e", "SELECT 1"}, "MYSQL_PWD", "--ssl-verify-server-cert"},
		{myaasv1.EngineMySQL, "mysql:8.4", []string{"-e", "SELECT 1"}, "MYSQL_PWD", "--ssl-mode=VERIFY_IDENTITY"},
		{myaasv1.EnginePostgreSQL, "postgres:17", []string{"-c", "SELECT 1"}, "PGPASSWORD", "PGSSLMODE=verify-full"},
	} {
		t.Run(string(tc.engine), func(t *testing.T) {
			p := clientPod(inst, clientFor(tc.engine), tc.image, "pr-1-credentials", tc.args, false)
			if _, ok := p.Labels[myaasv1.LabelInstance]; ok {
				t.Error("the client pod carries the instance label: the instance's Service would send clients to it")
			}
			c := p.Spec.Containers[0]
			if !c.Stdin || !c.StdinOnce || c.Image != tc.image || !reflect.DeepEqual(c.Command[len(c.Command)-2:], tc.args) {
				t.Errorf("container %+v", c)
			}
			password := false
			for _, ev := range c.Env {
				if ev.Value != "" {
					t.Errorf("%s has a literal value: credentials come from the Secret", ev.Name)
				}
				if ev.Name == tc.passwordEnv && ev.ValueFrom.SecretKeyRef.Key == "password" {
					password = true
				}
			}
			if !password {
				t.Errorf("no %s from the Secret's password in %+v", tc.passwordEnv, c.Env)
			}
			// The client verifies the server with the Secret's CA when it has one.
			if v := p.Spec.Volumes; len(v) != 1 || v[0].Secret == nil || v[0].Secret.SecretName != "pr-1-credentials" || v[0].Secret.Optional == nil || !*v[0].Secret.Optional ||
				!strings.Contains(c.Command[2], tc.verifiesCert) {
				t.Errorf("CA volume %+v, script %s", v, c.Command[2])
			}
		})
	}
}

// The local client logs in with the connection's values, the password never among its arguments.
func TestLocalClientLogin(t *testing.T) {
	for _, tc := range []struct {
		engine   myaasv1.EngineType
		bin      string
		wantArgs []string
		wantEnv  []string
	}{
		{myaasv1.EngineMariaDB, "mariadb", []string{"--host=pr-1.ci.svc", "--port=3306", "--user=app", "--protocol=TCP", "--database=app"}, []string{"MYSQL_PWD=" + testConn.Password}},
		{myaasv1.EnginePostgreSQL, "psql", nil, []string{"PGHOST=pr-1.ci.svc", "PGPORT=3306", "PGUSER=app", "PGDATABASE=app", "PGPASSWORD=" + testConn.Password}},
	} {
		cl := clientFor(tc.engine)
		if cl.binaries[0] != tc.bin {
			t.Errorf("%s: client %v", tc.engine, cl.binaries)
		}
		if args := cl.args(testConn); !reflect.DeepEqual(args, tc.wantArgs) || strings.Contains(strings.Join(args, " "), testConn.Password) {
			t.Errorf("%s: args %q, want %q", tc.engine, args, tc.wantArgs)
		}
		if env := cl.env(testConn); !reflect.DeepEqual(env, tc.wantEnv) {
			t.Errorf("%s: env %q, want %q", tc.engine, env, tc.wantEnv)
		}
	}
}

func TestParseTemplateRef(t *testing.T) {
	for _, tc := range []struct {
		in, ns string
		want   myaasv1.TemplateReference
	}{
		{"shop", "dev-a", myaasv1.TemplateReference{Name: "shop"}},
		{"shared/shop", "dev-a", myaasv1.TemplateReference{Name: "shop", Namespace: "shared"}},
		// The instance's own namespace is the default: written out, it is left out.
		{"dev-a/shop", "dev-a", myaasv1.TemplateReference{Name: "shop"}},
	} {
		got, err := parseTemplateRef(tc.in, tc.ns)
		if err != nil || got != tc.want {
			t.Errorf("parseTemplateRef(%q, %q) = %+v, %v; want %+v", tc.in, tc.ns, got, err, tc.want)
		}
	}
}
