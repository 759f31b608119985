package controllers

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// conditionRefreshScheduled reports whether the refresh CronJob matches spec.refresh.
const conditionRefreshScheduled = "RefreshScheduled"

// reconcileRefreshCronJob keeps the CronJob <template>-refresh in line with spec.refresh, and
// removes it when refreshes are no longer wanted.
func (r *DatabaseTemplateReconciler) reconcileRefreshCronJob(ctx context.Context, t *myaasv1.DatabaseTemplate) error {
	key := client.ObjectKey{Namespace: t.Namespace, Name: builder.RefreshCronJobName(t.Name)}
	if t.Spec.Refresh == nil {
		meta.RemoveStatusCondition(&t.Status.Conditions, conditionRefreshScheduled)
		return r.deleteIfExists(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
	}

	want := builder.RefreshCronJob(t, r.AgentImage)
	have := &batchv1.CronJob{}
	err := r.Get(ctx, key, have)
	switch {
	case apierrors.IsNotFound(err):
		err = r.Create(ctx, want)
	case err == nil && !equality.Semantic.DeepDerivative(want.Spec, have.Spec):
		have.Spec = want.Spec
		err = r.Update(ctx, have)
	}
	if apierrors.IsInvalid(err) {
		// The API server rejects what the CRD's pattern let through (e.g. "61 * * * *").
		msg := fmt.Sprintf("spec.refresh: the refresh CronJob was rejected: %v", err)
		r.Recorder.Event(t, corev1.EventTypeWarning, EventRefreshFailed, msg)
		setCondition(&t.Status.Conditions, t.Generation, conditionRefreshScheduled, metav1.ConditionFalse, myaasv1.ReasonInvalidSchedule, msg)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reconcile CronJob %s: %w", key.Name, err)
	}
	setCondition(&t.Status.Conditions, t.Generation, conditionRefreshScheduled, metav1.ConditionTrue, "Scheduled",
		fmt.Sprintf("CronJob %s runs %q", key.Name, t.Spec.Refresh.Schedule))
	return nil
}
