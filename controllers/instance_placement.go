package controllers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// placeOnReplica picks the copy of the revision an instance is cloned from, and so its node: of
// the ready copies on Ready nodes, the one whose node runs the fewest instances. It returns nil
// for a revision without recorded copies (its own snapshot and volume say where it lives), and a
// reason to wait when no copy can take the instance. An instance of another namespace clones
// the copy shared with it, which is the revision's first.
func (r *DatabaseInstanceReconciler) placeOnReplica(ctx context.Context, inst *myaasv1.DatabaseInstance, rev *myaasv1.TemplateRevision) (*myaasv1.RevisionReplica, string, error) {
	if len(rev.Replicas) == 0 || inst.CrossNamespace() || claimedFromPool(inst) {
		return nil, "", nil
	}
	if inst.Status.Revision == rev.Revision && inst.Status.SnapshotName != "" {
		// Placed already: its clone may exist, whatever its node's state is now.
		if i := slices.IndexFunc(rev.Replicas, func(rep myaasv1.RevisionReplica) bool { return rep.SnapshotName == inst.Status.SnapshotName }); i >= 0 {
			return &rev.Replicas[i], "", nil
		}
	}
	if i := slices.IndexFunc(rev.Replicas, func(rep myaasv1.RevisionReplica) bool { return rep.Node == "" && rep.State == myaasv1.ReplicaReady }); i >= 0 {
		return &rev.Replicas[i], "", nil
	}
	nodes := &corev1.NodeList{}
	if err := r.List(ctx, nodes); err != nil {
		return nil, "", fmt.Errorf("list nodes: %w", err)
	}
	var usable []string
	for _, rep := range rev.Replicas {
		if rep.State == myaasv1.ReplicaReady && nodeUnusable(rep.Node, nodes.Items) == "" {
			usable = append(usable, rep.Node)
		}
	}
	if len(usable) == 0 {
		return nil, fmt.Sprintf("revision %d has no copy on a Ready node (%s); the instance is placed once one is", rev.Revision, replicaSummary(rev)), nil
	}
	instances := &myaasv1.DatabaseInstanceList{}
	if err := r.List(ctx, instances); err != nil {
		return nil, "", fmt.Errorf("list instances: %w", err)
	}
	node := r.placements.choose(inst.UID, usable, instances.Items, r.Clock.Now())
	i := slices.IndexFunc(rev.Replicas, func(rep myaasv1.RevisionReplica) bool { return rep.Node == node })
	return &rev.Replicas[i], "", nil
}

// placements remembers the nodes chosen in the last minutes, which the cache may not show yet:
// instances applied together are placed by several workers at once, and each must count the
// others' choices to spread them evenly.
type placements struct {
	mu     sync.Mutex
	recent map[types.UID]placement
}

type placement struct {
	node string
	at   time.Time
}

// placementMemory bounds how long a placement counts without the cache showing it: far longer
// than a status write takes, even on a loaded API server.
const placementMemory = 2 * time.Minute

// choose returns the node among usable with the fewest instances, counting those placed but not
// yet seen in the cache; ties go to the first by name. An instance placed before, whose status
// write was lost, keeps its node while that node is usable.
func (p *placements) choose(uid types.UID, usable []string, instances []myaasv1.DatabaseInstance, now time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.recent == nil {
		p.recent = map[types.UID]placement{}
	}
	if prev, ok := p.recent[uid]; ok && slices.Contains(usable, prev.node) {
		return prev.node
	}
	count := map[string]int{}
	// An instance is in the cache before it is placed (its reconcile comes from there): one that
	// is no longer there, or is being deleted, counts nowhere; one that shows its node counts from
	// the cache; one placed whose status write the cache does not show yet counts from here.
	pending := map[types.UID]bool{}
	for _, inst := range instances {
		switch {
		case inst.UID == uid || !inst.DeletionTimestamp.IsZero() || claimedFromPool(&inst):
			// A claimant runs on its member's server, which counts already.
		case inst.Status.Node == "":
			pending[inst.UID] = true
		default:
			count[inst.Status.Node]++
		}
	}
	for other, pl := range p.recent {
		switch {
		case other == uid:
		case !pending[other] || now.Sub(pl.at) > placementMemory:
			delete(p.recent, other)
		default:
			count[pl.node]++
		}
	}
	sorted := slices.Clone(usable)
	slices.Sort(sorted)
	best := sorted[0]
	for _, n := range sorted[1:] {
		if count[n] < count[best] {
			best = n
		}
	}
	p.recent[uid] = placement{node: best, at: now}
	return best
}

// forget drops an instance's placement: a reset places it anew.
func (p *placements) forget(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.recent, uid)
}

func claimedFromPool(inst *myaasv1.DatabaseInstance) bool {
	return inst.Status.Provisioning != nil && inst.Status.Provisioning.Path == myaasv1.ProvisionedFromPool
}

// nodeDown says why the node a pod runs on cannot serve it, or "" when it can.
func (r *DatabaseInstanceReconciler) nodeDown(ctx context.Context, name string) (string, error) {
	node := &corev1.Node{}
	if err := r.Get(ctx, client.ObjectKey{Name: name}, node); apierrors.IsNotFound(err) {
		return nodeUnusable(name, nil), nil
	} else if err != nil {
		return "", fmt.Errorf("get node %s: %w", name, err)
	}
	return nodeNotReady(node), nil
}

// reportNodeDown makes the instance not Ready, naming the node its data is stranded on and how
// to get a working instance back.
func (r *DatabaseInstanceReconciler) reportNodeDown(inst *myaasv1.DatabaseInstance, why string) *ctrl.Result {
	inst.Status.Phase = myaasv1.InstanceFailed
	setConditionAndNotify(r.Recorder, inst, &inst.Status.Conditions, inst.Generation, notice{
		condType: myaasv1.ConditionReady, status: metav1.ConditionFalse, reason: myaasv1.ReasonNodeNotReady,
		message: fmt.Sprintf("%s, and the instance's data is on it. It comes back with the node; or reset it "+
			"(kubectl annotate databaseinstance %s %s=\"$(date +%%s)\" --overwrite) to clone the template's latest revision on a Ready node, losing its changes",
			why, inst.Name, myaasv1.AnnotationReset),
		eventType: corev1.EventTypeWarning, event: EventNodeNotReady,
	})
	return stop(30 * time.Second)
}

// releaseStrandedPod deletes at once the pod of an instance whose node is down: its kubelet
// cannot confirm a graceful deletion, which would hold a reset's StatefulSet deletion forever.
// The node's containers, if it comes back, are stopped by its kubelet.
func (r *DatabaseInstanceReconciler) releaseStrandedPod(ctx context.Context, inst *myaasv1.DatabaseInstance) error {
	pod := &corev1.Pod{}
	err := r.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: builder.InstancePodName(inst.Name)}, pod)
	if err != nil || pod.Spec.NodeName == "" {
		return client.IgnoreNotFound(err)
	}
	why, err := r.nodeDown(ctx, pod.Spec.NodeName)
	if err != nil || why == "" {
		return err
	}
	if err := r.Delete(ctx, pod, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete pod %s stranded on its node: %w", pod.Name, err)
	}
	return nil
}
