package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

const testDriver = "btrfs.csi.test"

// playSourceContent binds revision n's snapshot to a content with a snapshot handle, as the
// snapshot controller and the CSI sidecar do.
func playSourceContent(t *testing.T, ns, template string, n int32) string {
	t.Helper()
	handle := fmt.Sprintf("snap-%s-%s-%d", ns, template, n)
	content := &snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: "snapcontent-" + handle},
		Spec: snapshotv1.VolumeSnapshotContentSpec{
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: ns, Name: builder.SnapshotName(template, n)},
			DeletionPolicy:    snapshotv1.VolumeSnapshotContentDelete,
			Driver:            testDriver,
			Source:            snapshotv1.VolumeSnapshotContentSource{VolumeHandle: ptr.To("vol-" + handle)},
		},
	}
	if err := k8s.Create(bg, content); err != nil {
		t.Fatal(err)
	}
	content.Status = &snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: ptr.To(handle), ReadyToUse: ptr.To(true)}
	if err := k8s.Status().Update(bg, content); err != nil {
		t.Fatal(err)
	}
	snap := &snapshotv1.VolumeSnapshot{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.SnapshotName(template, n)}, snap); err != nil {
		t.Fatal(err)
	}
	snap.Status.BoundVolumeSnapshotContentName = ptr.To(content.Name)
	if err := k8s.Status().Update(bg, snap); err != nil {
		t.Fatal(err)
	}
	return handle
}

// playCopyReady waits for the copy of a revision in namespace ns and marks it ready, as the
// snapshot controller does once it has bound it to its content.
func playCopyReady(t *testing.T, ns, templateNS, template string, n int32) {
	t.Helper()
	snap := &snapshotv1.VolumeSnapshot{}
	eventually(t, 20*time.Second, "copy of revision in "+ns, func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: builder.SharedSnapshotName(templateNS, template, n)}, snap)
	})
	snap.Status = &snapshotv1.VolumeSnapshotStatus{
		BoundVolumeSnapshotContentName: snap.Spec.Source.VolumeSnapshotContentName,
		ReadyToUse:                     ptr.To(true),
		CreationTime:                   ptr.To(metav1.Now()),
	}
	if err := k8s.Status().Update(bg, snap); err != nil {
		t.Fatal(err)
	}
}

func getContent(name string) (*snapshotv1.VolumeSnapshotContent, error) {
	c := &snapshotv1.VolumeSnapshotContent{}
	return c, k8s.Get(bg, client.ObjectKey{Name: name}, c)
}

func instanceOf(templateNS string) func(*myaasv1.DatabaseInstance) {
	return func(i *myaasv1.DatabaseInstance) { i.Spec.TemplateRef.Namespace = templateNS }
}

func shareWith(t *testing.T, ns, template string, mutate func(*myaasv1.SharingSpec)) {
	t.Helper()
	eventually(t, 10*time.Second, "update spec.sharing", func() error {
		tmpl := getTemplate(t, ns, template)
		if tmpl.Spec.Sharing == nil {
			tmpl.Spec.Sharing = &myaasv1.SharingSpec{}
		}
		mutate(tmpl.Spec.Sharing)
		return k8s.Update(bg, tmpl)
	})
	// The grant is decided from the manager's cache: wait until the manager has seen the change,
	// as a user sees it in status.observedGeneration, before asking for instances under it.
	eventually(t, 10*time.Second, "spec.sharing observed", func() error {
		if tmpl := getTemplate(t, ns, template); tmpl.Status.ObservedGeneration != tmpl.Generation {
			return fmt.Errorf("observedGeneration %d of %d", tmpl.Status.ObservedGeneration, tmpl.Generation)
		}
		return nil
	})
}

func TestSharedTemplateIsRefusedWithoutGrantAndClonedFromACopyWithOne(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	shared, devA, devB := newNamespace(t), newNamespace(t), newNamespace(t)
	newTemplate(t, shared, "shop")
	importRevision(t, shared, "shop", 1)
	handle := playSourceContent(t, shared, "shop", 1)

	// Without a grant: refused, with a condition naming the grant that is missing, and nothing made.
	newInstance(t, devA, "dev", "shop", instanceOf(shared))
	eventually(t, 20*time.Second, "instance refused", func() error {
		got := getInstance(t, devA, "dev")
		if err := conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonTemplateNotShared); err != nil {
			return err
		}
		if msg := metaCondition(got.Status.Conditions, myaasv1.ConditionReady).Message; !strings.Contains(msg, "spec.sharing.namespaces") || !strings.Contains(msg, devA) {
			t.Fatalf("the refusal does not name the missing grant: %s", msg)
		}
		return nil
	})
	consistently(t, time.Second, "nothing made for a refused instance", func() error {
		if err := k8s.Get(bg, client.ObjectKey{Namespace: devA, Name: "dev-credentials"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("credentials Secret: %w", err)
		}
		if _, err := getContent(builder.SharedContentName(devA, shared, "shop", 1)); !apierrors.IsNotFound(err) {
			return fmt.Errorf("copy made without a grant: %w", err)
		}
		return nil
	})
	waitForEvent(t, devA, "dev", EventTemplateNotShared)

	// A template that does not exist gets the same answer: nothing tells which templates exist.
	newInstance(t, devA, "ghost", "nosuch", instanceOf(shared))
	eventually(t, 20*time.Second, "missing template answered as not shared", func() error {
		got := getInstance(t, devA, "ghost")
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonTemplateNotShared)
	})

	// The grant: the copy of revision 1 is made in dev-a, the clone comes from it.
	shareWith(t, shared, "shop", func(s *myaasv1.SharingSpec) { s.Namespaces = []string{devA} })
	contentName := builder.SharedContentName(devA, shared, "shop", 1)
	copyName := builder.SharedSnapshotName(shared, "shop", 1)
	eventually(t, 20*time.Second, "copy of revision 1 made in "+devA, func() error {
		got := getInstance(t, devA, "dev")
		if err := conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonWaitingForSharedSnapshot); err != nil {
			return err
		}
		_, err := getContent(contentName)
		return err
	})
	content, _ := getContent(contentName)
	cs := content.Spec
	if cs.DeletionPolicy != snapshotv1.VolumeSnapshotContentRetain || cs.Driver != testDriver ||
		cs.Source.SnapshotHandle == nil || *cs.Source.SnapshotHandle != handle ||
		cs.VolumeSnapshotRef.Namespace != devA || cs.VolumeSnapshotRef.Name != copyName {
		t.Fatalf("copy content %+v: want Retain, driver %s, handle %s, bound to %s/%s", cs, testDriver, handle, devA, copyName)
	}
	if l := content.Labels; l[myaasv1.LabelTemplateNamespace] != shared || l[myaasv1.LabelSharedWith] != devA || l["app.kubernetes.io/managed-by"] != "myaas" {
		t.Fatalf("copy content labels %v", l)
	}
	copySnap := &snapshotv1.VolumeSnapshot{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: devA, Name: copyName}, copySnap); err != nil {
		t.Fatal(err)
	}
	if src := copySnap.Spec.Source; src.VolumeSnapshotContentName == nil || *src.VolumeSnapshotContentName != contentName {
		t.Fatalf("copy snapshot source %+v, want content %s", src, contentName)
	}
	consistently(t, 500*time.Millisecond, "no clone before the copy is ready", func() error {
		pvcs := &corev1.PersistentVolumeClaimList{}
		if err := k8s.List(bg, pvcs, client.InNamespace(devA)); err != nil {
			return err
		}
		if len(pvcs.Items) > 0 {
			return fmt.Errorf("clone requested from a copy not ready: %s", pvcs.Items[0].Name)
		}
		return nil
	})
	playCopyReady(t, devA, shared, "shop", 1)
	eventually(t, 20*time.Second, "clone PVC from the copy", func() error {
		pvc := &corev1.PersistentVolumeClaim{}
		got := getInstance(t, devA, "dev")
		if err := k8s.Get(bg, client.ObjectKey{Namespace: devA, Name: builder.InstancePVCName("dev", got.UID, 0)}, pvc); err != nil {
			return err
		}
		if pvc.Spec.DataSource == nil || pvc.Spec.DataSource.Name != copyName {
			t.Fatalf("clone data source %+v, want the copy %s", pvc.Spec.DataSource, copyName)
		}
		if pvc.Labels[myaasv1.LabelTemplateNamespace] != shared {
			t.Fatalf("clone labels %v", pvc.Labels)
		}
		return nil
	})
	eventually(t, 20*time.Second, "usage counted across namespaces", func() error {
		tmpl := getTemplate(t, shared, "shop")
		if r := tmpl.Status.Revisions; len(r) != 1 || r[0].Instances != 1 || r[0].Namespaces != 1 {
			return fmt.Errorf("revisions %+v", r)
		}
		if got := tableRow(t, shared, "databasetemplates", "shop")["Usage"]; got != "r1: 1 in 1 ns" {
			return fmt.Errorf("Usage column %q", got)
		}
		return nil
	})

	// A namespace selector grants too.
	nsB := &corev1.Namespace{}
	if err := k8s.Get(bg, client.ObjectKey{Name: devB}, nsB); err != nil {
		t.Fatal(err)
	}
	nsB.Labels["team"] = "shop"
	if err := k8s.Update(bg, nsB); err != nil {
		t.Fatal(err)
	}
	shareWith(t, shared, "shop", func(s *myaasv1.SharingSpec) {
		s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}
	})
	newInstance(t, devB, "ci", "shop", instanceOf(shared))
	playCopyReady(t, devB, shared, "shop", 1)
	eventually(t, 20*time.Second, "two namespaces counted", func() error {
		if got := tableRow(t, shared, "databasetemplates", "shop")["Usage"]; got != "r1: 2 in 2 ns" {
			return fmt.Errorf("Usage column %q", got)
		}
		return nil
	})

	// Revoking: the running instance keeps its copy and clone, a new one is refused.
	shareWith(t, shared, "shop", func(s *myaasv1.SharingSpec) { s.Namespaces = nil })
	newInstance(t, devA, "late", "shop", instanceOf(shared))
	eventually(t, 20*time.Second, "new instance refused after revocation", func() error {
		got := getInstance(t, devA, "late")
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonTemplateNotShared)
	})
	consistently(t, time.Second, "the running instance is left alone", func() error {
		got := getInstance(t, devA, "dev")
		if c := metaCondition(got.Status.Conditions, myaasv1.ConditionReady); c.Reason == myaasv1.ReasonTemplateNotShared {
			return fmt.Errorf("running instance refused: %s", c.Message)
		}
		if _, err := getContent(contentName); err != nil {
			return fmt.Errorf("copy of the running instance: %w", err)
		}
		return nil
	})
}

func TestSharedRevisionIsKeptWhileUsedAnywhereThenDeletedInSafeOrder(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	shared, devA, devB := newNamespace(t), newNamespace(t), newNamespace(t)
	newTemplate(t, shared, "shop", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.RetainRevisions = 1
		d.Spec.Sharing = &myaasv1.SharingSpec{Namespaces: []string{devA, devB}}
	})
	importRevision(t, shared, "shop", 1)
	playSourceContent(t, shared, "shop", 1)
	instA := newInstance(t, devA, "a", "shop", instanceOf(shared))
	instB := newInstance(t, devB, "b", "shop", instanceOf(shared))
	playCopyReady(t, devA, shared, "shop", 1)
	playCopyReady(t, devB, shared, "shop", 1)
	eventually(t, 20*time.Second, "both pinned to revision 1", func() error {
		for _, i := range []*myaasv1.DatabaseInstance{instA, instB} {
			if getInstance(t, i.Namespace, i.Name).Status.Revision != 1 {
				return fmt.Errorf("%s/%s not pinned", i.Namespace, i.Name)
			}
		}
		return nil
	})
	// Finalizers, as the snapshot controller puts, make the order of deletions visible.
	addFinalizer(t, &snapshotv1.VolumeSnapshot{}, shared, "shop-r1", "test.myaas.io/hold")
	addFinalizer(t, &snapshotv1.VolumeSnapshot{}, devB, builder.SharedSnapshotName(shared, "shop", 1), "test.myaas.io/hold")

	requestRefresh(t, shared, "shop", "manual-1")
	importRevision(t, shared, "shop", 2)

	// dev-a's instance goes: its copy goes, revision 1 stays for dev-b.
	deleteInstance(t, instA)
	eventually(t, 30*time.Second, "copy in dev-a deleted", func() error {
		if _, err := getContent(builder.SharedContentName(devA, shared, "shop", 1)); !apierrors.IsNotFound(err) {
			return fmt.Errorf("content still there: %w", err)
		}
		err := k8s.Get(bg, client.ObjectKey{Namespace: devA, Name: builder.SharedSnapshotName(shared, "shop", 1)}, &snapshotv1.VolumeSnapshot{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("snapshot still there: %w", err)
		}
		return nil
	})
	consistently(t, 1500*time.Millisecond, "revision 1 kept while dev-b uses it", func() error {
		if revs := getTemplate(t, shared, "shop").Status.Revisions; len(revs) != 2 {
			return fmt.Errorf("revisions %+v", revs)
		}
		snap := &snapshotv1.VolumeSnapshot{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: shared, Name: "shop-r1"}, snap); err != nil || !snap.DeletionTimestamp.IsZero() {
			return fmt.Errorf("snapshot shop-r1 deleted while dev-b uses it")
		}
		if _, err := getContent(builder.SharedContentName(devB, shared, "shop", 1)); err != nil {
			return fmt.Errorf("dev-b's copy: %w", err)
		}
		return nil
	})

	// The last user goes: dev-b's copy snapshot, then its content, then the revision's snapshot,
	// then its volume.
	deleteInstance(t, instB)
	copyB := builder.SharedSnapshotName(shared, "shop", 1)
	eventually(t, 30*time.Second, "dev-b's copy snapshot being deleted", func() error {
		snap := &snapshotv1.VolumeSnapshot{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: devB, Name: copyB}, snap); err != nil || snap.DeletionTimestamp.IsZero() {
			return fmt.Errorf("not being deleted: %w", err)
		}
		return nil
	})
	consistently(t, 1500*time.Millisecond, "content and revision outlive the copy snapshot", func() error {
		if c, err := getContent(builder.SharedContentName(devB, shared, "shop", 1)); err != nil || !c.DeletionTimestamp.IsZero() {
			return fmt.Errorf("content deleted before its snapshot: %w", err)
		}
		snap := &snapshotv1.VolumeSnapshot{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: shared, Name: "shop-r1"}, snap); err != nil || !snap.DeletionTimestamp.IsZero() {
			return fmt.Errorf("revision snapshot deleted before its copies")
		}
		return nil
	})
	removeFinalizer(t, &snapshotv1.VolumeSnapshot{}, devB, copyB, "test.myaas.io/hold")
	eventually(t, 30*time.Second, "revision 1's snapshot deleted after its copies", func() error {
		if _, err := getContent(builder.SharedContentName(devB, shared, "shop", 1)); !apierrors.IsNotFound(err) {
			return fmt.Errorf("content still there: %w", err)
		}
		snap := &snapshotv1.VolumeSnapshot{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: shared, Name: "shop-r1"}, snap); err != nil || snap.DeletionTimestamp.IsZero() {
			return fmt.Errorf("not being deleted: %w", err)
		}
		return nil
	})
	consistently(t, time.Second, "volume outlives its snapshot", func() error {
		pvc := &corev1.PersistentVolumeClaim{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: shared, Name: "shop-r1"}, pvc); err != nil || !pvc.DeletionTimestamp.IsZero() {
			return fmt.Errorf("PVC shop-r1 deleted before its snapshot was gone")
		}
		return nil
	})
	removeFinalizer(t, &snapshotv1.VolumeSnapshot{}, shared, "shop-r1", "test.myaas.io/hold")
	playPVCProtection(t, shared, "shop-r1")
	eventually(t, 20*time.Second, "revision 1 collected", func() error {
		if revs := getTemplate(t, shared, "shop").Status.Revisions; len(revs) != 1 || revs[0].Revision != 2 {
			return fmt.Errorf("revisions %+v", revs)
		}
		return nil
	})
}
