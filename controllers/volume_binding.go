package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/myaas/myaas/internal/builder"
)

// bindsWithoutPodButNotYet tells whether a claim is provisioned without waiting for a pod (its
// class binds at once, or it names its node) and is not bound yet. A pod made before such a claim
// is bound, or before the scheduler has seen the claim at all, is marked unschedulable ("unbound
// immediate PersistentVolumeClaims"), and the scheduler may leave it so until its periodic retry,
// minutes later: the pod's maker waits for the bind. A claim bound when its pod is scheduled
// (WaitForFirstConsumer) needs the pod first.
func bindsWithoutPodButNotYet(ctx context.Context, c client.Reader, claim *corev1.PersistentVolumeClaim) (bool, error) {
	if claim.Status.Phase == corev1.ClaimBound || claim.Spec.VolumeName != "" {
		return false, nil
	}
	if claim.Annotations[builder.AnnotationSelectedNode] != "" {
		return true, nil
	}
	return bindsImmediately(ctx, c, claim)
}

// bindsImmediately tells whether the claim's StorageClass binds without waiting for a pod. A
// claim without a class, or whose class is gone, is left to the API server and the PV controller.
func bindsImmediately(ctx context.Context, c client.Reader, claim *corev1.PersistentVolumeClaim) (bool, error) {
	if claim.Spec.StorageClassName == nil {
		return false, nil
	}
	class := &storagev1.StorageClass{}
	if err := c.Get(ctx, client.ObjectKey{Name: *claim.Spec.StorageClassName}, class); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	mode := class.VolumeBindingMode
	return mode == nil || *mode == storagev1.VolumeBindingImmediate, nil
}
