package controllers

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
	"github.com/myaas/myaas/internal/engine"
)

// podAgents plays the servers of many pods at once, as their agents run them: a pod's server
// takes the password of the credentials Secret the pod mounts (the kubelet refreshes it, the
// agent applies it), and a login is checked against that. Logins go to "<pod>:<port>".
type podAgents struct {
	mu sync.Mutex
	// breakFirstMember makes the server of the first pool member to be logged in to refuse
	// every login, for good; broken names its pod.
	breakFirstMember bool
	broken           string
}

func (a *podAgents) address(pod *corev1.Pod, port int32) string {
	return net.JoinHostPort(pod.Namespace+"."+pod.Name, strconv.Itoa(int(port)))
}

func (a *podAgents) Verify(ctx context.Context, _ engine.Engine, l engine.Login) error {
	host, _, err := net.SplitHostPort(l.Addr)
	if err != nil {
		return err
	}
	ns, podName, _ := strings.Cut(host, ".")
	a.mu.Lock()
	if a.breakFirstMember && a.broken == "" && strings.HasPrefix(podName, builder.PoolMemberPrefix("shop")) {
		a.broken = podName
	}
	broken := a.broken == podName
	a.mu.Unlock()
	if broken {
		return errors.New("access denied: the server refuses every login")
	}
	pod := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: podName}, pod); err != nil {
		return fmt.Errorf("no server: %w", err)
	}
	secret := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: mountedCredentials(pod)}, secret); err != nil {
		return fmt.Errorf("no credentials mounted: %w", err)
	}
	if string(secret.Data[agentapi.SecretKeyPassword]) != l.Password {
		return fmt.Errorf("access denied for user %s", l.Username)
	}
	return nil
}

func (a *podAgents) ClientSessions(context.Context, engine.Engine, engine.Login) (int, error) {
	return 0, nil
}

// mountedCredentials is the credentials Secret a database pod mounts.
func mountedCredentials(pod *corev1.Pod) string {
	return builder.CredentialsSecretName(pod.Labels[myaasv1.LabelInstance])
}

// playStatefulSetPods plays the CSI provisioner, the StatefulSet controller and the kubelet for
// every instance in ns until the test ends: clones and copies are bound and each StatefulSet gets
// its running, Ready pod.
func playStatefulSetPods(t *testing.T, ns string) {
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			bindClaims(ctx, ns)
			list := &appsv1.StatefulSetList{}
			if err := k8s.List(ctx, list, client.InNamespace(ns)); err == nil {
				for i := range list.Items {
					playPodOf(ctx, &list.Items[i])
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
}

// bindClaims reports bound the claims in ns that a CSI provisioner makes without a pod: the
// instances' clones and the copies of a revision on a named node. A template's own volume is
// bound by the test that plays its import.
func bindClaims(ctx context.Context, ns string) {
	claims := &corev1.PersistentVolumeClaimList{}
	if err := k8s.List(ctx, claims, client.InNamespace(ns)); err != nil {
		return
	}
	for i := range claims.Items {
		c := &claims.Items[i]
		provisionedAlone := c.Labels[myaasv1.LabelInstance] != "" || c.Annotations[builder.AnnotationSelectedNode] != ""
		if provisionedAlone && c.Status.Phase != corev1.ClaimBound {
			c.Status.Phase = corev1.ClaimBound
			_ = k8s.Status().Update(ctx, c)
		}
	}
}

func playPodOf(ctx context.Context, sts *appsv1.StatefulSet) {
	if !sts.DeletionTimestamp.IsZero() {
		return // the StatefulSet controller makes no pod for a StatefulSet being deleted
	}
	name := sts.Name + "-0"
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: sts.Namespace, Name: name}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
		return
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: sts.Namespace, Name: name, Labels: sts.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(sts, appsv1.SchemeGroupVersion.WithKind("StatefulSet"))}},
		Spec: *sts.Spec.Template.Spec.DeepCopy(),
	}
	// The scheduler binds a pod pinned to a node by name to that node.
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, f := range term.MatchFields {
				if f.Key == "metadata.name" && len(f.Values) == 1 {
					pod.Spec.NodeName = f.Values[0]
				}
			}
		}
	}
	for _, claim := range sts.Spec.VolumeClaimTemplates {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: claim.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: fmt.Sprintf("%s-%s", claim.Name, name)},
		}})
	}
	if err := k8s.Create(ctx, pod); err != nil {
		log.Printf("play pod %s: %v", name, err)
		return
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = "127.0.0.1"
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: builder.DatabaseContainer, Image: pod.Spec.Containers[0].Image, ImageID: "sha256:0",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	_ = k8s.Status().Update(ctx, pod)
}

func startPoolManager(t *testing.T) *podAgents {
	t.Helper()
	agents := &podAgents{}
	startManager(t, Options{Address: agents.address, Verifier: agents, Sessions: agents})
	return agents
}

// poolNamespace is a namespace whose StatefulSets get pods, with template "shop" keeping a
// warm pool of size members of its revision 1, or of revision 2 with twoRevisions.
func poolNamespace(t *testing.T, size int32, twoRevisions bool) string {
	t.Helper()
	ns := newNamespace(t)
	playStatefulSetPods(t, ns)
	newPoolTemplate(t, ns, size)
	importRevision(t, ns, "shop", 1)
	latest := int32(1)
	if twoRevisions {
		requestRefresh(t, ns, "shop", "nightly")
		importRevision(t, ns, "shop", 2)
		latest = 2
	}
	waitForPool(t, ns, "shop", size, latest)
	return ns
}

// newPoolTemplate creates template "shop" keeping a warm pool of size members.
func newPoolTemplate(t *testing.T, ns string, size int32) {
	t.Helper()
	newTemplate(t, ns, "shop", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.WarmPool = &myaasv1.WarmPoolSpec{Size: size}
		d.Spec.RetainRevisions = 2
	})
	// envtest runs no garbage collector: the pool and its instances are deleted here, so that
	// the managers of later tests do not keep reconciling them.
	t.Cleanup(func() {
		_ = k8s.Delete(bg, &myaasv1.DatabaseTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"}})
		_ = k8s.DeleteAllOf(bg, &myaasv1.DatabaseInstance{}, client.InNamespace(ns))
	})
}

func waitForPool(t *testing.T, ns, template string, ready int32, revision int32) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("a warm pool of %d ready members of revision %d", ready, revision), func() error {
		p := getTemplate(t, ns, template).Status.WarmPool
		if p == nil || p.Ready != ready || p.Revision != revision {
			list := &myaasv1.DatabaseInstanceList{}
			_ = k8s.List(bg, list, client.InNamespace(ns), client.MatchingLabels(builder.PoolMemberLabels(template)))
			var states []string
			for _, m := range list.Items {
				c := metaCondition(m.Status.Conditions, myaasv1.ConditionReady)
				states = append(states, fmt.Sprintf("%s: %s %+v", m.Name, m.Status.Phase, c))
			}
			return fmt.Errorf("warm pool status %+v; members %v", p, states)
		}
		return nil
	})
}

func readyInstance(t *testing.T, ns, name string) *myaasv1.DatabaseInstance {
	t.Helper()
	var inst *myaasv1.DatabaseInstance
	eventually(t, 60*time.Second, name+" Ready", func() error {
		inst = getInstance(t, ns, name)
		if inst.Status.Phase != myaasv1.InstanceReady {
			c := metaCondition(inst.Status.Conditions, myaasv1.ConditionReady)
			return fmt.Errorf("phase %s, condition %+v", inst.Status.Phase, c)
		}
		return nil
	})
	return inst
}

func TestWarmPoolClaimsAreRaceFreeAndGiveFreshCredentials(t *testing.T) {
	requireEnv(t)
	startPoolManager(t)
	ns := poolNamespace(t, 20, false)
	temporary := map[string]string{}
	members := &myaasv1.DatabaseInstanceList{}
	if err := k8s.List(bg, members, client.InNamespace(ns), client.MatchingLabels(builder.PoolMemberLabels("shop"))); err != nil {
		t.Fatal(err)
	}
	for _, m := range members.Items {
		temporary[m.Name] = credentials(t, ns, m.Name)["password"]
	}

	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			newInstance(t, ns, fmt.Sprintf("ci-%d", i), "shop")
		}()
	}
	wg.Wait()

	claimedBy := map[string]string{}
	for i := range 20 {
		name := fmt.Sprintf("ci-%d", i)
		inst := readyInstance(t, ns, name)
		p := inst.Status.Provisioning
		if p == nil || p.Path != myaasv1.ProvisionedFromPool || p.PoolMember == "" {
			t.Fatalf("%s: provisioning %+v, want a claim from the warm pool of 20", name, p)
		}
		if other, taken := claimedBy[p.PoolMember]; taken {
			t.Fatalf("member %s was handed out twice: to %s and to %s", p.PoolMember, other, name)
		}
		claimedBy[p.PoolMember] = name
		member := getInstance(t, ns, p.PoolMember)
		if ref := metav1.GetControllerOf(member); ref == nil || ref.UID != inst.UID {
			t.Fatalf("member %s is controlled by %+v, not by %s", p.PoolMember, ref, name)
		}
		if member.Labels[myaasv1.LabelPoolState] != myaasv1.PoolClaimed {
			t.Fatalf("member %s: labels %v", p.PoolMember, member.Labels)
		}
		own := credentials(t, ns, name)
		if own["password"] == temporary[p.PoolMember] || own["password"] == "" {
			t.Fatalf("%s kept the pool's temporary password", name)
		}
		if !strings.Contains(own["uri"], name+"."+ns+".svc") {
			t.Fatalf("%s: uri %q does not name the instance's own Service", name, redactIn(own["uri"], own))
		}
		svc := &corev1.Service{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
			t.Fatalf("%s has no Service of its own: %v", name, err)
		}
		if svc.Spec.Selector[myaasv1.LabelInstance] != p.PoolMember {
			t.Fatalf("Service %s selects %v, not the pod of member %s", name, svc.Spec.Selector, p.PoolMember)
		}
		// The member's server now takes only the instance's password.
		if secretData(t, ns, builder.CredentialsSecretName(p.PoolMember))["password"] != own["password"] {
			t.Fatalf("member %s's server was not given %s's password", p.PoolMember, name)
		}
	}
	// The pool refills behind the claims.
	waitForPool(t, ns, "shop", 20, 1)
}

func TestWarmPoolRollsToANewRevisionWhileClaimsHappen(t *testing.T) {
	requireEnv(t)
	startPoolManager(t)
	ns := poolNamespace(t, 3, false)

	claims := make(chan string)
	go func() {
		defer close(claims)
		for i := range 6 {
			name := fmt.Sprintf("dev-%d", i)
			newInstance(t, ns, name, "shop")
			claims <- name
			time.Sleep(300 * time.Millisecond)
		}
	}()
	requestRefresh(t, ns, "shop", "nightly")
	importRevision(t, ns, "shop", 2)
	var names []string
	for name := range claims {
		names = append(names, name)
	}
	waitForPool(t, ns, "shop", 3, 2)
	for _, name := range names {
		inst := readyInstance(t, ns, name)
		p := inst.Status.Provisioning
		if p.Path == myaasv1.ProvisionedFromPool {
			member := getInstance(t, ns, p.PoolMember)
			if !member.DeletionTimestamp.IsZero() || *member.Spec.Revision != inst.Status.Revision {
				t.Fatalf("%s's member %s was touched by the roll: revision %d, deleting %v", name, p.PoolMember, *member.Spec.Revision, member.DeletionTimestamp)
			}
		}
	}
	// Every unclaimed member is of the new revision; every claimed one still serves its instance.
	list := &myaasv1.DatabaseInstanceList{}
	if err := k8s.List(bg, list, client.InNamespace(ns), client.MatchingLabels(builder.PoolMemberLabels("shop"))); err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Items {
		if m.DeletionTimestamp.IsZero() && *m.Spec.Revision != 2 {
			t.Fatalf("unclaimed member %s is still of revision %d after the roll", m.Name, *m.Spec.Revision)
		}
	}
	// An instance made now gets the new revision from the pool.
	newInstance(t, ns, "after", "shop")
	if got := readyInstance(t, ns, "after"); got.Status.Revision != 2 || got.Status.Provisioning.Path != myaasv1.ProvisionedFromPool {
		t.Fatalf("after the roll: revision %d, provisioning %+v", got.Status.Revision, got.Status.Provisioning)
	}
}

func TestWarmPoolMemberThatFailsVerificationIsReplacedNeverHandedOut(t *testing.T) {
	requireEnv(t)
	agents := startPoolManager(t)
	ns := newNamespace(t)
	playStatefulSetPods(t, ns)
	agents.mu.Lock()
	agents.breakFirstMember = true
	agents.mu.Unlock()
	newPoolTemplate(t, ns, 2)
	importRevision(t, ns, "shop", 1)
	var broken string
	eventually(t, 30*time.Second, "a member's server broken", func() error {
		agents.mu.Lock()
		defer agents.mu.Unlock()
		broken = strings.TrimSuffix(agents.broken, "-0")
		if broken == "" {
			return errors.New("no member logged in to yet")
		}
		return nil
	})

	// Claims made while the broken member waits for its login never get it.
	for i := range 3 {
		name := fmt.Sprintf("dev-%d", i)
		newInstance(t, ns, name, "shop")
		inst := readyInstance(t, ns, name)
		if p := inst.Status.Provisioning; p.PoolMember == broken {
			t.Fatalf("%s was handed the member that fails verification", name)
		}
	}
	eventually(t, 60*time.Second, "the broken member replaced", func() error {
		m := &myaasv1.DatabaseInstance{}
		err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: broken}, m)
		if apierrors.IsNotFound(err) || (err == nil && !m.DeletionTimestamp.IsZero()) {
			return nil
		}
		return fmt.Errorf("member %s still there: %w %+v", broken, err, m.Status.Conditions)
	})
	waitForEvent(t, ns, "shop", EventPoolMemberReplaced)
	waitForPool(t, ns, "shop", 2, 1)
}

func TestInstanceOutsideWhatThePoolHoldsTakesTheColdPathAndSaysWhy(t *testing.T) {
	requireEnv(t)
	startPoolManager(t)
	ns := poolNamespace(t, 1, true)

	newInstance(t, ns, "pinned", "shop", func(i *myaasv1.DatabaseInstance) { i.Spec.Revision = ptrInt32(1) })
	inst := readyInstance(t, ns, "pinned")
	if p := inst.Status.Provisioning; p == nil || p.Path != myaasv1.ProvisionedCold || !strings.Contains(p.Reason, "revision 1") {
		t.Fatalf("pinned to revision 1: provisioning %+v, want Cold naming the revision", p)
	}
	if inst.Status.Revision != 1 {
		t.Fatalf("pinned instance runs revision %d", inst.Status.Revision)
	}
}
