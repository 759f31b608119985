//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// The tests of several nodes run on the 3-node local cluster (make test-e2e-nodes, which sets
// MYAAS_E2E_NODES); the single-node suite leaves them out.
func requireNodes(t *testing.T) []string {
	t.Helper()
	want, _ := strconv.Atoi(os.Getenv("MYAAS_E2E_NODES"))
	if want < 2 {
		t.Skip("needs the multi-node local cluster: make test-e2e-nodes")
	}
	nodes := &corev1.NodeList{}
	if err := k8s.List(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	if len(names) != want {
		t.Fatalf("the cluster has nodes %v, want %d", names, want)
	}
	slices.Sort(names)
	return names
}

const sharedStorageClass = "myaas-btrfs-shared"

// A node-local template with a copy on each of 3 nodes: instances spread evenly over them, each
// pod on the node of its clone and serving the template's data; a refresh keeps them serving and
// the old revision goes from every node once unused.
func TestNodesSpreadInstancesOverCopies(t *testing.T) {
	nodes := requireNodes(t)
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Replicas = &myaasv1.ReplicaSpec{Nodes: ptr(int32(len(nodes)))}
		d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *"}
		d.Spec.RetainRevisions = 1
	})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	waitForCopies(t, ns, "shop", 1, nodes)

	// 20 at once, then 10 more: 30 instances, 10±1 per node.
	applyAtOnce(t, ns, 0, 20)
	applyAtOnce(t, ns, 20, 30)
	perNode := map[string]int{}
	want := shopDump.Expect()
	for i := range 30 {
		name := fmt.Sprintf("dev-%d", i)
		inst := getInstance(t, ns, name)
		node := podNode(t, ns, name)
		if node != inst.Status.Node || node != cloneNode(t, ns, name) {
			t.Errorf("%s: pod on %s, status names %q, clone on %s", name, node, inst.Status.Node, cloneNode(t, ns, name))
		}
		perNode[node]++
		if got := queryInt(t, connect(t, ns, name), "SELECT COUNT(*) FROM shop.orders"); got != int64(want.Orders) {
			t.Errorf("%s on %s: %d orders, want %d", name, node, got, want.Orders)
		}
	}
	for _, n := range nodes {
		if perNode[n] < 9 || perNode[n] > 11 {
			t.Errorf("instances per node %v: want 10±1 on each", perNode)
			break
		}
	}
	if out := kubectl(t, "-n", ns, "get", "dbi", "dev-0", "-o", "wide"); !slices.ContainsFunc(nodes, func(n string) bool { return strings.Contains(out, n) }) {
		t.Errorf("kubectl get dbi -o wide does not name the node:\n%s", out)
	}

	// A refresh: every instance keeps serving its revision, and revision 1's copies go from every
	// node once its instances are deleted.
	kubectl(t, "-n", ns, "create", "job", "--from=cronjob/shop-refresh", "refresh-now")
	waitForRevision(t, ns, "shop", 2, 300*time.Second)
	waitForCopies(t, ns, "shop", 2, nodes)
	old := revisionSnapshots(t, ns, "shop", 1)
	if len(old) != len(nodes) {
		t.Fatalf("revision 1 snapshots %v, want one per node", old)
	}
	for i := range 30 {
		name := fmt.Sprintf("dev-%d", i)
		if got := queryInt(t, connect(t, ns, name), "SELECT COUNT(*) FROM shop.orders"); got != int64(want.Orders) {
			t.Fatalf("%s stopped serving its revision after the refresh", name)
		}
	}
	for i := range 30 {
		if err := k8s.Delete(ctx, &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("dev-%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 180*time.Second, "revision 1 collected on every node", func() error {
		if left := revisionSnapshots(t, ns, "shop", 1); len(left) > 0 {
			return fmt.Errorf("snapshots left: %v", left)
		}
		return nil
	})
}

// Storage every node reaches (the shared pool): one copy, and instances on all three nodes.
func TestNodesSharedStorageOneCopy(t *testing.T) {
	nodes := requireNodes(t)
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Storage.StorageClassName = ptr(sharedStorageClass)
		d.Spec.Replicas = &myaasv1.ReplicaSpec{Nodes: ptr(int32(len(nodes)))}
	})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	eventually(t, 60*time.Second, "one copy for every node", func() error {
		reps := getTemplate(t, ns, "shop").Status.Revisions[0].Replicas
		if len(reps) != 1 || reps[0].Node != "" || reps[0].State != myaasv1.ReplicaReady {
			return fmt.Errorf("copies %+v", reps)
		}
		return nil
	})
	count := 3 * len(nodes)
	applyAtOnce(t, ns, 0, count)
	seen := map[string]bool{}
	for i := range count {
		seen[podNode(t, ns, fmt.Sprintf("dev-%d", i))] = true
	}
	for _, n := range nodes {
		if !seen[n] {
			t.Fatalf("no instance on %s; nodes used: %v", n, seen)
		}
	}
}

// A node whose kubelet stops: its instances say so, new instances go elsewhere, a reset moves an
// instance to a healthy node with the template's data, and the template stays Ready.
func TestNodesKubeletStopped(t *testing.T) {
	nodes := requireNodes(t)
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url + "/shop.sql.gz"}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Replicas = &myaasv1.ReplicaSpec{Nodes: ptr(int32(len(nodes)))}
	})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	waitForCopies(t, ns, "shop", 1, nodes)
	applyAtOnce(t, ns, 0, 2*len(nodes))

	// The lost node is one that runs instances and not the manager.
	manager := managerNode(t)
	lost := ""
	var victims []string
	for _, n := range nodes {
		if n == manager || lost != "" {
			continue
		}
		for i := range 2 * len(nodes) {
			if name := fmt.Sprintf("dev-%d", i); podNode(t, ns, name) == n {
				lost = n
				victims = append(victims, name)
			}
		}
	}
	if lost == "" {
		t.Fatalf("no node without the manager runs an instance")
	}
	nodeCommand(t, "node-stop", lost)
	t.Cleanup(func() { nodeCommand(t, "node-start", lost) })

	for _, v := range victims {
		eventually(t, 120*time.Second, v+" names its lost node", func() error {
			st, reason, msg := conditionReason(getInstance(t, ns, v).Status.Conditions, myaasv1.ConditionReady)
			if st != "False" || reason != myaasv1.ReasonNodeNotReady || !strings.Contains(msg, lost) {
				return fmt.Errorf("Ready %s %s: %s", st, reason, msg)
			}
			return nil
		})
	}
	if st, reason, msg := conditionReason(getTemplate(t, ns, "shop").Status.Conditions, myaasv1.ConditionReady); st != "True" {
		t.Fatalf("template not Ready with copies on two Ready nodes: %s %s", reason, msg)
	}
	newInstance(t, ns, "late", "shop")
	waitReady(t, ns, "late")
	if n := podNode(t, ns, "late"); n == lost {
		t.Fatalf("a new instance was placed on the lost node %s", lost)
	}

	kubectl(t, "-n", ns, "annotate", "dbi", victims[0], myaasv1.AnnotationReset+"=moved")
	eventually(t, 180*time.Second, victims[0]+" reset onto a healthy node", func() error {
		inst := getInstance(t, ns, victims[0])
		if inst.Status.Resets != 1 || inst.Status.Node == lost || inst.Status.Node == "" {
			return fmt.Errorf("resets %d, node %q", inst.Status.Resets, inst.Status.Node)
		}
		if st, reason, msg := conditionReason(inst.Status.Conditions, myaasv1.ConditionReady); st != "True" {
			return fmt.Errorf("Ready %s %s: %s", st, reason, msg)
		}
		return nil
	})
	if n := podNode(t, ns, victims[0]); n == lost {
		t.Fatalf("the reset instance's pod is on the lost node")
	}
	if got, want := queryInt(t, connect(t, ns, victims[0]), "SELECT COUNT(*) FROM shop.orders"), int64(shopDump.Expect().Orders); got != want {
		t.Fatalf("after the reset: %d orders, want %d", got, want)
	}
}

// applyAtOnce creates instances dev-from … dev-(to-1) together and waits for all of them Ready.
func applyAtOnce(t *testing.T, ns string, from, to int) {
	t.Helper()
	args := []string{"-n", ns, "wait", "--for=condition=Ready", "--timeout=300s"}
	for i := from; i < to; i++ {
		newInstance(t, ns, fmt.Sprintf("dev-%d", i), "shop")
		args = append(args, fmt.Sprintf("databaseinstance/dev-%d", i))
	}
	kubectl(t, args...)
}

func waitForCopies(t *testing.T, ns, template string, revision int32, nodes []string) {
	t.Helper()
	eventually(t, 600*time.Second, fmt.Sprintf("revision %d ready on %v", revision, nodes), func() error {
		for _, rev := range getTemplate(t, ns, template).Status.Revisions {
			if rev.Revision != revision {
				continue
			}
			var ready []string
			for _, rep := range rev.Replicas {
				if rep.State == myaasv1.ReplicaReady {
					ready = append(ready, rep.Node)
				}
			}
			slices.Sort(ready)
			if !slices.Equal(ready, nodes) {
				return fmt.Errorf("copies %+v", rev.Replicas)
			}
			return nil
		}
		return fmt.Errorf("no revision %d", revision)
	})
}

func podNode(t *testing.T, ns, instance string) string {
	t.Helper()
	pod := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: instance + "-0"}, pod); err != nil {
		t.Fatal(err)
	}
	return pod.Spec.NodeName
}

// cloneNode is the node the instance's clone volume is pinned to by its driver.
func cloneNode(t *testing.T, ns, instance string) string {
	t.Helper()
	pvcs := &corev1.PersistentVolumeClaimList{}
	if err := k8s.List(ctx, pvcs, client.InNamespace(ns), client.MatchingLabels{myaasv1.LabelInstance: instance, myaasv1.LabelRole: myaasv1.RoleInstanceData}); err != nil || len(pvcs.Items) != 1 {
		t.Fatalf("clone of %s: %d PVCs, %v", instance, len(pvcs.Items), err)
	}
	pv := &corev1.PersistentVolume{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: pvcs.Items[0].Spec.VolumeName}, pv); err != nil {
		t.Fatal(err)
	}
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	return pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0]
}

func revisionSnapshots(t *testing.T, ns, template string, revision int32) []string {
	t.Helper()
	list := &snapshotv1.VolumeSnapshotList{}
	if err := k8s.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{
		myaasv1.LabelTemplate: template, myaasv1.LabelRevision: strconv.Itoa(int(revision)), myaasv1.LabelRole: myaasv1.RoleTemplateData,
	}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.Items {
		names = append(names, s.Name)
	}
	return names
}

func managerNode(t *testing.T) string {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace("myaas-system")); err != nil || len(pods.Items) == 0 {
		t.Fatalf("manager pod: %v", err)
	}
	return pods.Items[0].Spec.NodeName
}

// nodeCommand stops or starts one node's kubelet on the local cluster.
func nodeCommand(t *testing.T, command, node string) {
	t.Helper()
	out, err := exec.Command("bash", "../../hack/dev-cluster.sh", command, node).CombinedOutput()
	if err != nil {
		t.Fatalf("dev-cluster.sh %s %s: %v\n%s", command, node, err, out)
	}
}
