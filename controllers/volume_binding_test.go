package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
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
	ns, immediate, firstConsumer := bindingClassesNamespace(t)

	newTemplate(t, ns, "later", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Storage.StorageClassName = ptr.To(firstConsumer)
	})
	waitForImportJob(t, ns, "later", 1)

	newTemplate(t, ns, "now", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Storage.StorageClassName = ptr.To(immediate)
	})
	eventually(t, 20*time.Second, "the import held for its volume", func() error {
		ci := getTemplate(t, ns, "now").Status.CurrentImport
		if ci == nil || ci.HoldReason != myaasv1.ReasonWaitingForVolume {
			return fmt.Errorf("current import %+v", ci)
		}
		return nil
	})
	staysAbsent(t, "no Job before the bind", client.ObjectKey{Namespace: ns, Name: builder.ImportJobName("now", 1, 1)}, &batchv1.Job{})

	// The provisioner binds the claim, as the PV controller reports it.
	bindClaim(t, ns, builder.TemplatePVCName("now", 1))
	waitForImportJob(t, ns, "now", 1)
	// The status is written at the end of the pass that made the Job.
	eventually(t, 20*time.Second, "the hold lifted with the bind", func() error {
		if ci := getTemplate(t, ns, "now").Status.CurrentImport; ci != nil && ci.HoldReason == myaasv1.ReasonWaitingForVolume {
			return fmt.Errorf("the hold outlived the bind: %+v", ci)
		}
		return nil
	})
}

// A pod that reaches the scheduler before its clone, which binds at once, is bound can be left
// unschedulable for minutes: the instance's StatefulSet waits for the bind and the instance says
// what it waits for. A clone that binds only for its scheduled pod gets its StatefulSet at once.
func TestInstancePodWaitsForAnImmediateCloneToBind(t *testing.T) {
	requireEnv(t)
	ns, immediate, firstConsumer := bindingClassesNamespace(t)

	newTemplate(t, ns, "later", func(d *myaasv1.DatabaseTemplate) { d.Spec.Storage.StorageClassName = ptr.To(firstConsumer) })
	importRevision(t, ns, "later", 1)
	newInstance(t, ns, "at-once", "later")
	eventually(t, 20*time.Second, "the StatefulSet of an instance whose clone waits for its pod", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "at-once"}, &appsv1.StatefulSet{})
	})

	newTemplate(t, ns, "now", func(d *myaasv1.DatabaseTemplate) { d.Spec.Storage.StorageClassName = ptr.To(immediate) })
	bindClaim(t, ns, builder.TemplatePVCName("now", 1))
	importRevision(t, ns, "now", 1)
	inst := newInstance(t, ns, "dev", "now")
	clone := builder.InstancePVCName("dev", inst.UID, 0)
	eventually(t, 20*time.Second, "the instance waiting for its clone", func() error {
		got := getInstance(t, ns, "dev")
		if err := conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonCloning); err != nil {
			return err
		}
		if msg := metaCondition(got.Status.Conditions, myaasv1.ConditionReady).Message; !strings.Contains(msg, clone) || !strings.Contains(msg, "once it is bound") {
			return fmt.Errorf("the condition does not name the claim being provisioned: %s", msg)
		}
		return nil
	})
	staysAbsent(t, "no StatefulSet before the bind", client.ObjectKey{Namespace: ns, Name: "dev"}, &appsv1.StatefulSet{})

	bindClaim(t, ns, clone)
	eventually(t, 20*time.Second, "the StatefulSet once the clone is bound", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "dev"}, &appsv1.StatefulSet{})
	})
}

func newStorageClass(t *testing.T, name string, mode storagev1.VolumeBindingMode) string {
	t.Helper()
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: "test.csi", VolumeBindingMode: ptr.To(mode)}
	if err := k8s.Create(bg, class); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(bg, class) })
	return name
}

// bindClaim reports the claim bound once it exists, as the PV controller does.
func bindClaim(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, 20*time.Second, "PersistentVolumeClaim "+name+" bound", func() error {
		claim := &corev1.PersistentVolumeClaim{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, claim); err != nil {
			return err
		}
		claim.Status.Phase = corev1.ClaimBound
		return k8s.Status().Update(bg, claim)
	})
}

// A copy of a revision on another node names its node, so its claim is provisioned without a pod:
// the copy's import Job waits for the bind, and the copy says what it waits for.
func TestCopyImportWaitsForItsVolumeToBind(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	nodes := []string{ns + "-a", ns + "-b"}
	for _, n := range nodes {
		createNode(t, n)
	}
	newTemplate(t, ns, "shop", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Replicas = &myaasv1.ReplicaSpec{Nodes: ptr.To[int32](2)}
	})
	importFirstRevisionOn(t, ns, "shop", nodes[1])

	copyClaim := builder.ReplicaName("shop", 1, nodes[0])
	eventually(t, 20*time.Second, "the copy waiting for its volume", func() error {
		for _, rep := range latestRevision(getTemplate(t, ns, "shop")).Replicas {
			if rep.Node == nodes[0] && strings.Contains(rep.Message, copyClaim) && strings.Contains(rep.Message, "once it is bound") {
				return nil
			}
		}
		return fmt.Errorf("copies %+v", latestRevision(getTemplate(t, ns, "shop")).Replicas)
	})
	staysAbsent(t, "no import Job for the copy before the bind", client.ObjectKey{Namespace: ns, Name: builder.ReplicaImportJobName("shop", 1, nodes[0])}, &batchv1.Job{})
	bindClaim(t, ns, copyClaim)
	playReplicaImport(t, ns, "shop", 1, nodes[0], importReport)
}

// bindingClassesNamespace starts a manager and gives the test a namespace and two StorageClasses:
// one that binds at once and one that waits for the first consumer.
func bindingClassesNamespace(t *testing.T) (ns, immediate, firstConsumer string) {
	t.Helper()
	startManager(t, Options{})
	ns = newNamespace(t)
	immediate = newStorageClass(t, ns+"-immediate", storagev1.VolumeBindingImmediate)
	firstConsumer = newStorageClass(t, ns+"-first-consumer", storagev1.VolumeBindingWaitForFirstConsumer)
	return ns, immediate, firstConsumer
}

// staysAbsent fails the test if the object comes into existence within two seconds.
func staysAbsent(t *testing.T, what string, key client.ObjectKey, obj client.Object) {
	t.Helper()
	consistently(t, 2*time.Second, what, func() error {
		err := k8s.Get(bg, key, obj)
		if err == nil {
			return fmt.Errorf("%T %s exists", obj, key)
		}
		return client.IgnoreNotFound(err)
	})
}
