package controllers

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/myaas/myaas/internal/agent"
)

// Options configure both controllers.
type Options struct {
	// AgentImage holds the myaas binary copied into database pods.
	AgentImage string
	// AgentSHA256 of the binary in AgentImage; by default that of the running manager, which is
	// the same binary when AgentImage is the manager's own image.
	AgentSHA256 string
	Clock       clock.PassiveClock
	// Verifier and Address default to logging in through the instance's Service.
	Verifier CredentialVerifier
	// Sessions counts client sessions for spec.idle; logging in through the Service unless set.
	Sessions SessionCounter
	Address  func(pod *corev1.Pod, port int32) string
	// Progress defaults to asking the import agent over HTTP.
	Progress ProgressReader
	// AllowedImages a template's engine may use; nil allows any image.
	AllowedImages []string
	// AllowedServiceTypes an instance may ask for; nil means DefaultAllowedServiceTypes.
	AllowedServiceTypes []corev1.ServiceType
	// OperatorNamespace is where the manager's pods run (POD_NAMESPACE): the NetworkPolicies of
	// database pods let it in. Empty when the manager runs outside the cluster, on a node.
	OperatorNamespace string
}

// DefaultAllowedServiceTypes keeps every copy of production data inside the cluster unless the
// platform team opens more: a NodePort or LoadBalancer reaches it from outside.
const DefaultAllowedServiceTypes = "ClusterIP"

// ServiceTypes parses a comma-separated list of Service types.
func ServiceTypes(list string) []corev1.ServiceType {
	var out []corev1.ServiceType
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, corev1.ServiceType(s))
		}
	}
	return out
}

// Setup registers the indexes and both controllers with the manager.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if o.AgentSHA256 == "" {
		sum, err := SelfSHA256()
		if err != nil {
			return err
		}
		o.AgentSHA256 = sum
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Verifier == nil {
		o.Verifier = EngineLogin{}
	}
	if o.Sessions == nil {
		o.Sessions = EngineLogin{}
	}
	if o.AllowedServiceTypes == nil {
		o.AllowedServiceTypes = ServiceTypes(DefaultAllowedServiceTypes)
	}
	if o.Progress == nil {
		o.Progress = HTTPProgressReader{Client: &http.Client{Timeout: 2 * time.Second}}
	}
	if err := SetupIndexes(ctx, mgr); err != nil {
		return err
	}
	if err := (&DatabaseTemplateReconciler{
		Client:            mgr.GetClient(),
		Scheme:            mgr.GetScheme(),
		Recorder:          mgr.GetEventRecorderFor("databasetemplate-controller"),
		Clock:             o.Clock,
		AgentImage:        o.AgentImage,
		Progress:          o.Progress,
		AllowedImages:     o.AllowedImages,
		APIReader:         mgr.GetAPIReader(),
		OperatorNamespace: o.OperatorNamespace,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&DatabaseInstanceReconciler{
		Client:              mgr.GetClient(),
		Scheme:              mgr.GetScheme(),
		Recorder:            mgr.GetEventRecorderFor("databaseinstance-controller"),
		Clock:               o.Clock,
		AgentImage:          o.AgentImage,
		AgentSHA256:         o.AgentSHA256,
		Verifier:            o.Verifier,
		Address:             o.Address,
		AllowedServiceTypes: o.AllowedServiceTypes,
		Sessions:            o.Sessions,
		APIReader:           mgr.GetAPIReader(),
		OperatorNamespace:   o.OperatorNamespace,
	}).SetupWithManager(mgr)
}

// SelfSHA256 is the SHA-256 of the running binary, computed as the import agent computes that of
// the copy it keeps in a template volume.
func SelfSHA256() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate the manager binary: %w", err)
	}
	return agent.FileSHA256(self)
}
