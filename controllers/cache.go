package controllers

import (
	"fmt"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// OwnedKinds are the kinds of the objects the operator creates. The manager watches them, but a
// cluster holds many more of them than the operator made (every Secret, every Pod): its cache
// keeps only those labelled as the operator's, so that its memory follows the number of
// databases, not the size of the cluster, and it holds no other application's credentials.
func OwnedKinds() []client.Object {
	return []client.Object{
		&corev1.Secret{}, &corev1.Pod{}, &corev1.PersistentVolumeClaim{}, &corev1.Service{},
		&appsv1.StatefulSet{}, &batchv1.Job{}, &batchv1.CronJob{}, &snapshotv1.VolumeSnapshot{},
		&snapshotv1.VolumeSnapshotContent{}, &networkingv1.NetworkPolicy{},
	}
}

// UncachedKinds are read by name and never listed or watched (the volume behind a template
// revision, the classes a template names, an instance's namespace): a cache of them would hold
// every one in the cluster.
func UncachedKinds() []client.Object {
	return []client.Object{
		&corev1.PersistentVolume{}, &storagev1.StorageClass{}, &snapshotv1.VolumeSnapshotClass{}, &corev1.Namespace{},
	}
}

// CacheOptions select what the manager's cache holds: the operator's own objects, in the given
// namespaces (all namespaces when there are none). Unfiltered caches every object of the owned
// kinds, as a manager before the selection did; it exists for comparisons (bench-memory).
func CacheOptions(namespaces []string, unfiltered bool) cache.Options {
	var o cache.Options
	if !unfiltered {
		owned := labels.SelectorFromSet(labels.Set{myaasv1.LabelManagedBy: myaasv1.ManagedBy})
		o.ByObject = map[client.Object]cache.ByObject{}
		for _, obj := range OwnedKinds() {
			o.ByObject[obj] = cache.ByObject{Label: owned}
		}
	}
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o
}

// ClientOptions make the manager's client read UncachedKinds from the API server.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: UncachedKinds()}}
}

// Namespaces parses the comma-separated list of --watch-namespaces; empty means every namespace.
func Namespaces(list string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, ns := range strings.Split(list, ",") {
		ns = strings.TrimSpace(ns)
		if ns == "" || seen[ns] {
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("--watch-namespaces: %q is not a namespace name: %s", ns, strings.Join(errs, "; "))
		}
		seen[ns] = true
		out = append(out, ns)
	}
	return out, nil
}
