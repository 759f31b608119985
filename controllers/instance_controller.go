package controllers

import (
	"context"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlbuilder "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// fieldOwner is the server-side apply field manager of everything the operator applies.
const fieldOwner = client.FieldOwner("myaas")

// DatabaseInstanceReconciler turns an instance into a Secret, a Service and a StatefulSet whose
// volume is cloned from a template revision, and marks it Ready once it has logged in.
type DatabaseInstanceReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// AgentImage is the image holding the myaas binary, copied into every database pod.
	AgentImage string
	// AgentSHA256 identifies that binary: a revision whose volume holds the same one needs no copy.
	AgentSHA256 string
	// Verifier logs in to a running instance.
	Verifier CredentialVerifier
	// Address says where to reach a pod's server; unless set, through the instance's Service.
	Address func(pod *corev1.Pod, port int32) string
	// NewPassword makes the instance's passwords; RandomPassword unless set.
	NewPassword func() (string, error)
	// Sessions counts the client sessions on a server, for spec.idle.
	Sessions SessionCounter
	// AllowedServiceTypes an instance may ask for; nil allows every type.
	AllowedServiceTypes []corev1.ServiceType
	// APIReader reads what the cache does not hold: namespaces (for spec.sharing's selector) and
	// the snapshot controller's VolumeSnapshotContents. The client is used unless set.
	APIReader client.Reader
	// OperatorNamespace is where the manager's pods run, let into every instance by its
	// NetworkPolicy; empty when the manager runs outside the cluster.
	OperatorNamespace string
	// placements spreads instances over the nodes holding their revision.
	placements placements
}

// +kubebuilder:rbac:groups=myaas.io,resources=databaseinstances,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=myaas.io,resources=databaseinstances/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=myaas.io,resources=databaseinstances/finalizers,verbs=update
// +kubebuilder:rbac:groups=myaas.io,resources=databasetemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch

// Reconcile moves an instance one step towards Ready.
func (r *DatabaseInstanceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	inst := &myaasv1.DatabaseInstance{}
	if err := r.Get(ctx, req.NamespacedName, inst); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !inst.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owner references remove the children
	}
	before := inst.DeepCopy()
	pass := &instancePass{inst: inst}
	res, err := runSteps(ctx, pass, &pass.wakeups, r.steps())
	if err == nil && pass.deleted {
		return ctrl.Result{}, nil
	}
	inst.Status.ObservedGeneration = inst.Generation
	if perr := patchInstanceStatus(ctx, r.Client, before, inst); perr != nil && err == nil {
		err = perr
	}
	return finish(res, err)
}

// instancePass is what the steps of one reconcile of an instance share.
type instancePass struct {
	wakeups
	inst *myaasv1.DatabaseInstance
	// src is the revision the instance is cloned from, resolved by resolveRevision.
	src *revisionSource
	// secret is the instance's own credentials Secret, read by reconcileSecret.
	secret *corev1.Secret
	// adminSecret holds root's and the operator's admin account's passwords (reconcileAdminSecret).
	adminSecret *corev1.Secret
	// statefulSet is the instance's own StatefulSet, once it exists.
	statefulSet *appsv1.StatefulSet
	// serverAddr is where the server answered the login that made the instance Ready.
	serverAddr string
	// deleted: the instance expired and is gone; its status is not written.
	deleted bool
	// tlsCA is the CA of the instance's certificate, read by reconcileTLS; plainServer: the
	// server was started before the operator issued certificates and speaks no TLS.
	tlsCA       []byte
	plainServer bool
	// params describe the instance's clone and pod (reconcileCloneVolume); cloneClaim is its
	// clone's claim, as last read or made.
	params     builder.StatefulSetParams
	cloneClaim *corev1.PersistentVolumeClaim
	// member is the warm pool member the instance claimed in this pass, as the claim wrote it.
	member *myaasv1.DatabaseInstance
}

// steps is the instance's pipeline; a step that waits for something ends the pass.
func (r *DatabaseInstanceReconciler) steps() []step[*instancePass] {
	return []step[*instancePass]{
		{"expiry", r.reconcileTTL},                     // instance_ttl.go
		{"reset", r.reconcileReset},                    // instance_reset.go
		{"revision", r.resolveRevision},                // instance_revision.go
		{"warm pool", r.reconcilePool},                 // instance_pool.go
		{"shared snapshot", r.reconcileSharedSnapshot}, // instance_shared_snapshot.go
		{"clone volume", r.reconcileCloneVolume},       // instance_volume.go
		{"TLS certificate", r.reconcileTLS},            // instance_tls.go
		{"admin Secret", r.reconcileAdminSecret},       // instance_admin_secret.go
		{"credentials Secret", r.reconcileSecret},      // instance_secret.go
		{"Service", r.reconcileService},                // instance_statefulset.go
		{"NetworkPolicy", r.reconcileNetworkPolicy},    // instance_networkpolicy.go
		{"StatefulSet", r.reconcileStatefulSet},        // instance_statefulset.go
		{"readiness", r.reconcileReadiness},            // instance_ready.go
		{"idle expiry", r.reconcileIdle},               // instance_idle.go
	}
}

const instanceWorkers = 16

// SetupWithManager registers the controller and what it watches.
func (r *DatabaseInstanceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.NewPassword == nil {
		r.NewPassword = RandomPassword
	}
	byInstanceLabel := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		name := o.GetLabels()[myaasv1.LabelInstance]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&myaasv1.DatabaseInstance{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.Secret{}).
		Owns(&networkingv1.NetworkPolicy{}).
		// The pod and the clone PVC belong to the StatefulSet; their labels lead back to the instance.
		Watches(&corev1.Pod{}, byInstanceLabel).
		Watches(&corev1.PersistentVolumeClaim{}, byInstanceLabel).
		// A claimed warm pool member's state is its instance's.
		Watches(&myaasv1.DatabaseInstance{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &myaasv1.DatabaseInstance{}, handler.OnlyControllerOwner())).
		// A template that gets its first revision, or comes into existence, unblocks its instances.
		Watches(&myaasv1.DatabaseTemplate{}, handler.EnqueueRequestsFromMapFunc(r.instancesOfTemplate)).
		// A copy of another namespace's revision becoming ready lets its instances clone it.
		Watches(&snapshotv1.VolumeSnapshot{}, handler.EnqueueRequestsFromMapFunc(r.instancesOfSharedCopy),
			ctrlbuilder.WithPredicates(predicate.NewPredicateFuncs(isSharedCopy))).
		Named("databaseinstance").
		// Instances are independent and a reconcile mostly waits on the network (a login to a
		// starting server): one worker would make 20 instances applied at once wait in line.
		WithOptions(controller.Options{MaxConcurrentReconciles: instanceWorkers}).
		Complete(r)
}

func (r *DatabaseInstanceReconciler) instancesOfTemplate(ctx context.Context, o client.Object) []reconcile.Request {
	list, err := instancesOfTemplate(ctx, r.Client, o.GetNamespace(), o.GetName())
	if err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, inst := range list.Items {
		if inst.Status.Revision != 0 {
			// Cloned already: what it runs is its revision's record, not the template's state,
			// and a template's every status change (a warm pool refilling, say) would otherwise
			// queue all of its instances.
			continue
		}
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&inst)})
	}
	return reqs
}
