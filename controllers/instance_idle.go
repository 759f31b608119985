package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// SessionCounter counts the client sessions on a running server.
type SessionCounter interface {
	// ClientSessions counts the sessions other than the caller's own, the server's threads and
	// the pod's own (its probe and agent, which come through the local socket).
	ClientSessions(ctx context.Context, eng engine.Engine, l engine.Login) (int, error)
}

// idleCheckInterval is how often an instance with spec.idle is looked at: often enough to act
// within a quarter of its idle time, never more than once every 5 s nor less than once a minute.
func idleCheckInterval(after time.Duration) time.Duration {
	return min(max(after/4, 5*time.Second), time.Minute)
}

// reconcileIdle records when a client last had a session on the server and, once it has had
// none for spec.idle.after, suspends or deletes the instance. "Idle" is measured on the server:
// a client connected but silent keeps the instance; the operator's own logins never do.
func (r *DatabaseInstanceReconciler) reconcileIdle(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	if inst.Spec.Suspend || s.serverAddr == "" {
		return nil, nil
	}
	now := metav1.NewTime(r.Clock.Now())
	if inst.Status.LastActiveAt == nil {
		inst.Status.LastActiveAt = &now // ready again: the idle time counts from here
	}
	idle := inst.Spec.Idle
	if idle == nil || r.Sessions == nil {
		return nil, nil
	}
	every := idleCheckInterval(idle.After.Duration)
	// As the operator's admin account: only an account with PROCESS sees other accounts' sessions.
	// A pod from before the admin account has none, but root with the password kept for it.
	user, password := string(s.adminSecret.Data[agentapi.AdminKeyUsername]), string(s.adminSecret.Data[agentapi.AdminKeyPassword])
	if legacy := s.secret.Data[legacyRootPasswordKey]; len(legacy) > 0 {
		user, password = "root", string(legacy)
	}
	login := engine.Login{Addr: s.serverAddr, Username: user, Password: password, TLS: serverTLS(s)}
	sessions, err := r.Sessions.ClientSessions(ctx, s.src.engine, login)
	if err != nil {
		// Never act on a check that did not happen.
		log.FromContext(ctx).V(1).Info("idle check failed", "error", err.Error())
		s.wakeIn(every)
		return nil, nil
	}
	if sessions > 0 {
		inst.Status.LastActiveAt = &now
	}
	if left := idle.After.Duration - now.Sub(inst.Status.LastActiveAt.Time); left > 0 {
		s.wakeIn(min(left, every))
		return nil, nil
	}

	since := inst.Status.LastActiveAt.UTC().Format(time.RFC3339)
	if idle.Action == myaasv1.IdleDelete {
		r.Recorder.Eventf(inst, corev1.EventTypeNormal, EventIdle, "No client since %s (spec.idle.after %s): deleting the instance", since, idle.After.Duration)
		if err := r.Delete(ctx, inst, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("delete idle instance: %w", err)
		}
		s.deleted = true
		return stop(0), nil
	}
	r.Recorder.Eventf(inst, corev1.EventTypeNormal, EventIdle, "No client since %s (spec.idle.after %s): suspending; the data is kept", since, idle.After.Duration)
	if err := r.Patch(ctx, inst.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":true}}`))); err != nil {
		return nil, fmt.Errorf("suspend idle instance: %w", err)
	}
	return stop(0), nil // the spec change brings the next pass, which scales the server down
}

// ClientSessions implements SessionCounter.
func (EngineLogin) ClientSessions(ctx context.Context, eng engine.Engine, l engine.Login) (int, error) {
	return eng.ClientSessions(ctx, l)
}
