package controllers

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
	"github.com/myaas/myaas/internal/engine"
)

// CredentialVerifier logs in to a database server.
type CredentialVerifier interface {
	// l.TLS, unless nil, is the TLS the login must use.
	Verify(ctx context.Context, eng engine.Engine, l engine.Login) error
}

// EngineLogin logs in with the engine's own client driver, as the instance's clients do.
type EngineLogin struct{}

// Verify implements CredentialVerifier.
func (EngineLogin) Verify(ctx context.Context, eng engine.Engine, l engine.Login) error {
	return eng.Login(ctx, l)
}

// PodAddress reaches the server on the pod's IP.
func PodAddress(pod *corev1.Pod, port int32) string {
	return net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port)))
}

// serverAddress is where the login that makes an instance Ready goes: the Service's cluster IP,
// the path clients take, so that Ready is not announced before kube-proxy routes the Service to
// the new pod. That address works from a manager in the cluster and from one on a node. A
// Service without a cluster IP leaves the pod's own address.
func (r *DatabaseInstanceReconciler) serverAddress(ctx context.Context, inst *myaasv1.DatabaseInstance, pod *corev1.Pod, port int32) (string, error) {
	if r.Address != nil {
		return r.podAddress(pod, port), nil
	}
	svc := &corev1.Service{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: inst.Name}, svc); err != nil {
		return "", fmt.Errorf("get Service %s: %w", inst.Name, err)
	}
	return r.addressVia(svc, pod, port), nil
}

// addressVia is where a login through svc to pod's server goes: the Service's cluster IP, or the
// pod's own address for a Service without one.
func (r *DatabaseInstanceReconciler) addressVia(svc *corev1.Service, pod *corev1.Pod, port int32) string {
	if ip := svc.Spec.ClusterIP; r.Address == nil && ip != "" && ip != corev1.ClusterIPNone {
		return net.JoinHostPort(ip, strconv.Itoa(int(port)))
	}
	return r.podAddress(pod, port)
}

// podAddress is the pod's own address for its server (r.Address, where set).
func (r *DatabaseInstanceReconciler) podAddress(pod *corev1.Pod, port int32) string {
	if r.Address != nil {
		return r.Address(pod, port)
	}
	return PodAddress(pod, port)
}

// annotationCredentialsVersion on the instance's pod is the version of the Secret the pod was
// last told about. Changing it makes the kubelet sync the pod at once, which refreshes the mounted
// Secret; the agent in the pod then gives the running server the Secret's passwords.
const annotationCredentialsVersion = "myaas.io/credentials-version"

// annotationCredentialsRequestedAt is when the pod was told: the grace for applying counts from it.
const annotationCredentialsRequestedAt = "myaas.io/credentials-requested-at"

func credentialsRequestedAt(pod *corev1.Pod) time.Time {
	t, _ := time.Parse(time.RFC3339, pod.Annotations[annotationCredentialsRequestedAt]) // zero when absent
	return t
}

// reconcileReadiness reports Ready only after logging in with the Secret's credentials: a Ready
// pod proves the server runs, a login proves the instance is usable as its Secret says.
func (r *DatabaseInstanceReconciler) reconcileReadiness(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst, src := s.inst, s.src
	notReady := func(phase myaasv1.InstancePhase, reason, msg string, again time.Duration) (*ctrl.Result, error) {
		inst.Status.Phase = phase
		setCondition(&inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, reason, msg)
		return stop(again), nil
	}
	if inst.Spec.Suspend {
		inst.Status.LastActiveAt = nil // resumed, the idle time counts from the next Ready
		return notReady(myaasv1.InstanceSuspended, myaasv1.ReasonSuspended, "spec.suspend is true: the server is stopped and the data kept", 0)
	}
	pod := &corev1.Pod{}
	err := r.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: builder.InstancePodName(inst.Name)}, pod)
	if client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("get pod: %w", err)
	}
	cloning := fmt.Sprintf("cloning revision %d (snapshot %s) and starting the server", src.revision.Revision, src.revision.SnapshotName)
	// A pod with an IP may still be Pending (an init container has just run, or the kubelet has
	// not reported its server container yet): the login tells whether the server answers.
	if err != nil || (pod.Status.Phase == corev1.PodPending && pod.Status.PodIP == "") {
		return notReady(myaasv1.InstanceCloning, myaasv1.ReasonCloning, cloning, 0)
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref == nil || s.statefulSet == nil || ref.UID != s.statefulSet.UID {
		// The pod of a deleted instance's StatefulSet, still terminating.
		return notReady(myaasv1.InstanceCloning, myaasv1.ReasonCloning, cloning, 250*time.Millisecond)
	}
	if !podReady(pod) && pod.Spec.NodeName != "" {
		// The node lifecycle controller marks the pods of a lost node not Ready; the server may
		// still answer from there, but nothing can manage it.
		if why, err := r.nodeDown(ctx, pod.Spec.NodeName); err != nil || why != "" {
			if err != nil {
				return nil, err
			}
			return r.reportNodeDown(inst, why), nil
		}
	}
	// The kubelet reports a started container and the pod's IP at its next look at the runtime,
	// up to a second later and not always together; the Service routes to the pod once its IP is
	// known. A new pod is therefore tried as soon as it has an IP, whatever the kubelet says of its
	// container: only a login with the Secret's credentials makes it Ready. An older pod is tried
	// only once its server runs, so that a server that never starts is not taken for one that
	// refuses the Secret's credentials.
	fresh := r.Clock.Since(serverStartedAt(pod)) < credentialsApplyGrace
	if pod.Status.PodIP == "" || (!fresh && !podReady(pod) && !containerRunning(pod, builder.DatabaseContainer)) {
		return notReady(myaasv1.InstanceStarting, myaasv1.ReasonStarting, "the server is starting", 0)
	}

	secret := s.secret
	addr, err := r.serverAddress(ctx, inst, pod, src.engine.Port())
	if err != nil {
		return nil, err
	}
	login := loginWith(secret, addr, serverTLS(s))
	if fresh && inst.Status.ReadyAt == nil {
		// The operator sees the pod's IP as soon as the endpoints controller does, often before
		// kube-proxy routes the Service to it, and a SYN sent then is dropped: the next poll's new
		// connection gets through sooner than the kernel's resend of the first a second later.
		login.DialTimeout = startingDialTimeout(r.Clock.Since(serverStartedAt(pod)))
	}
	if err := r.Verifier.Verify(ctx, src.engine, login); err != nil {
		switch {
		case fresh && (inst.Status.ReadyAt == nil || !podReady(pod)):
			// A new server still starting, or its Service not routed yet: trying again shortly
			// is faster than waiting for the kubelet's next probe or kube-proxy's next sync, and
			// the login is what Ready means anyway.
			return notReady(myaasv1.InstanceStarting, myaasv1.ReasonStarting, "the server is starting", startingPollInterval)
		case pod.Annotations[annotationCredentialsVersion] != secret.ResourceVersion:
			return r.followSecret(ctx, s, pod)
		case r.Clock.Since(credentialsRequestedAt(pod)) < credentialsApplyGrace:
			return stop(startingPollInterval), nil
		}
		return r.loginFailed(inst, "the server", err), nil
	}

	s.serverAddr = addr
	r.markReady(s, fmt.Sprintf("logged in as %s to revision %d of %s", login.Username, src.revision.Revision, src.template.Name))
	return nil, nil
}

// loginFailed reports that server runs but refuses the Secret's credentials.
func (r *DatabaseInstanceReconciler) loginFailed(inst *myaasv1.DatabaseInstance, server string, err error) *ctrl.Result {
	recordLoginFailure(inst)
	inst.Status.Phase = myaasv1.InstanceStarting
	setConditionAndNotify(r.Recorder, inst, &inst.Status.Conditions, inst.Generation, notice{
		condType: myaasv1.ConditionReady, status: metav1.ConditionFalse, reason: myaasv1.ReasonLoginFailed,
		message:   fmt.Sprintf("%s runs but the Secret's credentials do not work: %v", server, err),
		eventType: corev1.EventTypeWarning, event: EventLoginFailed,
	})
	return stop(time.Second)
}

// loginWith is the login the Secret's credentials make at addr.
func loginWith(secret *corev1.Secret, addr string, tlsConfig *tls.Config) engine.Login {
	return engine.Login{Addr: addr, Username: string(secret.Data[agentapi.SecretKeyUsername]), Password: string(secret.Data[agentapi.SecretKeyPassword]),
		Database: string(secret.Data[agentapi.SecretKeyDatabase]), TLS: tlsConfig}
}

// markReady records a verified login: the Ready condition saying msg, and the time to Ready of
// the current data volume.
func (r *DatabaseInstanceReconciler) markReady(s *instancePass, msg string) {
	inst, src := s.inst, s.src
	inst.Status.Phase = myaasv1.InstanceReady
	if inst.Status.ReadyAt == nil {
		now := metav1.NewTime(r.Clock.Now())
		inst.Status.ReadyAt = &now
		if start := inst.Status.ProvisioningStartedAt; start != nil {
			inst.Status.TimeToReady = &metav1.Duration{Duration: now.Sub(start.Time).Round(time.Millisecond)}
		}
		r.Recorder.Eventf(inst, corev1.EventTypeNormal, EventReady, "Revision %d of %s is ready at %s:%d", src.revision.Revision, src.template.Name, inst.Status.Endpoint.Host, inst.Status.Endpoint.Port)
	}
	setCondition(&inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonCredentialsVerified, msg)
}

// followSecret tells the pod that its Secret changed (edited, or deleted and made anew): the
// kubelet refreshes the mounted copy and the agent gives the running server the new passwords,
// without a restart.
func (r *DatabaseInstanceReconciler) followSecret(ctx context.Context, s *instancePass, pod *corev1.Pod) (*ctrl.Result, error) {
	inst, version := s.inst, s.secret.ResourceVersion
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q,%q:%q}}}`, annotationCredentialsVersion, version,
		annotationCredentialsRequestedAt, r.Clock.Now().UTC().Format(time.RFC3339)))
	if err := r.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return nil, fmt.Errorf("tell pod %s about Secret version %s: %w", pod.Name, version, err)
	}
	inst.Status.Phase = myaasv1.InstanceStarting
	setConditionAndNotify(r.Recorder, inst, &inst.Status.Conditions, inst.Generation, notice{
		condType: myaasv1.ConditionReady, status: metav1.ConditionFalse, reason: myaasv1.ReasonApplyingCredentials,
		message:   fmt.Sprintf("the server is taking the passwords of Secret %s", s.secret.Name),
		eventType: corev1.EventTypeNormal, event: EventCredentialsChanged,
	})
	return stop(startingPollInterval), nil
}

// credentialsApplyGrace is how long the kubelet and the agent get to bring the server a changed
// Secret before a failing login is reported as such.
const credentialsApplyGrace = 10 * time.Second

// startingPollInterval paces login attempts while the server starts: it starts in well under a
// second on a clone, so a coarser interval would dominate the time to Ready. A failed attempt
// costs a pass over the cache and a SYN; the status is written only when it changes.
const startingPollInterval = 50 * time.Millisecond

// startingDialTimeout bounds the connect of a new server's logins, waited after its start (or a
// claim). Until kube-proxy routes the Service to the new pod, a SYN to it gets no answer at all,
// or an ICMP error the kernel sends at most about once a second per client: every such attempt
// runs this time-out out. It starts at 50 ms, far above a SYN's round trip inside a cluster and
// far below the second a dropped SYN costs, and grows with the wait, so that a slow network
// delays Ready rather than preventing it; after credentialsApplyGrace the engine's own applies.
func startingDialTimeout(waited time.Duration) time.Duration {
	return min(max(waited/20, 50*time.Millisecond), time.Second)
}

func containerRunning(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == name {
			return c.State.Running != nil
		}
	}
	return false
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// serverStartedAt is when the server container last started, or when the pod was created.
func serverStartedAt(pod *corev1.Pod) time.Time {
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == builder.DatabaseContainer && c.State.Running != nil {
			return c.State.Running.StartedAt.Time
		}
	}
	return pod.CreationTimestamp.Time
}
