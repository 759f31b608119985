package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// reconcileRefreshCronJob keeps the CronJob <template>-refresh in line with spec.refresh, and
// removes it when refreshes are no longer wanted.
func (r *DatabaseTemplateReconciler) reconcileRefreshCronJob(ctx context.Context, s *templatePass) (*ctrl.Result, error) {
	t := s.t
	key := client.ObjectKey{Namespace: t.Namespace, Name: builder.RefreshCronJobName(t.Name)}
	if t.Spec.Refresh == nil {
		meta.RemoveStatusCondition(&t.Status.Conditions, myaasv1.ConditionRefreshScheduled)
		// Most templates have no schedule, and a template's pass runs on every change of its
		// instances: only a CronJob the cache holds is deleted, rather than asking the API
		// server to delete one that does not exist each time.
		cronJob := &batchv1.CronJob{}
		if err := r.Get(ctx, key, cronJob); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		return nil, r.deleteIfExists(ctx, cronJob)
	}

	want := builder.RefreshCronJob(t, r.AgentImage)
	have, made, own, err := ensureChild(ctx, r.Client, r.uncached(), key, &batchv1.CronJob{}, controlledBy(t, templateKind),
		func() (*batchv1.CronJob, error) { return want, nil })
	switch {
	case err == nil && !made && own != owned:
		// The CronJob of a deleted template of the same name, not yet collected.
		return stop(time.Second), nil
	case err == nil && !made && !equality.Semantic.DeepDerivative(want.Spec, have.Spec):
		have.Spec = want.Spec
		err = r.Update(ctx, have)
	}
	var status apierrors.APIStatus
	if apierrors.IsInvalid(err) && errors.As(err, &status) {
		// The API server rejects what the CRD's pattern let through (e.g. "61 * * * *").
		setConditionAndNotify(r.Recorder, t, &t.Status.Conditions, t.Generation, notice{
			condType: myaasv1.ConditionRefreshScheduled, status: metav1.ConditionFalse, reason: myaasv1.ReasonInvalidSchedule,
			message:   "spec.refresh: the refresh CronJob was rejected: " + status.Status().Message,
			eventType: corev1.EventTypeWarning, event: EventRefreshScheduleFailed,
		})
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reconcile CronJob %s: %w", key.Name, err)
	}
	setCondition(&t.Status.Conditions, t.Generation, myaasv1.ConditionRefreshScheduled, metav1.ConditionTrue, myaasv1.ReasonScheduled,
		fmt.Sprintf("CronJob %s runs %q", key.Name, t.Spec.Refresh.Schedule))
	return nil, nil
}
