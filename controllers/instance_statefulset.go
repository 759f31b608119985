package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// reconcileService applies the instance's Service and records the endpoint clients use.
func (r *DatabaseInstanceReconciler) reconcileService(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	if res, err := r.checkServiceType(s); res != nil || err != nil {
		return res, err
	}
	svc := builder.InstanceService(inst, s.src.engine)
	have := &corev1.Service{}
	err := getChild(ctx, r.Client, r.reader(), client.ObjectKeyFromObject(svc), have)
	if client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("get Service %s: %w", svc.Name, err)
	}
	if err == nil && ownershipOf(have, inst, instanceKind) != owned {
		return r.waitForPreviousInstance(s, "Service "+svc.Name)
	}
	if err := r.applyService(ctx, svc, have); err != nil {
		return nil, err
	}
	inst.Status.Endpoint = &myaasv1.Endpoint{Host: builder.ServiceHost(inst), Port: s.src.engine.Port()}
	return nil, nil
}

// applyService applies want unless have, the Service in the cache (empty when there is none),
// already says all of it. A pass runs every 100 ms while a server starts: applying each time
// would make the API server merge an unchanged Service, twenty times over when twenty
// instances start at once.
func (r *DatabaseInstanceReconciler) applyService(ctx context.Context, want, have *corev1.Service) error {
	if serviceUpToDate(want, have) {
		return nil
	}
	if err := r.Patch(ctx, want, client.Apply, fieldOwner, client.ForceOwnership); err != nil {
		return fmt.Errorf("apply Service %s: %w", want.Name, err)
	}
	return nil
}

// serviceUpToDate: have carries everything want sets. The API server fills in more (a cluster
// IP, node ports, defaults), which want leaves out; the selector must match exactly, since a
// claim moves it to another pod.
func serviceUpToDate(want, have *corev1.Service) bool {
	return have.UID != "" &&
		maps.Equal(want.Spec.Selector, have.Spec.Selector) &&
		equality.Semantic.DeepDerivative(want.Spec, have.Spec) &&
		equality.Semantic.DeepDerivative(want.Labels, have.Labels) &&
		equality.Semantic.DeepDerivative(want.Annotations, have.Annotations) &&
		equality.Semantic.DeepEqual(want.OwnerReferences, have.OwnerReferences)
}

// checkServiceType ends the pass at a Service type the operator does not allow.
func (r *DatabaseInstanceReconciler) checkServiceType(s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	if t := serviceType(inst); r.AllowedServiceTypes != nil && !slices.Contains(r.AllowedServiceTypes, t) {
		inst.Status.Phase = myaasv1.InstanceFailed
		setConditionAndNotify(r.Recorder, inst, &inst.Status.Conditions, inst.Generation, notice{
			condType: myaasv1.ConditionReady, status: metav1.ConditionFalse, reason: myaasv1.ReasonServiceTypeNotAllowed,
			message: fmt.Sprintf("spec.serviceType %s is not allowed by this operator's --allowed-service-types (Helm value allowedServiceTypes; allowed: %s)",
				t, joinTypes(r.AllowedServiceTypes)),
			eventType: corev1.EventTypeWarning, event: EventServiceTypeNotAllowed,
		})
		return stop(0), nil
	}
	return nil, nil
}

func serviceType(inst *myaasv1.DatabaseInstance) corev1.ServiceType {
	if inst.Spec.ServiceType == "" {
		return corev1.ServiceTypeClusterIP
	}
	return inst.Spec.ServiceType
}

func joinTypes(types []corev1.ServiceType) string {
	s := make([]string, len(types))
	for i, t := range types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// annotationPodInputs on the StatefulSet hashes what the instance's own spec puts into the pod.
const annotationPodInputs = "myaas.io/pod-inputs"

// reconcileStatefulSet creates the StatefulSet whose volume is cloned from the revision's snapshot.
// Once it exists, its pod template changes only when the instance's own spec asks for it (its
// resources, requireSecureTransport): a new operator version, or a template edited since, restarts no running instance.
// A reset recreates it, with the operator's agent of the day.
func (r *DatabaseInstanceReconciler) reconcileStatefulSet(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst, src, params := s.inst, s.src, s.params
	want := builder.InstanceStatefulSet(inst, params)
	inputs := podInputsHash(inst)
	want.Annotations = map[string]string{annotationPodInputs: inputs}
	have := &appsv1.StatefulSet{}
	err := getChild(ctx, r.Client, r.reader(), client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		if wait, err := r.waitForCloneBound(ctx, s); err != nil || wait {
			return stop(0), err
		}
		if err := r.Patch(ctx, want, client.Apply, fieldOwner, client.ForceOwnership); err != nil {
			return nil, fmt.Errorf("create StatefulSet %s: %w", want.Name, err)
		}
		inst.Status.AgentSHA256 = r.AgentSHA256
		if params.AgentInVolume {
			inst.Status.AgentSHA256 = src.revision.AgentSHA256
		}
		s.statefulSet = want
	case err != nil:
		return nil, fmt.Errorf("get StatefulSet %s: %w", want.Name, err)
	case ownershipOf(have, inst, instanceKind) != owned:
		return r.waitForPreviousInstance(s, "StatefulSet "+want.Name)
	case have.Annotations[annotationPodInputs] != inputs && have.Annotations[annotationPodInputs] != "":
		// The user changed the instance's resources: a restart is what they asked for.
		if err := r.Patch(ctx, want, client.Apply, fieldOwner, client.ForceOwnership); err != nil {
			return nil, fmt.Errorf("apply StatefulSet %s: %w", want.Name, err)
		}
		inst.Status.AgentSHA256 = agentOf(want, src.revision.AgentSHA256, r.AgentSHA256)
		s.statefulSet = want
	default:
		// A StatefulSet made before the inputs were recorded gets them without a restart.
		if err := r.scale(ctx, have, *want.Spec.Replicas, inputs); err != nil {
			return nil, err
		}
		if inst.Status.AgentSHA256 == "" {
			inst.Status.AgentSHA256 = agentOf(have, src.revision.AgentSHA256, "")
		}
		s.statefulSet = have
	}
	inst.Status.Agent = myaasv1.AgentOutdated
	if inst.Status.AgentSHA256 == r.AgentSHA256 {
		inst.Status.Agent = myaasv1.AgentCurrent
	}
	return nil, nil
}

// scale sets the replicas (suspend and resume) and the recorded pod inputs without touching the
// pod template.
func (r *DatabaseInstanceReconciler) scale(ctx context.Context, sts *appsv1.StatefulSet, replicas int32, inputs string) error {
	if sts.Spec.Replicas != nil && *sts.Spec.Replicas == replicas && sts.Annotations[annotationPodInputs] == inputs {
		return nil
	}
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}},"spec":{"replicas":%d}}`, annotationPodInputs, inputs, replicas))
	if err := r.Patch(ctx, sts, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("scale StatefulSet %s to %d: %w", sts.Name, replicas, err)
	}
	return nil
}

// agentOf is the agent a StatefulSet's pod runs: the revision's kept copy when it starts from the
// volume, else the copy its init container installs, which is the manager's of the day.
func agentOf(sts *appsv1.StatefulSet, revisionAgent, managerAgent string) string {
	if len(sts.Spec.Template.Spec.InitContainers) == 0 {
		return revisionAgent
	}
	return managerAgent
}

// podInputsHash identifies what the instance's own spec puts into its pod: its resources and
// whether it requires TLS.
func podInputsHash(inst *myaasv1.DatabaseInstance) string {
	b, _ := json.Marshal(inst.Spec.Resources) // plain fields always marshal
	if inst.Spec.RequireSecureTransport {
		// Appended only when set, so the hash of every instance that does not ask is unchanged.
		b = append(b, "|require-secure-transport"...)
	}
	if privs := inst.Spec.ExtraPrivileges; len(privs) > 0 {
		// Only when set, so that the hash of every instance made before them stays the same.
		p, _ := json.Marshal(privs)
		b = append(b, p...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
