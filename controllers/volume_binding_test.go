package controllers

import (
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// An import pod made before its Immediate-binding volume is bound can be left unschedulable for
// minutes by the scheduler, so the import Job waits for the bind and the template says so. A
// volume that binds only once its pod is scheduled gets its Job at once.
func TestImportJobWaitsForAnImmediateVolumeToBind(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	classes := map[string]storagev1.VolumeBindingMode{ns + "-immediate": storagev1.VolumeBindingImmediate, ns + "-first-consumer": storagev1.VolumeBindingWaitForFirstConsumer}
	for name, mode := range classes {
		class := &storagev1.StorageClass{
			ObjectMeta:        metav1.ObjectMeta{Name: name},
			Provisioner:       "test.csi",
			VolumeBindingMode: ptr.To(mode),
		}
		if err := k8s.Create(bg, class); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(bg, class) })
	}

	newTemplate(t, ns, "later", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Storage.StorageClassName = ptr.To(ns + "-first-consumer")
	})
	waitForImportJob(t, ns, "later", 1)

	newTemplate(t, ns, "now", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Storage.StorageClassName = ptr.To(ns + "-immediate")
	})
	eventually(t, 20*time.Second, "the import held for its volume", func() error {
		ci := getTemplate(t, ns, "now").Status.CurrentImport
		if ci == nil || ci.HoldReason != myaasv1.ReasonWaitingForVolume {
			return fmt.Errorf("current import %+v", ci)
		}
		return nil
	})
	consistently(t, 2*time.Second, "no Job before the bind", func() error {
		err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.ImportJobName("now", 1, 1)}, &batchv1.Job{})
		if err == nil {
			return fmt.Errorf("the import Job exists while its volume is unbound")
		}
		return client.IgnoreNotFound(err)
	})

	// The provisioner binds the claim, as the PV controller reports it.
	claim := &corev1.PersistentVolumeClaim{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.TemplatePVCName("now", 1)}, claim); err != nil {
		t.Fatal(err)
	}
	claim.Status.Phase = corev1.ClaimBound
	if err := k8s.Status().Update(bg, claim); err != nil {
		t.Fatal(err)
	}
	waitForImportJob(t, ns, "now", 1)
	// The status is written at the end of the pass that made the Job.
	eventually(t, 20*time.Second, "the hold lifted with the bind", func() error {
		if ci := getTemplate(t, ns, "now").Status.CurrentImport; ci != nil && ci.HoldReason == myaasv1.ReasonWaitingForVolume {
			return fmt.Errorf("the hold outlived the bind: %+v", ci)
		}
		return nil
	})
}
