package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// reconcileService applies the instance's Service and records the endpoint clients use.
func (r *DatabaseInstanceReconciler) reconcileService(ctx context.Context, inst *myaasv1.DatabaseInstance, src *revisionSource) error {
	svc := builder.InstanceService(inst, src.engine)
	if err := r.Patch(ctx, svc, client.Apply, fieldOwner, client.ForceOwnership); err != nil {
		return fmt.Errorf("apply Service %s: %w", svc.Name, err)
	}
	inst.Status.Endpoint = &myaasv1.Endpoint{Host: builder.ServiceHost(inst), Port: src.engine.Port()}
	return nil
}

// reconcileStatefulSet applies the StatefulSet whose volume is cloned from the revision's snapshot.
func (r *DatabaseInstanceReconciler) reconcileStatefulSet(ctx context.Context, inst *myaasv1.DatabaseInstance, src *revisionSource) error {
	size := src.template.Spec.Storage.Size
	if rs := src.revision.RestoreSize; rs != nil && !rs.IsZero() {
		size = *rs
	}
	params := builder.StatefulSetParams{
		Engine:           src.engine,
		Image:            src.image,
		AgentImage:       r.AgentImage,
		ServerConfig:     src.template.Spec.Engine.Config,
		Revision:         src.revision.Revision,
		SnapshotName:     src.revision.SnapshotName,
		RestoreSize:      resource.MustParse(size.String()),
		StorageClassName: src.template.Spec.Storage.StorageClassName,
		NodeAffinity:     src.nodeAffinity,
		AgentInVolume:    src.revision.AgentSHA256 != "" && src.revision.AgentSHA256 == r.AgentSHA256,
	}
	if err := r.ensureClaim(ctx, builder.InstanceClaim(inst, params)); err != nil {
		return err
	}
	sts := builder.InstanceStatefulSet(inst, params)
	if err := r.Patch(ctx, sts, client.Apply, fieldOwner, client.ForceOwnership); err != nil {
		return fmt.Errorf("apply StatefulSet %s: %w", sts.Name, err)
	}
	return nil
}

// ensureClaim creates the clone PVC once; a claim's spec is immutable, so an existing one is kept.
func (r *DatabaseInstanceReconciler) ensureClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	err := r.Create(ctx, pvc)
	if err == nil || apierrors.IsAlreadyExists(err) {
		return nil
	}
	return fmt.Errorf("create PVC %s: %w", pvc.Name, err)
}
