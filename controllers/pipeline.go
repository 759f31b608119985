package controllers

import (
	"context"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// step is one step of a reconcile pipeline. It returns nil to let the next step run, or a result
// to end this pass there: a step that waits for something (a Job, a pod, a deletion) ends it.
type step[S any] struct {
	name string
	run  func(ctx context.Context, s S) (*ctrl.Result, error)
}

// wakeups collects the times a pass wants to be called back without stopping (an expiry, a poll),
// so that every step keeps one shape.
type wakeups struct{ after time.Duration }

// wakeIn asks for a call back within d.
func (w *wakeups) wakeIn(d time.Duration) {
	if d > 0 && (w.after == 0 || d < w.after) {
		w.after = d
	}
}

// runSteps runs the steps in order until one ends the pass. The result is the earliest of the
// ending step's requeue and the wake-ups asked for on the way.
func runSteps[S any](ctx context.Context, s S, w *wakeups, steps []step[S]) (ctrl.Result, error) {
	var res ctrl.Result
	for _, st := range steps {
		r, err := st.run(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		if r != nil {
			res = *r
			break
		}
	}
	if w.after > 0 && (res.RequeueAfter == 0 || w.after < res.RequeueAfter) {
		res.RequeueAfter = w.after
	}
	return res, nil
}

// stop ends a pass, asking to be called back after d (0: when a watched object changes).
func stop(d time.Duration) *ctrl.Result { return &ctrl.Result{RequeueAfter: d} }
