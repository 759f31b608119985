package controllers

import (
	"context"
	"fmt"

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
	sts := builder.InstanceStatefulSet(inst, builder.StatefulSetParams{
		Engine:           src.engine,
		Image:            src.image,
		AgentImage:       r.AgentImage,
		ServerConfig:     src.template.Spec.Engine.Config,
		Revision:         src.revision.Revision,
		SnapshotName:     src.revision.SnapshotName,
		RestoreSize:      resource.MustParse(size.String()),
		StorageClassName: src.template.Spec.Storage.StorageClassName,
		NodeAffinity:     src.nodeAffinity,
	})
	if err := r.Patch(ctx, sts, client.Apply, fieldOwner, client.ForceOwnership); err != nil {
		return fmt.Errorf("apply StatefulSet %s: %w", sts.Name, err)
	}
	return nil
}
