package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// reconcileReplicas records where each revision's copies live, follows their nodes' health, and
// copies the latest revision onto the nodes spec.replicas asks for. Storage whose first volume
// carries no single node's topology is used from every node: one copy serves them all.
func (r *DatabaseTemplateReconciler) reconcileReplicas(ctx context.Context, s *templatePass) (*ctrl.Result, error) {
	t := s.t
	if len(t.Status.Revisions) == 0 {
		return nil, nil
	}
	nodes := &corev1.NodeList{}
	if err := r.List(ctx, nodes); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for i := range t.Status.Revisions {
		rev := &t.Status.Revisions[i]
		if len(rev.Replicas) == 0 {
			first, err := r.firstReplica(ctx, t, rev, nodes.Items)
			if err != nil {
				return nil, err
			}
			if first == nil {
				continue // its volume is gone: it serves from its snapshot, as before copies were recorded
			}
			rev.Replicas = []myaasv1.RevisionReplica{*first}
		}
		for j := range rev.Replicas {
			rep := &rev.Replicas[j]
			if rep.State == myaasv1.ReplicaImporting {
				if err := r.advanceReplica(ctx, s, rev, rep, nodes.Items); err != nil {
					return nil, err
				}
				continue
			}
			followNode(rep, nodes.Items)
		}
	}
	r.addWantedReplicas(s, nodes.Items)
	return nil, nil
}

// firstReplica is the revision's own snapshot, on the node its volume was made on: the node the
// volume's PV is pinned to when exactly one node matches that pin, else none (every node).
func (r *DatabaseTemplateReconciler) firstReplica(ctx context.Context, t *myaasv1.DatabaseTemplate, rev *myaasv1.TemplateRevision, nodes []corev1.Node) (*myaasv1.RevisionReplica, error) {
	pv, err := templateVolume(ctx, r.Client, t, rev.Revision)
	if err != nil || pv == nil {
		return nil, err
	}
	first := &myaasv1.RevisionReplica{SnapshotName: rev.SnapshotName, State: myaasv1.ReplicaReady}
	if a := pv.Spec.NodeAffinity; a != nil && a.Required != nil {
		selector, err := nodeaffinity.NewNodeSelector(a.Required)
		if err != nil {
			return nil, fmt.Errorf("node affinity of PersistentVolume %s: %w", pv.Name, err)
		}
		var on []string
		for i := range nodes {
			if selector.Match(&nodes[i]) {
				on = append(on, nodes[i].Name)
			}
		}
		if len(on) == 1 {
			first.Node = on[0]
		}
	}
	return first, nil
}

// followNode marks a ready copy whose node is gone or not Ready, so that instances go elsewhere,
// and ready again once the node is back.
func followNode(rep *myaasv1.RevisionReplica, nodes []corev1.Node) {
	if rep.Node == "" || (rep.State != myaasv1.ReplicaReady && rep.State != myaasv1.ReplicaNodeNotReady) {
		return
	}
	if why := nodeUnusable(rep.Node, nodes); why != "" {
		rep.State, rep.Message = myaasv1.ReplicaNodeNotReady, why
		return
	}
	rep.State, rep.Message = myaasv1.ReplicaReady, ""
}

// nodeUnusable says why no new instance can run on the node, or "" when one can.
func nodeUnusable(name string, nodes []corev1.Node) string {
	i := slices.IndexFunc(nodes, func(n corev1.Node) bool { return n.Name == name })
	if i < 0 {
		return fmt.Sprintf("node %s no longer exists", name)
	}
	return nodeNotReady(&nodes[i])
}

// nodeNotReady says why a node is not Ready, from its Ready condition, or "" when it is.
func nodeNotReady(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			return ""
		}
		return fmt.Sprintf("node %s is not Ready since %s (%s: %s)", n.Name, c.LastTransitionTime.UTC().Format("15:04:05"), c.Reason, c.Message)
	}
	return fmt.Sprintf("node %s has not reported whether it is Ready", n.Name)
}

// addWantedReplicas starts copies of the latest revision on the nodes spec.replicas asks for and
// that have none. Only while the spec is the latest revision's: a copy imported with another spec
// would hold other data. A copy that failed is not tried again for the same revision.
func (r *DatabaseTemplateReconciler) addWantedReplicas(s *templatePass, nodes []corev1.Node) {
	t := s.t
	spec := t.Spec.Replicas
	latest := latestRevision(t)
	if spec == nil || latest == nil || len(latest.Replicas) == 0 || latest.Replicas[0].Node == "" || t.Status.LatestSpecHash != ImportSpecHash(t.Spec) {
		return
	}
	selector := labels.SelectorFromSet(spec.NodeSelector)
	var candidates []string
	for i := range nodes {
		n := &nodes[i]
		if selector.Matches(labels.Set(n.Labels)) && !n.Spec.Unschedulable && nodeNotReady(n) == "" {
			candidates = append(candidates, n.Name)
		}
	}
	slices.Sort(candidates)
	want := len(candidates)
	if spec.Nodes != nil {
		want = int(*spec.Nodes)
	}
	have := 0
	for _, rep := range latest.Replicas {
		if rep.State != myaasv1.ReplicaFailed {
			have++
		}
	}
	for _, node := range candidates {
		if have >= want {
			return
		}
		if slices.ContainsFunc(latest.Replicas, func(rep myaasv1.RevisionReplica) bool { return rep.Node == node }) {
			continue
		}
		latest.Replicas = append(latest.Replicas, myaasv1.RevisionReplica{
			Node: node, SnapshotName: builder.ReplicaName(t.Name, latest.Revision, node), State: myaasv1.ReplicaImporting,
			Message: "loading the dump on this node",
		})
		r.Recorder.Eventf(t, corev1.EventTypeNormal, EventReplicaStarted, "Copying revision %d onto node %s", latest.Revision, node)
		have++
		s.wakeIn(requeueSoon)
	}
}

func latestRevision(t *myaasv1.DatabaseTemplate) *myaasv1.TemplateRevision {
	return revisionNumbered(t, t.Status.LatestRevision)
}

// advanceReplica moves one copy along: its volume on the node, the import Job there, then the
// snapshot. The Job loads the source again; a source that changed since the revision was
// imported (another size) would give the node other data, so the copy fails instead.
func (r *DatabaseTemplateReconciler) advanceReplica(ctx context.Context, s *templatePass, rev *myaasv1.TemplateRevision, rep *myaasv1.RevisionReplica, nodes []corev1.Node) error {
	t := s.t
	agentImage := r.AgentImage
	if rev.Server != nil && rev.Server.AgentImage != "" {
		agentImage = rev.Server.AgentImage
	}
	pvc, job, snap, err := builder.ReplicaImport(t, rev.Revision, rep.Node, agentImage)
	if err != nil {
		return r.failReplica(ctx, t, rev, rep, err.Error())
	}
	if why := nodeUnusable(rep.Node, nodes); why != "" {
		return r.failReplica(ctx, t, rev, rep, why)
	}
	ours := controlledBy(t, templateKind)

	haveSnap := &snapshotv1.VolumeSnapshot{}
	if err := r.Get(ctx, client.ObjectKeyFromObject(snap), haveSnap); err == nil && ours(haveSnap) == owned {
		if st := haveSnap.Status; st != nil && st.ReadyToUse != nil && *st.ReadyToUse {
			rep.State, rep.Message = myaasv1.ReplicaReady, ""
			r.Recorder.Eventf(t, corev1.EventTypeNormal, EventReplicaReady, "Revision %d is ready on node %s (snapshot %s)", rev.Revision, rep.Node, snap.Name)
			return r.deleteIfExists(ctx, job)
		}
		rep.Message = "taking the snapshot"
		if st := haveSnap.Status; st != nil && st.Error != nil && st.Error.Message != nil {
			rep.Message = "the snapshot reported an error, retried: " + *st.Error.Message
			s.wakeIn(snapshotErrorPoll)
		}
		return nil
	} else if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("get VolumeSnapshot %s: %w", snap.Name, err)
	}

	claim, _, own, err := ensureChild(ctx, r.Client, r.uncached(), client.ObjectKeyFromObject(pvc), &corev1.PersistentVolumeClaim{}, ours,
		func() (*corev1.PersistentVolumeClaim, error) { return pvc, nil })
	if err != nil || own != owned {
		s.wakeIn(requeueSoon)
		return err
	}
	// The claim names its node, so it is provisioned without a pod: an import pod made before the
	// bind could be left unschedulable for minutes.
	if pending, err := bindsWithoutPodButNotYet(ctx, r.Client, claim); err != nil || pending {
		rep.Message = fmt.Sprintf("PersistentVolumeClaim %s is being provisioned; the import starts once it is bound", claim.Name)
		return err // the claim is the template's: its binding brings the next pass
	}
	haveJob, made, own, err := ensureChild(ctx, r.Client, r.uncached(), client.ObjectKeyFromObject(job), &batchv1.Job{}, ours,
		func() (*batchv1.Job, error) { return job, nil })
	if err != nil || own != owned || made {
		s.wakeIn(requeueSoon)
		return err
	}
	pod, err := r.importPod(ctx, haveJob)
	if err != nil {
		return err
	}
	switch {
	case jobHasCondition(haveJob, batchv1.JobComplete):
		report := parseImportReport(terminationMessage(pod, builder.ImportContainer))
		if rev.DumpBytes > 0 && report.BytesRead != rev.DumpBytes {
			return r.failReplica(ctx, t, rev, rep, fmt.Sprintf("the source changed since revision %d was imported (%d bytes then, %d now): this node gets the next revision",
				rev.Revision, rev.DumpBytes, report.BytesRead))
		}
		rep.Message = "taking the snapshot"
		if err := r.Create(ctx, snap); client.IgnoreAlreadyExists(err) != nil {
			return fmt.Errorf("create VolumeSnapshot %s: %w", snap.Name, err)
		}
	case jobHasCondition(haveJob, batchv1.JobFailed):
		return r.failReplica(ctx, t, rev, rep, classifyImportFailure(haveJob, pod, t.Spec.Import.Resources).message)
	default:
		rep.Message = "loading the dump on this node"
		if stuck := imagePullFailure(pod); stuck != "" {
			rep.Message = stuck
		}
	}
	return nil
}

// failReplica records why a copy could not be made and deletes what it made: the revision keeps
// serving from its other copies.
func (r *DatabaseTemplateReconciler) failReplica(ctx context.Context, t *myaasv1.DatabaseTemplate, rev *myaasv1.TemplateRevision, rep *myaasv1.RevisionReplica, why string) error {
	if err := r.deleteReplica(ctx, t, rev.Revision, rep.Node); err != nil {
		return err
	}
	rep.State, rep.Message = myaasv1.ReplicaFailed, why
	r.Recorder.Eventf(t, corev1.EventTypeWarning, EventReplicaFailed, "Revision %d could not be copied onto node %s: %s", rev.Revision, rep.Node, why)
	return nil
}

// deleteReplica deletes the snapshot, the Job and the volume of revision n's copy on node.
func (r *DatabaseTemplateReconciler) deleteReplica(ctx context.Context, t *myaasv1.DatabaseTemplate, n int32, node string) error {
	ns := t.Namespace
	for _, obj := range []client.Object{
		&snapshotv1.VolumeSnapshot{ObjectMeta: objectMeta(ns, builder.ReplicaName(t.Name, n, node))},
		&batchv1.Job{ObjectMeta: objectMeta(ns, builder.ReplicaImportJobName(t.Name, n, node))},
		&corev1.PersistentVolumeClaim{ObjectMeta: objectMeta(ns, builder.ReplicaName(t.Name, n, node))},
	} {
		if err := r.deleteIfExists(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}

// replicaObjects are the snapshots and volumes of a revision's copies on other nodes than its
// first import's, in the order they may be deleted.
func replicaObjects(t *myaasv1.DatabaseTemplate, rev *myaasv1.TemplateRevision) (snapshots, volumes []client.Object) {
	for _, rep := range rev.Replicas {
		if rep.Node == "" || rep.SnapshotName == rev.SnapshotName {
			continue
		}
		name := builder.ReplicaName(t.Name, rev.Revision, rep.Node)
		snapshots = append(snapshots, &snapshotv1.VolumeSnapshot{ObjectMeta: objectMeta(t.Namespace, name)})
		volumes = append(volumes, &corev1.PersistentVolumeClaim{ObjectMeta: objectMeta(t.Namespace, name)})
	}
	return snapshots, volumes
}

// replicaSummary lists a revision's copies for messages: "node-a Ready, node-b NodeNotReady".
func replicaSummary(rev *myaasv1.TemplateRevision) string {
	parts := make([]string, len(rev.Replicas))
	for i, rep := range rev.Replicas {
		node := rep.Node
		if node == "" {
			node = "every node"
		}
		parts[i] = fmt.Sprintf("%s %s", node, rep.State)
	}
	return strings.Join(parts, ", ")
}

func objectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

func revisionNumbered(t *myaasv1.DatabaseTemplate, n int32) *myaasv1.TemplateRevision {
	for i := range t.Status.Revisions {
		if t.Status.Revisions[i].Revision == n {
			return &t.Status.Revisions[i]
		}
	}
	return nil
}

// templatesWithReplicas are the templates with a copy of a revision on the node.
func (r *DatabaseTemplateReconciler) templatesWithReplicas(ctx context.Context, o client.Object) []reconcile.Request {
	list := &myaasv1.DatabaseTemplateList{}
	if err := r.List(ctx, list); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, t := range list.Items {
		if slices.ContainsFunc(t.Status.Revisions, func(rev myaasv1.TemplateRevision) bool {
			return slices.ContainsFunc(rev.Replicas, func(rep myaasv1.RevisionReplica) bool { return rep.Node == o.GetName() })
		}) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&t)})
		}
	}
	return reqs
}

// nodeReadinessChanged passes the node events that can change where instances may go: a node
// added or deleted, its Ready condition or its schedulability changed. The kubelet's status
// updates every ten seconds are not among them.
func nodeReadinessChanged() predicate.Funcs {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			before, after := e.ObjectOld.(*corev1.Node), e.ObjectNew.(*corev1.Node)
			return nodeNotReady(before) != nodeNotReady(after) || before.Spec.Unschedulable != after.Spec.Unschedulable
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// anyReplicaReady: the revision can be cloned somewhere. A revision whose copies are not recorded
// yet (imported before they were) serves from its snapshot.
func anyReplicaReady(rev *myaasv1.TemplateRevision) bool {
	return len(rev.Replicas) == 0 || slices.ContainsFunc(rev.Replicas, func(rep myaasv1.RevisionReplica) bool { return rep.State == myaasv1.ReplicaReady })
}

// templateVolume is the PersistentVolume revision n was imported into, or nil while it has none
// (or no longer has one).
func templateVolume(ctx context.Context, c client.Reader, t *myaasv1.DatabaseTemplate, n int32) (*corev1.PersistentVolume, error) {
	pvc := &corev1.PersistentVolumeClaim{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: builder.TemplatePVCName(t.Name, n)}, pvc); err != nil || pvc.Spec.VolumeName == "" {
		return nil, client.IgnoreNotFound(err)
	}
	pv := &corev1.PersistentVolume{}
	if err := c.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, pv); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return pv, nil
}

// pruneUnusedCopies deletes the copies of an expired revision that no instance on their node
// uses. The first import's copy stays with the revision: its volume and snapshot are the
// revision's own. A user whose node is not recorded keeps every copy.
func (r *DatabaseTemplateReconciler) pruneUnusedCopies(ctx context.Context, s *templatePass, rev *myaasv1.TemplateRevision) error {
	t, onNode := s.t, s.usedOn[rev.Revision]
	if len(rev.Replicas) < 2 || onNode[""] {
		return nil
	}
	kept := rev.Replicas[:0]
	for _, rep := range rev.Replicas {
		if rep.SnapshotName == rev.SnapshotName || onNode[rep.Node] {
			kept = append(kept, rep)
			continue
		}
		if err := r.deleteReplica(ctx, t, rev.Revision, rep.Node); err != nil {
			return err
		}
		r.Recorder.Eventf(t, corev1.EventTypeNormal, EventRevisionDeleted, "Revision %d deleted from node %s: older than the %d retained and used by no instance there",
			rev.Revision, rep.Node, max(t.Spec.RetainRevisions, 1))
	}
	rev.Replicas = kept
	return nil
}
