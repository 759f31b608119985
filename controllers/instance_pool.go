package controllers

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
)

// claimPollInterval paces the logins after a claim: the member's server is running already and
// only has to take the instance's passwords, so every poll saved shows in the time to Ready.
const claimPollInterval = 50 * time.Millisecond

// reconcilePool decides, once, how a new instance gets its server: by claiming a running,
// verified member of its template's warm pool, or by cloning and starting its own (the steps
// after this one). A claimed instance is served here, and its pass ends here.
func (r *DatabaseInstanceReconciler) reconcilePool(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	if inst.Labels[myaasv1.LabelPool] != "" {
		return nil, nil // a member runs its own server, claimed or not
	}
	if inst.Status.Provisioning == nil {
		p, err := r.choosePath(ctx, s)
		if err != nil {
			return nil, err
		}
		inst.Status.Provisioning = p
	}
	if inst.Status.Provisioning.Path != myaasv1.ProvisionedFromPool {
		return nil, nil
	}
	return r.serveFromMember(ctx, s)
}

// choosePath claims a pool member when the instance asks for what the pool holds, else records
// why it takes the cold path.
func (r *DatabaseInstanceReconciler) choosePath(ctx context.Context, s *instancePass) (*myaasv1.Provisioning, error) {
	inst, t := s.inst, s.src.template
	cold := func(reason string) (*myaasv1.Provisioning, error) {
		return &myaasv1.Provisioning{Path: myaasv1.ProvisionedCold, Reason: reason}, nil
	}
	if t.Spec.WarmPool == nil || t.Spec.WarmPool.Size == 0 {
		return cold("")
	}
	if inst.Status.AgentSHA256 != "" || inst.Status.ReadyAt != nil {
		return cold("the instance was cloned before its template had a warm pool")
	}
	if reason := unclaimable(inst, t); reason != "" {
		return cold(reason)
	}
	m, err := r.claimMember(ctx, s)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return cold(fmt.Sprintf("the warm pool had no verified member of revision %d free", t.Status.LatestRevision))
	}
	s.member = m
	r.Recorder.Eventf(inst, corev1.EventTypeNormal, EventClaimed, "Claimed %s from the warm pool of %s (revision %d)", m.Name, t.Name, *m.Spec.Revision)
	return &myaasv1.Provisioning{Path: myaasv1.ProvisionedFromPool, PoolMember: m.Name}, nil
}

// unclaimable says why a pool member cannot serve inst: a member has the instance defaults and
// the latest revision, and lives in the template's namespace. "" when one can.
func unclaimable(inst *myaasv1.DatabaseInstance, t *myaasv1.DatabaseTemplate) string {
	spec := inst.Spec
	switch {
	case inst.CrossNamespace():
		return "the warm pool serves only the template's own namespace"
	case inst.Status.Revision != t.Status.LatestRevision:
		return fmt.Sprintf("spec.revision asks for revision %d, the warm pool holds the latest, %d", inst.Status.Revision, t.Status.LatestRevision)
	case len(spec.Resources.Limits) > 0 || len(spec.Resources.Requests) > 0:
		return "spec.resources differ from the warm pool's defaults"
	case orDefault(spec.Username, myaasv1.DefaultUsername) != orDefault(t.Spec.WarmPool.Username, myaasv1.DefaultUsername):
		return fmt.Sprintf("spec.username %q differs from the warm pool's %q", spec.Username, t.Spec.WarmPool.Username)
	case orDefault(spec.Database, myaasv1.DefaultDatabase) != orDefault(t.Spec.WarmPool.Database, myaasv1.DefaultDatabase):
		return fmt.Sprintf("spec.database %q differs from the warm pool's %q", spec.Database, t.Spec.WarmPool.Database)
	case len(spec.ExtraPrivileges) > 0:
		return "spec.extraPrivileges are set; the warm pool's members have none"
	case spec.RequireSecureTransport:
		return "spec.requireSecureTransport is set; the warm pool's servers do not require it"
	case spec.TLS != nil && spec.TLS.IssuerRef != nil:
		return "spec.tls.issuerRef names an issuer; the warm pool's certificates come from the namespace's CA"
	case spec.Idle != nil:
		return "spec.idle is set"
	case spec.Network != nil && len(spec.Network.AllowFrom) > 0:
		return "spec.network.allowFrom is set; the warm pool's members have the default NetworkPolicy"
	case spec.Suspend:
		return "spec.suspend is set"
	}
	return ""
}

// claimMember takes a verified member of the latest revision for inst. The update carries the
// member's resource version: of instances racing for one member, exactly one update succeeds, and
// the others try the next member. A claim whose status write was lost is found again by its label.
func (r *DatabaseInstanceReconciler) claimMember(ctx context.Context, s *instancePass) (*myaasv1.DatabaseInstance, error) {
	inst, t := s.inst, s.src.template
	mine := &myaasv1.DatabaseInstanceList{}
	if err := r.reader().List(ctx, mine, client.InNamespace(inst.Namespace),
		client.MatchingLabels{myaasv1.LabelPool: t.Name, myaasv1.LabelClaimedByUID: string(inst.UID)}); err != nil {
		return nil, fmt.Errorf("look for a member already claimed: %w", err)
	}
	if len(mine.Items) > 0 {
		return &mine.Items[0], nil
	}
	free := &myaasv1.DatabaseInstanceList{}
	if err := r.List(ctx, free, client.InNamespace(inst.Namespace), client.MatchingLabels(builder.PoolMemberLabels(t.Name))); err != nil {
		return nil, fmt.Errorf("list the warm pool of %s: %w", t.Name, err)
	}
	var candidates []*myaasv1.DatabaseInstance
	for i := range free.Items {
		m := &free.Items[i]
		ref := metav1.GetControllerOfNoCopy(m)
		if ref != nil && ref.UID == t.UID && m.DeletionTimestamp.IsZero() && m.Spec.Revision != nil &&
			*m.Spec.Revision == t.Status.LatestRevision && poolMemberReady(m) &&
			m.Spec.Username == inst.Spec.Username && m.Spec.Database == inst.Spec.Database {
			candidates = append(candidates, m)
		}
	}
	// Racing instances start at different members, so that most first tries succeed.
	start := 0
	if n := len(candidates); n > 0 {
		h := fnv.New32a()
		_, _ = h.Write([]byte(inst.UID))
		start = int(h.Sum32() % uint32(n))
	}
	for i := range candidates {
		m := candidates[(start+i)%len(candidates)].DeepCopy()
		m.Labels[myaasv1.LabelPoolState] = myaasv1.PoolClaimed
		m.Labels[myaasv1.LabelClaimedByUID] = string(inst.UID)
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[myaasv1.AnnotationClaimedBy] = inst.Name
		m.Annotations[myaasv1.AnnotationClaimedAt] = r.Clock.Now().UTC().Format(time.RFC3339Nano)
		// The instance owns the member from now on: deleting it deletes the member, and the
		// template's pool no longer counts it.
		m.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(inst, myaasv1.GroupVersion.WithKind(instanceKind))}
		err := r.Update(ctx, m)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			continue // claimed by another instance, or replaced, a moment ago
		}
		if err != nil {
			return nil, fmt.Errorf("claim warm pool member %s: %w", m.Name, err)
		}
		return m, nil
	}
	return nil, nil
}

// serveFromMember makes a claimed member the instance's server: the instance's own Secret with
// fresh passwords, which the member's server takes in place of its temporary ones, and the
// instance's own Service, leading to the member's pod. Ready means what it means on the cold
// path: the operator logged in with the Secret's credentials through the instance's Service.
func (r *DatabaseInstanceReconciler) serveFromMember(ctx context.Context, s *instancePass) (*ctrl.Result, error) {
	inst := s.inst
	name := inst.Status.Provisioning.PoolMember
	member, err := r.claimedMember(ctx, s)
	if apierrors.IsNotFound(err) || (err == nil && !ownedBy(member, inst)) {
		// Deleted under it: the instance starts over, with a claim or a clone of its own.
		r.Recorder.Eventf(inst, corev1.EventTypeWarning, EventResetStarted, "Warm pool member %s is gone: provisioning again", name)
		forgetData(inst)
		return stop(time.Millisecond), nil
	}
	if err != nil {
		return nil, fmt.Errorf("get claimed member %s: %w", name, err)
	}
	// The member's server is the instance's: so is its node.
	inst.Status.Node = member.Status.Node
	r.placements.forget(inst.UID)
	if member.Spec.Suspend != inst.Spec.Suspend {
		patch := []byte(fmt.Sprintf(`{"spec":{"suspend":%t}}`, inst.Spec.Suspend))
		if err := r.Patch(ctx, member, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return nil, fmt.Errorf("pass spec.suspend on to member %s: %w", name, err)
		}
	}
	// The Service first: kube-proxy routes it while the password changes hands.
	if res, err := r.checkServiceType(s); res != nil || err != nil {
		return res, err
	}
	svc := builder.ClaimedInstanceService(inst, member, s.src.engine)
	have := &corev1.Service{}
	if err := r.Get(ctx, client.ObjectKeyFromObject(svc), have); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("get Service %s: %w", svc.Name, err)
	}
	if err := r.applyService(ctx, svc, have); err != nil {
		return nil, err
	}
	ca, res, err := r.namespaceCA(ctx, inst)
	if res != nil || err != nil {
		return res, err
	}
	s.tlsCA = ca.CertPEM
	if res, err := r.reconcileSecret(ctx, s); res != nil || err != nil {
		return res, err
	}
	pod := &corev1.Pod{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: member.Namespace, Name: builder.InstancePodName(member.Name)}, pod); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("get the pod of member %s: %w", member.Name, err)
	} else if err != nil {
		pod = nil // the member's own reconcile brings its pod back
	}
	if err := r.giveMemberThePassword(ctx, s, member, pod); err != nil {
		return nil, err
	}
	inst.Status.Endpoint = &myaasv1.Endpoint{Host: builder.ServiceHost(inst), Port: s.src.engine.Port()}
	inst.Status.AgentSHA256, inst.Status.Agent = member.Status.AgentSHA256, member.Status.Agent
	return r.claimedReadiness(ctx, s, member, pod, svc)
}

// claimedMember is the member the instance claimed: as the claim wrote it in this pass, else from
// the cache, or from the API server where the cache does not show the claim yet.
func (r *DatabaseInstanceReconciler) claimedMember(ctx context.Context, s *instancePass) (*myaasv1.DatabaseInstance, error) {
	if s.member != nil {
		return s.member, nil
	}
	key := client.ObjectKey{Namespace: s.inst.Namespace, Name: s.inst.Status.Provisioning.PoolMember}
	member := &myaasv1.DatabaseInstance{}
	if err := r.Get(ctx, key, member); err == nil && ownedBy(member, s.inst) {
		return member, nil
	} else if client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("get claimed member %s: %w", key.Name, err)
	}
	err := r.reader().Get(ctx, key, member)
	return member, err
}

// giveMemberThePassword gives the member's server the instance's password, and revokes the
// pool's temporary one: the operator logs in as the member's user with the temporary password
// and changes it, which takes effect at once, where the Secret the member's pod mounts reaches
// the server only when the kubelet next refreshes it. That Secret then gets the password too, so
// that the agent keeps it across restarts. Should the change fail (the member's server down, or
// a change whose Secret write was lost), the Secret alone still brings the password, later.
func (r *DatabaseInstanceReconciler) giveMemberThePassword(ctx context.Context, s *instancePass, member *myaasv1.DatabaseInstance, pod *corev1.Pod) error {
	mounted := &corev1.Secret{}
	key := client.ObjectKey{Namespace: member.Namespace, Name: builder.CredentialsSecretName(member.Name)}
	if err := r.Get(ctx, key, mounted); err != nil {
		return fmt.Errorf("get Secret %s of claimed member %s: %w", key.Name, member.Name, err)
	}
	want := s.secret.Data[agentapi.SecretKeyPassword]
	if string(mounted.Data[agentapi.SecretKeyPassword]) == string(want) {
		return nil
	}
	if pod != nil {
		// Straight to the pod: the instance's new Service may not be routed yet.
		addr := r.podAddress(pod, s.src.engine.Port())
		tlsConfig := serverTLS(s).Clone()
		tlsConfig.ServerName = builder.ServiceHost(member)
		temporary := loginWith(mounted, addr, tlsConfig)
		if err := s.src.engine.ChangeOwnPassword(ctx, temporary, string(want)); err != nil {
			log.FromContext(ctx).Info("the member's password is left to its Secret", "member", member.Name, "error", err.Error())
		}
	}
	mounted.Data[agentapi.SecretKeyPassword] = want
	if err := r.Update(ctx, mounted); err != nil {
		return fmt.Errorf("give claimed member %s the instance's password: %w", member.Name, err)
	}
	return nil
}

// claimedReadiness logs in through the instance's Service with its Secret's credentials, which
// succeeds once the member's server has taken them and its certificate names the instance.
func (r *DatabaseInstanceReconciler) claimedReadiness(ctx context.Context, s *instancePass, member *myaasv1.DatabaseInstance, pod *corev1.Pod, svc *corev1.Service) (*ctrl.Result, error) {
	inst, src := s.inst, s.src
	if inst.Spec.Suspend {
		inst.Status.Phase = myaasv1.InstanceSuspended
		setCondition(&inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonSuspended,
			"spec.suspend is true: the server is stopped and the data kept")
		return stop(0), nil
	}
	if ready := meta.FindStatusCondition(member.Status.Conditions, myaasv1.ConditionReady); inst.Status.ReadyAt != nil && (ready == nil || ready.Status != metav1.ConditionTrue) {
		// The member's server restarts, say: the instance shows why, and the member's own
		// reconcile, which watches its pod, brings it back (the instance is told).
		inst.Status.Phase = member.Status.Phase
		reason, msg := myaasv1.ReasonStarting, "the server is starting"
		if ready != nil {
			reason, msg = ready.Reason, ready.Message
		}
		setCondition(&inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, reason,
			fmt.Sprintf("warm pool member %s: %s", member.Name, msg))
		return stop(0), nil
	}
	if pod == nil {
		return stop(0), nil // the member's pod comes back through the member's reconcile, which wakes this one
	}
	// The Service as applied in this pass: the cache may not show one made a moment ago.
	addr := r.addressVia(svc, pod, src.engine.Port())
	secret := s.secret
	login := loginWith(secret, addr, serverTLS(s))
	claimedAt := inst.CreationTimestamp.Time
	if inst.Status.ProvisioningStartedAt != nil {
		claimedAt = inst.Status.ProvisioningStartedAt.Time
	}
	if inst.Status.ReadyAt == nil {
		// The member's server runs and answers at once; what may not be there yet is the route
		// of the instance's new Service, and a SYN sent before it is dropped, not refused.
		login.DialTimeout = startingDialTimeout(r.Clock.Since(claimedAt))
	}
	if err := r.Verifier.Verify(ctx, src.engine, login); err != nil {
		if r.Clock.Since(claimedAt) < credentialsApplyGrace || inst.Status.ReadyAt != nil && r.Clock.Since(credentialsRequestedAt(pod)) < credentialsApplyGrace {
			inst.Status.Phase = myaasv1.InstanceStarting
			setCondition(&inst.Status.Conditions, inst.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonApplyingCredentials,
				fmt.Sprintf("warm pool member %s is taking the passwords of Secret %s", member.Name, secret.Name))
			return stop(claimPollInterval), nil
		}
		return r.loginFailed(inst, "warm pool member "+member.Name, err), nil
	}
	s.serverAddr = addr
	r.markReady(s, fmt.Sprintf("logged in as %s to revision %d of %s, served by warm pool member %s",
		login.Username, src.revision.Revision, src.template.Name, member.Name))
	return stop(0), nil
}
