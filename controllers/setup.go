package controllers

import (
	"context"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Options configure both controllers.
type Options struct {
	// AgentImage holds the myaas binary copied into database pods.
	AgentImage string
	Clock      clock.PassiveClock
	// Verifier and Address default to logging in over the pod network.
	Verifier CredentialVerifier
	Address  func(pod *corev1.Pod, port int32) string
	// Progress defaults to asking the import agent over HTTP.
	Progress ProgressReader
}

// Setup registers the indexes and both controllers with the manager.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Verifier == nil {
		o.Verifier = MySQLVerifier{}
	}
	if o.Progress == nil {
		o.Progress = HTTPProgressReader{Client: &http.Client{Timeout: 2 * time.Second}}
	}
	if err := SetupIndexes(ctx, mgr); err != nil {
		return err
	}
	if err := (&DatabaseTemplateReconciler{
		Client:     mgr.GetClient(),
		Scheme:     mgr.GetScheme(),
		Recorder:   mgr.GetEventRecorderFor("databasetemplate-controller"),
		Clock:      o.Clock,
		AgentImage: o.AgentImage,
		Progress:   o.Progress,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&DatabaseInstanceReconciler{
		Client:     mgr.GetClient(),
		Scheme:     mgr.GetScheme(),
		Recorder:   mgr.GetEventRecorderFor("databaseinstance-controller"),
		Clock:      o.Clock,
		AgentImage: o.AgentImage,
		Verifier:   o.Verifier,
		Address:    o.Address,
	}).SetupWithManager(mgr)
}
