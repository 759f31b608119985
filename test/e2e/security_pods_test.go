//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// restrictedNamespace is a namespace where the Pod Security Standards' restricted profile is
// enforced and every pod is closed to ingress unless a NetworkPolicy opens it, as a careful
// platform team sets one up.
func restrictedNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-restricted-", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("namespace %s kept for inspection", ns.Name)
			return
		}
		_ = k8s.Delete(ctx, ns)
	})
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default-deny-ingress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if err := k8s.Create(ctx, deny); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// clientResult is what a client pod printed and whether its query succeeded.
type clientResult struct {
	ok  bool
	out string
}

// runClient runs the mariadb client in a pod of ns against host, as an application there would,
// in a pod that the restricted profile admits. Like an application it tries again for a while:
// a NetworkPolicy lets a new pod in once the enforcer has seen its address, which can be a moment
// after the pod starts. A connection refused for the whole while is refused for good.
func runClient(t *testing.T, ns, host string, creds map[string]string, query string) clientResult {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "client-"},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr(false),
			TerminationGracePeriodSeconds: ptr[int64](0),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr(true), RunAsUser: ptr[int64](999),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "client", Image: "localhost/myaas/mariadb:10.11", ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sh", "-c", clientScript},
				Env: []corev1.EnvVar{
					{Name: "HOST", Value: host}, {Name: "DB_USER", Value: creds["username"]}, {Name: "MYSQL_PWD", Value: creds["password"]},
					{Name: "DB_NAME", Value: creds["database"]}, {Name: "QUERY", Value: query},
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatalf("create client pod in %s: %v", ns, err)
	}
	defer func() { _ = k8s.Delete(ctx, pod) }()
	eventually(t, 120*time.Second, "client pod "+pod.Name+" done", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		if p := pod.Status.Phase; p != corev1.PodSucceeded && p != corev1.PodFailed {
			return fmt.Errorf("phase %s", p)
		}
		return nil
	})
	out := kubectl(t, "-n", ns, "logs", pod.Name)
	return clientResult{ok: pod.Status.Phase == corev1.PodSucceeded, out: strings.TrimSpace(out)}
}

const clientScript = `end=$(($(date +%s) + 20))
while :; do
  out=$(mariadb --connect-timeout=5 --protocol=TCP -h "$HOST" -P 3306 -u "$DB_USER" -D "$DB_NAME" -N -B -e "$QUERY" 2>&1) && { echo "$out"; exit 0; }
  [ "$(date +%s)" -lt "$end" ] || { echo "$out"; exit 1; }
  sleep 1
done`

// noServiceAccountToken: nothing in a database pod may talk to the API server with the pod's
// identity, so none is mounted.
func noServiceAccountToken(t *testing.T, ns string, selector client.MatchingLabels) {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(ns), selector); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatalf("no pod matches %v", selector)
	}
	for _, p := range pods.Items {
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			for _, m := range c.VolumeMounts {
				if m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" {
					t.Errorf("pod %s container %s has a service account token mounted", p.Name, c.Name)
				}
			}
		}
	}
}

// An import and an instance in a namespace that enforces the restricted profile and denies
// ingress by default: the operator's pods are admitted, its NetworkPolicies let the operator
// read the import's progress and log in, and an application in the namespace can query.
func TestRestrictedNamespaceRunsImportsAndInstances(t *testing.T) {
	// The dump server is no restricted pod: it lives elsewhere, as a backup server would.
	url := startDumpServer(t, newNamespace(t), 100<<10) // over 10 s: progress can be read
	ns := restrictedNamespace(t)

	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}})
	sawProgress, checkedImportPod := false, false
	eventually(t, 300*time.Second, "template imported", func() error {
		d := getTemplate(t, ns, "shop")
		if f := d.Status.LastFailure; f != nil {
			t.Fatalf("import failed: %s", f.Message)
		}
		if ci := d.Status.CurrentImport; ci != nil && ci.Progress != nil && ci.Progress.BytesDone > 0 {
			sawProgress = true
		}
		if !checkedImportPod && d.Status.LatestRevision == 0 {
			pods := &corev1.PodList{}
			if err := k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"myaas.io/role": "import"}); err == nil && len(pods.Items) > 0 {
				noServiceAccountToken(t, ns, client.MatchingLabels{"myaas.io/role": "import"})
				checkedImportPod = true
			}
		}
		if d.Status.LatestRevision != 1 {
			return fmt.Errorf("progress %q", d.Status.Summary)
		}
		return nil
	})
	if !checkedImportPod {
		t.Error("the import pod was never seen")
	}
	if !sawProgress {
		t.Error("the import's progress never reached the status: the operator could not reach the import pod")
	}

	newInstance(t, ns, "app", "shop")
	waitReady(t, ns, "app")
	noServiceAccountToken(t, ns, client.MatchingLabels{"myaas.io/instance": "app"})

	creds := secretData(t, ns, "app-credentials")
	r := runClient(t, ns, creds["host"], creds, "SELECT COUNT(*) FROM shop.orders")
	if !r.ok || r.out != fmt.Sprint(shopDump.Expect().Orders) {
		t.Fatalf("query from a pod of the namespace: ok %v, output %q", r.ok, r.out)
	}

	// Under the operator's default allow-list, a LoadBalancer is refused, naming the setting.
	newInstance(t, ns, "exposed", "shop", func(i *myaasv1.DatabaseInstance) { i.Spec.ServiceType = corev1.ServiceTypeLoadBalancer })
	eventually(t, 60*time.Second, "LoadBalancer refused", func() error {
		status, reason, msg := conditionReason(getInstance(t, ns, "exposed").Status.Conditions, myaasv1.ConditionReady)
		if status != metav1.ConditionFalse || reason != myaasv1.ReasonServiceTypeNotAllowed || !strings.Contains(msg, "--allowed-service-types") {
			return fmt.Errorf("Ready %s/%s: %s", status, reason, msg)
		}
		return nil
	})
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "exposed"}, &corev1.Service{}); err == nil {
		t.Fatal("a LoadBalancer Service was created")
	}
}

// The instance's NetworkPolicy keeps pods of other namespaces out, lets those of its own
// namespace in, and spec.network.allowFrom widens it. The node itself still reaches its pods
// (kubelet probes, and this suite logging in by pod IP), as network plugins allow.
func TestNetworkPolicyKeepsOtherNamespacesOut(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	newInstance(t, ns, "guarded", "shop")
	waitReady(t, ns, "guarded")
	out := kubectl(t, "-n", ns, "get", "networkpolicy", "guarded", "-o", "jsonpath={.spec.ingress[0].ports[0].port}")
	if out != "3306" {
		t.Fatalf("the instance's NetworkPolicy opens port %q", out)
	}

	creds := secretData(t, ns, "guarded-credentials")
	other := newNamespace(t)
	const query = "SELECT COUNT(*) FROM shop.orders"
	want := fmt.Sprint(shopDump.Expect().Orders)

	if r := runClient(t, ns, creds["host"], creds, query); !r.ok || r.out != want {
		t.Fatalf("from the instance's namespace: ok %v, output %q", r.ok, r.out)
	}
	r := runClient(t, other, creds["host"], creds, query)
	if r.ok || !strings.Contains(r.out, "Can't connect") {
		t.Fatalf("from another namespace: ok %v, output %q; want the connection refused or timed out", r.ok, r.out)
	}
	t.Logf("from another namespace: %s", r.out)
	if got := queryInt(t, connect(t, ns, "guarded"), query); fmt.Sprint(got) != want {
		t.Fatalf("from the node: %d orders", got)
	}

	// The owner of the instance lets the other namespace in.
	inst := getInstance(t, ns, "guarded")
	inst.Spec.Network = &myaasv1.NetworkSpec{AllowFrom: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{"kubernetes.io/metadata.name": other},
	}}}}
	if err := k8s.Update(ctx, inst); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "allowFrom in the NetworkPolicy", func() error {
		np := &networkingv1.NetworkPolicy{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "guarded"}, np); err != nil {
			return err
		}
		if n := len(np.Spec.Ingress[0].From); n != 3 {
			return fmt.Errorf("%d sources", n)
		}
		return nil
	})
	var last clientResult
	eventually(t, 60*time.Second, "the other namespace let in", func() error {
		if last = runClient(t, other, creds["host"], creds, query); !last.ok || last.out != want {
			return fmt.Errorf("ok %v, output %q", last.ok, last.out)
		}
		return nil
	})
}
