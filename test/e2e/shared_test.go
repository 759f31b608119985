//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// A template in one namespace, shared with others: developers' namespaces clone it only once its
// owners grant it, see nothing else of its namespace, and the revisions they use are kept until
// the last of them is gone, wherever it is.
func TestSharedTemplateAcrossNamespaces(t *testing.T) {
	shared, devA, devB := namedNamespace(t, "shared"), namedNamespace(t, "dev-a"), namedNamespace(t, "dev-b")
	url := startDumpServer(t, shared, 0)
	// A source Secret: nothing of it may ever be readable from the developers' namespaces.
	marker := "src-" + rand.String(16)
	if err := k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: shared, Name: "source-auth"},
		StringData: map[string]string{"username": "reader", "password": marker},
	}); err != nil {
		t.Fatal(err)
	}
	newTemplate(t, shared, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{
		// The dump server of the test speaks plain http; credentials go over it only when allowed.
		URL: url + "/shop.sql.gz", SecretRef: &corev1.LocalObjectReference{Name: "source-auth"}, Insecure: true,
	}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.RetainRevisions = 1
		d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *"}
	})
	waitForRevision(t, shared, "shop", 1, 300*time.Second)

	// Alice may use the operator in dev-a and nothing else.
	userInNamespace(t, devA, "alice")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "databaseinstances", "-n", devA}, "yes"},
		{[]string{"get", "secrets", "-n", devA}, "yes"},
		{[]string{"get", "secrets", "-n", shared}, "no"},
		{[]string{"get", "databasetemplates", "-n", shared}, "no"},
		{[]string{"get", "persistentvolumeclaims", "-n", shared}, "no"},
		{[]string{"get", "volumesnapshots", "-n", shared}, "no"},
		{[]string{"get", "volumesnapshotcontents"}, "no"},
		{[]string{"create", "databaseinstances", "-n", shared}, "no"},
	} {
		out, _ := kubectlMay(append([]string{"auth", "can-i", "--as", "alice"}, c.args...)...)
		// The answer is the last line; kubectl may warn before it.
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if got := strings.TrimSpace(lines[len(lines)-1]); got != c.want {
			t.Errorf("kubectl auth can-i %s --as alice: %q, want %q", strings.Join(c.args, " "), out, c.want)
		}
	}
	if out, err := kubectlMay("--as", "alice", "-n", shared, "get", "secret", "source-auth", "-o", "yaml"); err == nil || !strings.Contains(out, "Forbidden") || strings.Contains(out, marker) {
		t.Fatalf("alice read a Secret of %s: %v\n%s", shared, err, out)
	}

	t.Log("step: no grant: refused")
	// No grant: refused, with a condition that says which grant is missing.
	r := myaas(t, devA, "--as", "alice", "create", "app", "--template", shared+"/shop", "--wait=false")
	if r.code != 0 {
		t.Fatalf("alice cannot create an instance in %s: %s", devA, r.stderr)
	}
	eventually(t, 60*time.Second, "instance refused without a grant", func() error {
		inst := getInstance(t, devA, "app")
		st, reason, msg := conditionReason(inst.Status.Conditions, myaasv1.ConditionReady)
		if st != metav1.ConditionFalse || reason != myaasv1.ReasonTemplateNotShared {
			return fmt.Errorf("Ready %s/%s: %s", st, reason, msg)
		}
		if !strings.Contains(msg, "spec.sharing") || !strings.Contains(msg, devA) {
			t.Fatalf("the refusal does not name the missing grant: %s", msg)
		}
		return nil
	})

	t.Log("step: granted: ready with the data")
	// The grant: Ready, with the template's data, through the plugin as alice uses it.
	setSharing(t, shared, "shop", []string{devA, devB})
	env := parseKV(t, mustMyaas(t, devA, "--as", "alice", "create", "app", "--template", shared+"/shop", "-o", "env", "--timeout", "3m"))
	if !strings.HasSuffix(env["MYAAS_HOST"], "."+devA+".svc") {
		t.Errorf("the instance's host %q is not in %s", env["MYAAS_HOST"], devA)
	}
	want := shopDump.Expect()
	if got := queryInt(t, connect(t, devA, "app"), "SELECT COUNT(*) FROM shop.orders"); got != int64(want.Orders) {
		t.Fatalf("orders %d, want %d", got, want.Orders)
	}
	newInstance(t, devB, "ci", "shop", fromNamespace(shared))
	waitReady(t, devB, "ci")
	if got := queryInt(t, connect(t, devB, "ci"), "SELECT SUM(total_cents) FROM shop.orders"); got != want.OrderTotalCents {
		t.Fatalf("order total %d, want %d", got, want.OrderTotalCents)
	}
	eventually(t, 30*time.Second, "usage in kubectl get -o wide", func() error {
		out := kubectl(t, "-n", shared, "get", "dbt", "shop", "-o", "wide")
		if !strings.Contains(out, "r1: 2 in 2 ns") {
			return fmt.Errorf("kubectl get dbt -o wide:\n%s", out)
		}
		return nil
	})

	t.Log("step: nothing of shared readable from dev-a")
	// Nothing of shared is readable from dev-a: not through alice's rights, not in what the
	// operator made there.
	secrets := &corev1.SecretList{}
	if err := k8s.List(ctx, secrets, client.InNamespace(devA)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		for k, v := range s.Data {
			if strings.Contains(string(v), marker) || strings.Contains(string(v), shared+".svc") {
				t.Errorf("Secret %s/%s key %s holds something of %s", devA, s.Name, k, shared)
			}
		}
	}
	if out, err := kubectlMay("--as", "alice", "-n", shared, "get", "databasetemplate", "shop"); err == nil || !strings.Contains(out, "Forbidden") {
		t.Errorf("alice read the template in %s: %v\n%s", shared, err, out)
	}

	// What revision 1 is made of, in shared and in dev-a, to check it all goes in the end.
	rev1 := revisionObjects(t, shared, "shop", 1)
	cloneA := clonePV(t, devA, "app")

	t.Log("step: revision 2")
	// Revision 2; revision 1 stays, used in two namespaces.
	kubectl(t, "-n", shared, "create", "job", "--from=cronjob/shop-refresh", "refresh-now")
	waitForRevision(t, shared, "shop", 2, 300*time.Second)

	t.Log("step: dev-a deleted")
	// dev-a goes entirely: its copy and its clone go with it, revision 1 stays for dev-b.
	if err := k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: devA}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 180*time.Second, devA+" gone, leaving no copy and no volume", func() error {
		if err := k8s.Get(ctx, client.ObjectKey{Name: devA}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace still there")
		}
		for _, c := range rev1.copies {
			if c.Labels[myaasv1.LabelSharedWith] != devA {
				continue
			}
			if err := k8s.Get(ctx, client.ObjectKey{Name: c.Name}, &snapshotv1.VolumeSnapshotContent{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("VolumeSnapshotContent %s left behind", c.Name)
			}
		}
		if err := k8s.Get(ctx, client.ObjectKey{Name: cloneA}, &corev1.PersistentVolume{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("PersistentVolume %s of the clone left behind", cloneA)
		}
		return nil
	})
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: shared, Name: "shop-r1"}, &snapshotv1.VolumeSnapshot{}); err != nil {
		t.Fatalf("revision 1 collected while dev-b uses it: %v", err)
	}
	if len(getTemplate(t, shared, "shop").Status.Revisions) != 2 {
		t.Fatal("revision 1 left the template's status while dev-b uses it")
	}

	t.Log("step: revoking")
	// Revoking dev-b's grant: a new instance there is refused, the running one is left alone.
	setSharing(t, shared, "shop", nil)
	newInstance(t, devB, "late", "shop", fromNamespace(shared))
	eventually(t, 60*time.Second, "new instance refused after the revocation", func() error {
		_, reason, msg := conditionReason(getInstance(t, devB, "late").Status.Conditions, myaasv1.ConditionReady)
		if reason != myaasv1.ReasonTemplateNotShared {
			return fmt.Errorf("%s: %s", reason, msg)
		}
		return nil
	})
	running := getInstance(t, devB, "ci")
	if _, reason, _ := conditionReason(running.Status.Conditions, myaasv1.ConditionReady); reason != myaasv1.ReasonCredentialsVerified || running.Status.Phase != myaasv1.InstanceReady {
		t.Fatalf("the running instance changed after the revocation: %s %s", running.Status.Phase, reason)
	}
	if got := queryInt(t, connect(t, devB, "ci"), "SELECT COUNT(*) FROM shop.orders"); got != int64(want.Orders) {
		t.Fatalf("the running instance lost its data: %d orders", got)
	}

	t.Log("step: last user gone")
	// The last user of revision 1 goes: its snapshot, its copies and its volume follow.
	if err := k8s.Delete(ctx, running); err != nil {
		t.Fatal(err)
	}
	eventually(t, 180*time.Second, "revision 1 deleted with its copies", func() error {
		for _, c := range rev1.copies {
			if err := k8s.Get(ctx, client.ObjectKey{Name: c.Name}, &snapshotv1.VolumeSnapshotContent{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("copy %s still there", c.Name)
			}
		}
		for _, o := range []client.Object{&snapshotv1.VolumeSnapshot{}, &corev1.PersistentVolumeClaim{}} {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: shared, Name: "shop-r1"}, o); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T shop-r1 still there", o)
			}
		}
		if err := k8s.Get(ctx, client.ObjectKey{Name: rev1.content}, &snapshotv1.VolumeSnapshotContent{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the revision's own content %s still there", rev1.content)
		}
		if err := k8s.Get(ctx, client.ObjectKey{Name: rev1.volume}, &corev1.PersistentVolume{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the revision's volume %s still there", rev1.volume)
		}
		return nil
	})
	if revs := getTemplate(t, shared, "shop").Status.Revisions; len(revs) != 1 || revs[0].Revision != 2 {
		t.Fatalf("revisions %+v, want only 2", revs)
	}
}

func fromNamespace(ns string) func(*myaasv1.DatabaseInstance) {
	return func(i *myaasv1.DatabaseInstance) { i.Spec.TemplateRef.Namespace = ns }
}

func setSharing(t *testing.T, ns, name string, namespaces []string) {
	t.Helper()
	eventually(t, 10*time.Second, "update spec.sharing", func() error {
		d := getTemplate(t, ns, name)
		d.Spec.Sharing = &myaasv1.SharingSpec{Namespaces: namespaces}
		return k8s.Update(ctx, d)
	})
}

// userInNamespace gives a user what a developer has in their namespace: instances, and reading
// Secrets, Services, pods and events there. Nothing anywhere else.
func userInNamespace(t *testing.T, ns, user string) {
	t.Helper()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "developer"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"myaas.io"}, Resources: []string{"databaseinstances"}, Verbs: []string{"*"}},
			{APIGroups: []string{""}, Resources: []string{"secrets", "services", "pods", "events"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "developer-" + user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

// kubectlMay runs kubectl and returns its output and error, for commands expected to fail.
func kubectlMay(args ...string) (string, error) {
	bin := os.Getenv("KUBECTL")
	if bin == "" {
		bin, _ = filepath.Abs("../../bin/k8s/kubectl")
	}
	out, err := exec.Command(bin, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// revisionParts are the objects a revision is made of: its snapshot's content, its volume's PV
// and the copies of it made in other namespaces.
type revisionParts struct {
	content, volume string
	copies          []snapshotv1.VolumeSnapshotContent
}

func revisionObjects(t *testing.T, ns, template string, n int32) revisionParts {
	t.Helper()
	var p revisionParts
	snap := &snapshotv1.VolumeSnapshot{}
	pvc := &corev1.PersistentVolumeClaim{}
	name := fmt.Sprintf("%s-r%d", template, n)
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, snap); err != nil || snap.Status == nil || snap.Status.BoundVolumeSnapshotContentName == nil {
		t.Fatalf("snapshot %s: %v", name, err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pvc); err != nil {
		t.Fatal(err)
	}
	p.content, p.volume = *snap.Status.BoundVolumeSnapshotContentName, pvc.Spec.VolumeName
	list := &snapshotv1.VolumeSnapshotContentList{}
	if err := k8s.List(ctx, list, client.MatchingLabels{
		myaasv1.LabelTemplate: template, myaasv1.LabelTemplateNamespace: ns, myaasv1.LabelRevision: fmt.Sprint(n),
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		if c.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentRetain {
			t.Errorf("copy %s has deletionPolicy %s: deleting it would delete the revision's data", c.Name, c.Spec.DeletionPolicy)
		}
	}
	p.copies = list.Items
	if len(p.copies) != 2 {
		t.Fatalf("%d copies of revision %d, want one per namespace using it", len(p.copies), n)
	}
	return p
}

// clonePV is the PersistentVolume of an instance's clone.
func clonePV(t *testing.T, ns, instance string) string {
	t.Helper()
	pvcs := &corev1.PersistentVolumeClaimList{}
	if err := k8s.List(ctx, pvcs, client.InNamespace(ns), client.MatchingLabels{myaasv1.LabelInstance: instance, myaasv1.LabelRole: myaasv1.RoleInstanceData}); err != nil {
		t.Fatal(err)
	}
	if len(pvcs.Items) != 1 || pvcs.Items[0].Spec.VolumeName == "" {
		t.Fatalf("clone PVCs of %s/%s: %+v", ns, instance, pvcs.Items)
	}
	return pvcs.Items[0].Spec.VolumeName
}
