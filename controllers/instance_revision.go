package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
	"github.com/myaas/myaas/internal/engine"
)

// instanceKind names the owner in the controller references of an instance's children.
const instanceKind = "DatabaseInstance"

// revisionSource is everything an instance takes from its template's revision.
type revisionSource struct {
	template *myaasv1.DatabaseTemplate
	engine   engine.Engine
	revision myaasv1.TemplateRevision
	// server is what the revision was imported with, and what the instance runs.
	server       myaasv1.RevisionServer
	nodeAffinity *corev1.NodeAffinity
	// node holds the copy of the revision the instance is cloned from; empty when the revision's
	// storage serves every node, or its copies are not recorded (nodeAffinity then pins the pod).
	node string
	// cloneSnapshot is the VolumeSnapshot the clone is made from, in the instance's namespace:
	// the revision's own, or its copy for a template of another namespace.
	cloneSnapshot string
}

// resolveRevision finds the revision to clone and pins it in status: spec.revision, else the one
// already pinned, else the template's latest. A missing template or revision is reported in the
// Ready condition and waited for; nothing is deleted.
func (r *DatabaseInstanceReconciler) resolveRevision(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	waitFor := func(reason, event, msg string) (*ctrl.Result, error) {
		inst.Status.Phase = myaasv1.InstancePending
		setConditionAndNotify(r.Recorder, inst, &inst.Status.Conditions, inst.Generation, notice{
			condType: myaasv1.ConditionReady, status: metav1.ConditionFalse, reason: reason, message: msg,
			eventType: corev1.EventTypeWarning, event: event,
		})
		// The template watch brings us back; the timer covers a template in another state.
		return stop(30 * time.Second), nil
	}

	t := &myaasv1.DatabaseTemplate{}
	err := r.Get(ctx, inst.TemplateKey(), t)
	if inst.CrossNamespace() {
		// A template of another namespace is looked at only once it is shared with this one.
		if refused, err := r.checkGrant(ctx, inst, t, err); err != nil || refused != "" {
			if err != nil {
				return nil, err
			}
			return waitFor(myaasv1.ReasonTemplateNotShared, EventTemplateNotShared, refused)
		}
	}
	if apierrors.IsNotFound(err) {
		return waitFor(myaasv1.ReasonTemplateNotFound, EventTemplateNotFound,
			fmt.Sprintf("DatabaseTemplate %q named in spec.templateRef.name does not exist in namespace %s", inst.Spec.TemplateRef.Name, inst.Namespace))
	} else if err != nil {
		return nil, fmt.Errorf("get template %s: %w", inst.TemplateKey(), err)
	}

	want := pinnedRevision(inst)
	if want == 0 {
		want = t.Status.LatestRevision
	}
	if want == 0 && inst.CrossNamespace() {
		// The state of another namespace's import (its source, its errors) stays there.
		return waitFor(myaasv1.ReasonTemplateNotReady, EventRevisionNotFound,
			fmt.Sprintf("DatabaseTemplate %s/%s has no revision yet", t.Namespace, t.Name))
	}
	if want == 0 {
		return waitFor(myaasv1.ReasonTemplateNotReady, EventRevisionNotFound,
			fmt.Sprintf("DatabaseTemplate %s has no revision yet (%s)", t.Name, templateStateForUsers(t)))
	}
	rev := revisionNumbered(t, want)
	if rev == nil {
		return waitFor(myaasv1.ReasonRevisionNotFound, EventRevisionNotFound,
			fmt.Sprintf("revision %d of DatabaseTemplate %s does not exist (available: %s)", want, t.Name, revisionList(t)))
	}

	eng, image, err := builder.EngineImage(t.Spec.Engine)
	if err != nil {
		return nil, fmt.Errorf("template %s: spec.engine.type: %w", t.Name, err)
	}
	// The API takes every engine's privileges and names: only the template says which apply.
	privs := make([]string, len(inst.Spec.ExtraPrivileges))
	for i, p := range inst.Spec.ExtraPrivileges {
		privs[i] = string(p)
	}
	if err := eng.ValidateUser(inst.Spec.Username, privs); err != nil {
		return waitFor(myaasv1.ReasonUserNotSupported, EventUserNotSupported,
			fmt.Sprintf("template %s runs %s: spec: %v", t.Name, eng.Name(), err))
	}
	server := myaasv1.RevisionServer{Image: image, Config: t.Spec.Engine.Config, AgentImage: r.AgentImage}
	if rev.Server != nil {
		// What the revision was imported with, not what the template's spec says now.
		server = *rev.Server
		server.AgentImage = orDefault(server.AgentImage, r.AgentImage)
	}
	replica, wait, err := r.placeOnReplica(ctx, inst, rev)
	if err != nil {
		return nil, err
	}
	if wait != "" {
		return waitFor(myaasv1.ReasonNoReplicaReady, EventNoReplicaReady, wait)
	}
	snapshot, node := rev.SnapshotName, ""
	var affinity *corev1.NodeAffinity
	if replica != nil {
		snapshot, node = replica.SnapshotName, replica.Node
	}
	if node == "" {
		if affinity, err = r.templateNodeAffinity(ctx, t, want); err != nil {
			return nil, err
		}
	}
	if inst.Status.ProvisioningStartedAt == nil {
		// The first clone counts from creation, as a user running `kubectl apply` sees it; a
		// reset counts from the moment the new clone is requested.
		start := inst.CreationTimestamp
		if inst.Status.Resets > 0 {
			start = metav1.NewTime(r.Clock.Now())
		}
		inst.Status.ProvisioningStartedAt = &start
	}
	inst.Status.Revision = want
	inst.Status.SnapshotName = snapshot
	inst.Status.Node = node
	s.src = &revisionSource{template: t, engine: eng, revision: *rev, server: server, nodeAffinity: affinity, node: node, cloneSnapshot: snapshot}
	return nil, nil
}

// pinnedRevision is the revision an instance uses: the one pinned in its status once cloned, else
// the one its spec asks for; 0 while it waits for the template's first revision.
func pinnedRevision(inst *myaasv1.DatabaseInstance) int32 {
	if inst.Status.Revision != 0 {
		return inst.Status.Revision
	}
	if inst.Spec.Revision != nil {
		return *inst.Spec.Revision
	}
	return 0
}

// templateNodeAffinity copies the node affinity of the revision's volume: node-local drivers
// (ZFS-LocalPV, TopoLVM, the local btrfs driver) can only clone a snapshot on its own node.
func (r *DatabaseInstanceReconciler) templateNodeAffinity(ctx context.Context, t *myaasv1.DatabaseTemplate, n int32) (*corev1.NodeAffinity, error) {
	pv, err := templateVolume(ctx, r.Client, t, n)
	if err != nil || pv == nil {
		return nil, err
	}
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return nil, nil
	}
	return &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: pv.Spec.NodeAffinity.Required.DeepCopy()}, nil
}

func templateStateForUsers(t *myaasv1.DatabaseTemplate) string {
	switch {
	case t.Status.CurrentImport != nil:
		return fmt.Sprintf("revision %d is %s", t.Status.CurrentImport.Revision, t.Status.CurrentImport.Phase)
	case t.Status.LastFailure != nil:
		return fmt.Sprintf("the last import failed: %s", t.Status.LastFailure.Message)
	}
	return "no import has started"
}

func revisionList(t *myaasv1.DatabaseTemplate) string {
	if len(t.Status.Revisions) == 0 {
		return "none"
	}
	s := ""
	for i, rev := range t.Status.Revisions {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprint(rev.Revision)
	}
	return s
}
