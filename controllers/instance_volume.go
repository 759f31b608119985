package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// reconcileCloneVolume asks for the instance's clone of its revision first, before its Secrets,
// Service and NetworkPolicy: the CSI driver clones while those are made.
func (r *DatabaseInstanceReconciler) reconcileCloneVolume(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst, src := s.inst, s.src
	size := src.template.Spec.Storage.Size
	if rs := src.revision.RestoreSize; rs != nil && !rs.IsZero() {
		size = *rs
	}
	s.params = builder.StatefulSetParams{
		Engine:           src.engine,
		Image:            src.server.Image,
		AgentImage:       src.server.AgentImage,
		ServerConfig:     src.server.Config,
		Revision:         src.revision.Revision,
		SnapshotName:     src.cloneSnapshot,
		RestoreSize:      resource.MustParse(size.String()),
		StorageClassName: src.template.Spec.Storage.StorageClassName,
		NodeAffinity:     src.nodeAffinity,
		Node:             src.node,
		AgentInVolume:    src.revision.AgentSHA256 != "" && src.revision.AgentSHA256 == r.AgentSHA256,
	}
	claim := builder.InstanceClaim(inst, s.params)
	have, _, own, err := ensureChild(ctx, r.Client, r.reader(), client.ObjectKeyFromObject(claim), &corev1.PersistentVolumeClaim{},
		controlledBy(inst, instanceKind), func() (*corev1.PersistentVolumeClaim, error) { return claim, nil })
	switch {
	case err != nil:
		return nil, err
	case own == pending:
		return stop(requeueSoon), nil
	case own != owned:
		return r.waitForPreviousInstance(s, "PersistentVolumeClaim "+claim.Name)
	}
	s.cloneClaim = have
	return nil, nil
}

// waitForCloneBound holds back a new instance's StatefulSet, and so its pod, while its clone
// binds on its own (bindsWithoutPodButNotYet), and says so in the instance's status.
func (r *DatabaseInstanceReconciler) waitForCloneBound(ctx context.Context, s *instancePass) (bool, error) {
	claim := s.cloneClaim
	pending, err := bindsWithoutPodButNotYet(ctx, r.Client, claim)
	if err != nil || !pending {
		return false, err
	}
	s.inst.Status.Phase = myaasv1.InstanceCloning
	setCondition(&s.inst.Status.Conditions, s.inst.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonCloning,
		fmt.Sprintf("cloning revision %d (snapshot %s): PersistentVolumeClaim %s is being provisioned; the server starts once it is bound",
			s.src.revision.Revision, s.src.revision.SnapshotName, claim.Name))
	return true, nil // the claim's binding brings the next pass
}
