package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

const importReport = `{"outcome":"Succeeded","bytesRead":1048576,"files":1,"durationSeconds":3.5,"datadirBytes":52428800}`

// A template asking for 3 copies on 4 nodes, whose first import landed on node b: the operator
// loads the dump on two more nodes, replaces a copy that got other data, spreads instances evenly
// over the copies, and moves an instance off a node that went away when it is reset.
func TestRevisionCopiesOnSeveralNodes(t *testing.T) {
	requireEnv(t)
	startPoolManager(t)
	ns := newNamespace(t)
	playStatefulSetPods(t, ns)
	nodes := []string{ns + "-a", ns + "-b", ns + "-c", ns + "-d"}
	for _, n := range nodes {
		createNode(t, n)
	}
	newTemplate(t, ns, "shop", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Replicas = &myaasv1.ReplicaSpec{Nodes: ptr.To[int32](3)}
	})
	importFirstRevisionOn(t, ns, "shop", nodes[1])

	waitForReplicas(t, ns, "shop", map[string]myaasv1.ReplicaState{
		nodes[1]: myaasv1.ReplicaReady, nodes[0]: myaasv1.ReplicaImporting, nodes[2]: myaasv1.ReplicaImporting,
	})
	pvc := &corev1.PersistentVolumeClaim{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.ReplicaName("shop", 1, nodes[0])}, pvc); err != nil {
		t.Fatal(err)
	}
	if pvc.Annotations[builder.AnnotationSelectedNode] != nodes[0] {
		t.Fatalf("copy volume for %s asks for node %q", nodes[0], pvc.Annotations[builder.AnnotationSelectedNode])
	}
	// Node c's import read another dump than the revision's: its copy would hold other data.
	playReplicaImport(t, ns, "shop", 1, nodes[2], strings.Replace(importReport, "1048576", "999", 1))
	waitForReplicas(t, ns, "shop", map[string]myaasv1.ReplicaState{
		nodes[1]: myaasv1.ReplicaReady, nodes[0]: myaasv1.ReplicaImporting, nodes[2]: myaasv1.ReplicaFailed, nodes[3]: myaasv1.ReplicaImporting,
	})
	if rep := replicaOn(t, ns, "shop", nodes[2]); !strings.Contains(rep.Message, "the source changed since revision 1 was imported") {
		t.Fatalf("failed copy's message %q", rep.Message)
	}
	for _, n := range []string{nodes[0], nodes[3]} {
		playReplicaImport(t, ns, "shop", 1, n, importReport)
		playReplicaSnapshotReady(t, ns, builder.ReplicaName("shop", 1, n))
	}
	waitForReplicas(t, ns, "shop", map[string]myaasv1.ReplicaState{
		nodes[1]: myaasv1.ReplicaReady, nodes[0]: myaasv1.ReplicaReady, nodes[2]: myaasv1.ReplicaFailed, nodes[3]: myaasv1.ReplicaReady,
	})

	// Twelve instances applied at once: four on each node with a copy, each cloned from its node's.
	for i := range 12 {
		newInstance(t, ns, fmt.Sprintf("dev-%d", i), "shop")
	}
	perNode := map[string]int{}
	eventually(t, 60*time.Second, "12 instances Ready", func() error {
		clear(perNode)
		for i := range 12 {
			inst := getInstance(t, ns, fmt.Sprintf("dev-%d", i))
			if err := conditionIs(inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonCredentialsVerified); err != nil {
				return fmt.Errorf("%s: %w", inst.Name, err)
			}
			perNode[inst.Status.Node]++
		}
		return nil
	})
	if perNode[nodes[0]] != 4 || perNode[nodes[1]] != 4 || perNode[nodes[3]] != 4 {
		t.Fatalf("instances per node %v, want 4 on each of %s, %s, %s", perNode, nodes[0], nodes[1], nodes[3])
	}
	for i := range 12 {
		inst := getInstance(t, ns, fmt.Sprintf("dev-%d", i))
		sts := &appsv1.StatefulSet{}
		if err := k8s.Get(bg, client.ObjectKeyFromObject(inst), sts); err != nil {
			t.Fatal(err)
		}
		want := builder.ReplicaName("shop", 1, inst.Status.Node)
		if inst.Status.Node == nodes[1] {
			want = builder.SnapshotName("shop", 1)
		}
		if got := sts.Spec.VolumeClaimTemplates[0].Spec.DataSource.Name; got != want {
			t.Errorf("%s on %s is cloned from %s, want %s", inst.Name, inst.Status.Node, got, want)
		}
		if pinned := sts.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values; !slices.Equal(pinned, []string{inst.Status.Node}) {
			t.Errorf("%s's pod is pinned to %v, its clone is on %s", inst.Name, pinned, inst.Status.Node)
		}
	}

	// Node a stops reporting: its copy is not used, the template stays Ready, and its instances say so.
	setNodeReady(t, nodes[0], false)
	waitForReplicas(t, ns, "shop", map[string]myaasv1.ReplicaState{
		nodes[1]: myaasv1.ReplicaReady, nodes[0]: myaasv1.ReplicaNodeNotReady, nodes[2]: myaasv1.ReplicaFailed, nodes[3]: myaasv1.ReplicaReady,
	})
	if tmpl := getTemplate(t, ns, "shop"); conditionIs(tmpl.Status.Conditions, tmpl.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonRevisionAvailable) != nil {
		t.Fatalf("template not Ready with two copies on Ready nodes: %+v", tmpl.Status.Conditions)
	}
	var victim string
	for i := range 12 {
		if inst := getInstance(t, ns, fmt.Sprintf("dev-%d", i)); inst.Status.Node == nodes[0] {
			victim = inst.Name
			break
		}
	}
	// The node lifecycle controller marks the lost node's pods not Ready.
	pod := &corev1.Pod{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: victim + "-0"}, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: metav1.Now()}}
	if err := k8s.Status().Update(bg, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the instance on the lost node names it", func() error {
		inst := getInstance(t, ns, victim)
		c := metaCondition(inst.Status.Conditions, myaasv1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != myaasv1.ReasonNodeNotReady || !strings.Contains(c.Message, nodes[0]) {
			return fmt.Errorf("Ready condition %+v", c)
		}
		return nil
	})
	newInstance(t, ns, "late", "shop")
	eventually(t, 20*time.Second, "a new instance placed", func() error {
		if node := getInstance(t, ns, "late").Status.Node; node == "" || node == nodes[0] {
			return fmt.Errorf("placed on %q", node)
		}
		return nil
	})

	// A reset brings the instance back on a Ready node; its pod on the lost node is let go at once.
	annotateInstance(t, ns, victim, myaasv1.AnnotationReset, "moved")
	eventually(t, 20*time.Second, "the stranded pod deleted and the StatefulSet being deleted", func() error {
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: victim + "-0"}, &corev1.Pod{}); err == nil {
			return fmt.Errorf("pod still there")
		}
		sts := &appsv1.StatefulSet{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: victim}, sts); err != nil {
			return err
		}
		if sts.DeletionTimestamp.IsZero() {
			return fmt.Errorf("not being deleted")
		}
		return nil
	})
	removeFinalizer(t, &appsv1.StatefulSet{}, ns, victim, metav1.FinalizerDeleteDependents)
	eventually(t, 30*time.Second, "the reset instance Ready on another node", func() error {
		inst := getInstance(t, ns, victim)
		if inst.Status.Node == "" || inst.Status.Node == nodes[0] || inst.Status.Resets != 1 {
			return fmt.Errorf("node %q after %d resets", inst.Status.Node, inst.Status.Resets)
		}
		return conditionIs(inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonCredentialsVerified)
	})
}

// createNode registers a Ready node, deleted when the test ends.
// importFirstRevisionOn plays the template's first import, its volume bound on node.
func importFirstRevisionOn(t *testing.T, ns, template, node string) {
	t.Helper()
	job := waitForImportJob(t, ns, template, 1)
	bindToNode(t, ns, builder.TemplatePVCName(template, 1), node)
	playImportPod(t, job, terminatedPod(importReport, 0))
	playJobFinished(t, job, true)
	playSnapshotReady(t, ns, template, 1, "2Gi")
	waitForLatestRevision(t, ns, template, 1)
}

func createNode(t *testing.T, name string) {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
	if err := k8s.Create(bg, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(bg, node) })
	setNodeReady(t, name, true)
}

// setNodeReady posts the node's Ready condition, as its kubelet or the node lifecycle controller would.
func setNodeReady(t *testing.T, name string, ready bool) {
	t.Helper()
	node := &corev1.Node{}
	if err := k8s.Get(bg, client.ObjectKey{Name: name}, node); err != nil {
		t.Fatal(err)
	}
	cond := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastTransitionTime: metav1.Now()}
	if !ready {
		cond.Status, cond.Reason, cond.Message = corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."
	}
	node.Status.Conditions = []corev1.NodeCondition{cond}
	if err := k8s.Status().Update(bg, node); err != nil {
		t.Fatal(err)
	}
}

// bindToNode binds a template volume to a PV on node, as a node-local driver makes it.
func bindToNode(t *testing.T, ns, claim, node string) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + ns + "-" + claim},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "test.csi", VolumeHandle: claim}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
	}
	if err := k8s.Create(bg, pv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(bg, pv) })
	pvc := &corev1.PersistentVolumeClaim{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: claim}, pvc); err != nil {
		t.Fatal(err)
	}
	pvc.Spec.VolumeName = pv.Name
	if err := k8s.Update(bg, pvc); err != nil {
		t.Fatal(err)
	}
}

// playReplicaImport runs the import Job of revision n's copy on node to its end, with report.
func playReplicaImport(t *testing.T, ns, template string, n int32, node, report string) {
	t.Helper()
	job := &batchv1.Job{}
	eventually(t, 20*time.Second, "import Job of the copy on "+node, func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.ReplicaImportJobName(template, n, node)}, job)
	})
	if pinned := job.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values; !slices.Equal(pinned, []string{node}) {
		t.Fatalf("copy's import Job pinned to %v, want %s", pinned, node)
	}
	playImportPod(t, job, terminatedPod(report, 0))
	playJobFinished(t, job, true)
}

func playReplicaSnapshotReady(t *testing.T, ns, name string) {
	t.Helper()
	snap := &snapshotv1.VolumeSnapshot{}
	eventually(t, 20*time.Second, "snapshot "+name, func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, snap)
	})
	snap.Status = &snapshotv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(true), RestoreSize: ptr.To(resource.MustParse("2Gi")), CreationTime: ptr.To(metav1.Now())}
	if err := k8s.Status().Update(bg, snap); err != nil {
		t.Fatal(err)
	}
}

func waitForReplicas(t *testing.T, ns, template string, want map[string]myaasv1.ReplicaState) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("copies %v", want), func() error {
		rev := latestRevision(getTemplate(t, ns, template))
		got := map[string]myaasv1.ReplicaState{}
		for _, rep := range rev.Replicas {
			got[rep.Node] = rep.State
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("copies %v", got)
		}
		return nil
	})
}

func replicaOn(t *testing.T, ns, template, node string) myaasv1.RevisionReplica {
	t.Helper()
	for _, rep := range latestRevision(getTemplate(t, ns, template)).Replicas {
		if rep.Node == node {
			return rep
		}
	}
	t.Fatalf("no copy on %s", node)
	return myaasv1.RevisionReplica{}
}

// An expired revision loses its copy on every node where no instance uses it, then the rest once
// its last instance is gone.
func TestOldRevisionCopiesAreCollectedOnEveryNode(t *testing.T) {
	requireEnv(t)
	startPoolManager(t)
	ns := newNamespace(t)
	playStatefulSetPods(t, ns)
	a, b := ns+"-a", ns+"-b"
	createNode(t, a)
	createNode(t, b)
	newTemplate(t, ns, "shop", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Replicas = &myaasv1.ReplicaSpec{NodeSelector: map[string]string{}}
		d.Spec.Replicas.Nodes = ptr.To[int32](2)
		d.Spec.RetainRevisions = 1
	})
	importOnNodes := func(n int32) {
		job := waitForImportJob(t, ns, "shop", n)
		bindToNode(t, ns, builder.TemplatePVCName("shop", n), a)
		playImportPod(t, job, terminatedPod(importReport, 0))
		playJobFinished(t, job, true)
		playSnapshotReady(t, ns, "shop", n, "2Gi")
		waitForLatestRevision(t, ns, "shop", n)
		playReplicaImport(t, ns, "shop", n, b, importReport)
		playReplicaSnapshotReady(t, ns, builder.ReplicaName("shop", n, b))
		waitForReplicas(t, ns, "shop", map[string]myaasv1.ReplicaState{a: myaasv1.ReplicaReady, b: myaasv1.ReplicaReady})
	}
	importOnNodes(1)
	inst := newInstance(t, ns, "keep", "shop")
	eventually(t, 20*time.Second, "instance placed", func() error {
		if node := getInstance(t, ns, "keep").Status.Node; node != a {
			return fmt.Errorf("placed on %q, want %s (fewest instances, first by name)", node, a)
		}
		return nil
	})

	requestRefresh(t, ns, "shop", "nightly")
	importOnNodes(2)
	copyOnB := client.ObjectKey{Namespace: ns, Name: builder.ReplicaName("shop", 1, b)}
	eventually(t, 20*time.Second, "revision 1's unused copy on "+b+" deleted", func() error {
		if err := k8s.Get(bg, copyOnB, &snapshotv1.VolumeSnapshot{}); err == nil {
			return fmt.Errorf("snapshot %s still there", copyOnB.Name)
		}
		rev := revisionNumbered(getTemplate(t, ns, "shop"), 1)
		if rev == nil || len(rev.Replicas) != 1 || rev.Replicas[0].Node != a {
			return fmt.Errorf("revision 1: %+v", rev)
		}
		return nil
	})
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.SnapshotName("shop", 1)}, &snapshotv1.VolumeSnapshot{}); err != nil {
		t.Fatalf("revision 1's copy in use on %s: %v", a, err)
	}

	deleteInstance(t, inst)
	eventually(t, 20*time.Second, "revision 1 deleted", func() error {
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.SnapshotName("shop", 1)}, &snapshotv1.VolumeSnapshot{}); err == nil {
			return fmt.Errorf("snapshot of revision 1 still there")
		}
		return nil
	})
}

// annotateInstance sets an annotation as kubectl annotate does: retried when the operator's status
// write comes in between.
func annotateInstance(t *testing.T, ns, name, key, value string) {
	t.Helper()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		inst := getInstance(t, ns, name)
		if inst.Annotations == nil {
			inst.Annotations = map[string]string{}
		}
		inst.Annotations[key] = value
		return k8s.Update(bg, inst)
	}); err != nil {
		t.Fatal(err)
	}
}
