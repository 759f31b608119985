// Package controllers holds the reconcilers of DatabaseTemplate and DatabaseInstance. Each
// reconciler is a short list of steps; each step lives in its own file beside it.
package controllers

import (
	"context"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// templateFinalizer holds a template until its snapshots can be deleted in a safe order: no clone
// left, then the snapshot, then the volume (ZFS cannot drop a snapshot that still has clones).
const templateFinalizer = "myaas.io/revisions"

// DatabaseTemplateReconciler imports dumps into revisions: PVC → import Job → VolumeSnapshot.
type DatabaseTemplateReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// AgentImage is the image holding the myaas binary, copied into every database pod.
	AgentImage string
	// Progress reads the import agent's progress; nil disables progress reporting.
	Progress ProgressReader
	// AllowedImages are the engine images templates may run (see ImagePatterns); none allows any.
	AllowedImages []string
	// APIReader reads from the API server, bypassing the cache, where a stale read would bring
	// back deleted children, and where the object is not the operator's (the user's source PVC),
	// so not in the cache at all.
	APIReader client.Reader
	// OperatorNamespace is where the manager's pods run, let into import pods by their
	// NetworkPolicy; empty when the manager runs outside the cluster.
	OperatorNamespace string
}

// uncached reads objects the cache does not hold: the APIReader, or the client where there is none.
func (r *DatabaseTemplateReconciler) uncached() client.Reader { return liveOr(r.APIReader, r.Client) }

// +kubebuilder:rbac:groups=myaas.io,resources=databasetemplates,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=myaas.io,resources=databasetemplates/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=myaas.io,resources=databasetemplates/finalizers,verbs=update
// +kubebuilder:rbac:groups=myaas.io,resources=databaseinstances,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshots,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotclasses,verbs=get
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get

// Reconcile moves a template one step along its pipeline.
func (r *DatabaseTemplateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	t := &myaasv1.DatabaseTemplate{}
	if err := r.Get(ctx, req.NamespacedName, t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !t.DeletionTimestamp.IsZero() {
		return finish(r.reconcileDelete(ctx, t))
	}
	if controllerutil.AddFinalizer(t, templateFinalizer) {
		if err := r.Update(ctx, t); err != nil {
			return finish(ctrl.Result{}, fmt.Errorf("add finalizer: %w", err))
		}
		return ctrl.Result{}, nil
	}

	before := t.DeepCopy()
	pass := &templatePass{t: t}
	res, err := runSteps(ctx, pass, &pass.wakeups, r.steps())
	t.Status.ObservedGeneration = t.Generation
	summarizeTemplate(t)
	if perr := patchTemplateStatus(ctx, r.Client, before, t); perr != nil && err == nil {
		err = perr
	}
	return finish(res, err)
}

// templatePass is what the steps of one reconcile of a template share.
type templatePass struct {
	wakeups
	t *myaasv1.DatabaseTemplate
	// users of each revision, counted by reconcileUsage for the garbage collector.
	users revisionUsers
	// usedIn: the namespaces where each revision is in use; its copies elsewhere can go.
	usedIn revisionNamespaces
	// usedOn: the nodes where each revision is in use; its copies on the others can go once it
	// expires.
	usedOn revisionNodes
}

// steps is the template's pipeline. None of them waits: the import and the garbage collector
// make progress side by side, each asking to be called back when it has to.
func (r *DatabaseTemplateReconciler) steps() []step[*templatePass] {
	return []step[*templatePass]{
		{"refresh CronJob", r.reconcileRefreshCronJob},           // template_refresh.go
		{"revision usage", r.reconcileUsage},                     // template_gc.go
		{"shared copies", r.reconcileSharedCopies},               // template_shared.go
		{"import NetworkPolicy", r.reconcileImportNetworkPolicy}, // template_networkpolicy.go
		{"import", r.reconcileImport},                            // template_import.go, template_snapshot.go
		{"replicas", r.reconcileReplicas},                        // template_replicas.go
		{"warm pool", r.reconcileWarmPool},                       // template_pool.go
		{"revision garbage collection", r.reconcileGC},           // template_gc.go
	}
}

// SetupWithManager registers the controller and what it watches.
func (r *DatabaseTemplateReconciler) SetupWithManager(mgr ctrl.Manager) error {
	byTemplateLabel := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		key, ok := templateOfLabels(o)
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: key}}
	})
	byTemplateRef := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: o.(*myaasv1.DatabaseInstance).TemplateKey()}}
	})
	refreshJobs := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[myaasv1.LabelRole] == myaasv1.RoleRefreshRequest
	})
	instanceClones := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[myaasv1.LabelRole] == myaasv1.RoleInstanceData
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&myaasv1.DatabaseTemplate{}).
		Owns(&corev1.PersistentVolumeClaim{}).
		Owns(&batchv1.Job{}).
		Owns(&batchv1.CronJob{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Owns(&snapshotv1.VolumeSnapshot{}).
		// Refresh requests are Jobs owned by the CronJob, not by the template.
		Watches(&batchv1.Job{}, byTemplateLabel, builder.WithPredicates(refreshJobs)).
		// Instance PVCs decide which revisions are still in use.
		Watches(&corev1.PersistentVolumeClaim{}, byTemplateLabel, builder.WithPredicates(instanceClones)).
		Watches(&myaasv1.DatabaseInstance{}, byTemplateRef).
		// Copies of revisions in other namespaces are deleted once nothing there uses them.
		Watches(&snapshotv1.VolumeSnapshot{}, byTemplateLabel, builder.WithPredicates(predicate.NewPredicateFuncs(isSharedCopy))).
		Watches(&snapshotv1.VolumeSnapshotContent{}, byTemplateLabel, builder.WithPredicates(predicate.NewPredicateFuncs(isSharedCopy))).
		// Progress of a running import is read from its pod.
		Watches(&corev1.Pod{}, byTemplateLabel, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetLabels()[myaasv1.LabelRole] == myaasv1.RoleImport
		}))).
		// A node going away or coming back changes where its revisions' copies can serve.
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.templatesWithReplicas),
			builder.WithPredicates(nodeReadinessChanged())).
		Named("databasetemplate").
		Complete(r)
}
