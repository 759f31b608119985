package builder

import (
	"strconv"
	"strings"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func TestSharedSnapshotCopy(t *testing.T) {
	cases := []struct {
		name        string
		in          SharedRevision
		wantContent string
		wantSnap    string
	}{
		{
			name: "revision 3 of shared/shop copied into dev-a",
			in: SharedRevision{TemplateNamespace: "shared", Template: "shop", Revision: 3, Namespace: "dev-a",
				Driver: "btrfs.csi.myaas.io", SnapshotHandle: "snap-123", SnapshotClassName: ptr.To("myaas-btrfs"),
				SourceVolumeMode: ptr.To(corev1.PersistentVolumeFilesystem)},
			wantContent: "myaas.dev-a.shared.shop-r3",
			wantSnap:    "shared.shop-r3",
		},
		{
			name: "no snapshot class: the content names none either",
			in: SharedRevision{TemplateNamespace: "data", Template: "crm", Revision: 1, Namespace: "ci-pr-1234",
				Driver: "zfs.csi.openebs.io", SnapshotHandle: "pvc-1@snapshot-2"},
			wantContent: "myaas.ci-pr-1234.data.crm-r1",
			wantSnap:    "data.crm-r1",
		},
		{
			name: "names of templates in other namespaces cannot collide with a dash",
			in: SharedRevision{TemplateNamespace: "shared-shop", Template: "db", Revision: 1, Namespace: "dev",
				Driver: "d", SnapshotHandle: "h"},
			wantContent: "myaas.dev.shared-shop.db-r1",
			wantSnap:    "shared-shop.db-r1",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			content, snap := SharedSnapshotContent(tc.in), SharedSnapshot(tc.in)
			if content.Name != tc.wantContent || snap.Name != tc.wantSnap {
				t.Fatalf("names %q, %q; want %q, %q", content.Name, snap.Name, tc.wantContent, tc.wantSnap)
			}
			if content.Namespace != "" || len(content.OwnerReferences) != 0 {
				t.Errorf("content must be cluster-scoped and unowned: %+v", content.ObjectMeta)
			}
			cs := content.Spec
			if cs.DeletionPolicy != snapshotv1.VolumeSnapshotContentRetain {
				t.Errorf("deletionPolicy %s: deleting a copy must never delete the data", cs.DeletionPolicy)
			}
			if cs.Driver != tc.in.Driver || cs.Source.SnapshotHandle == nil || *cs.Source.SnapshotHandle != tc.in.SnapshotHandle || cs.Source.VolumeHandle != nil {
				t.Errorf("content source %+v driver %s, want handle %s of %s", cs.Source, cs.Driver, tc.in.SnapshotHandle, tc.in.Driver)
			}
			if ref := cs.VolumeSnapshotRef; ref.Namespace != tc.in.Namespace || ref.Name != snap.Name || ref.Kind != "VolumeSnapshot" {
				t.Errorf("content bound to %+v, want %s/%s", ref, tc.in.Namespace, snap.Name)
			}
			if snap.Namespace != tc.in.Namespace || snap.Spec.Source.VolumeSnapshotContentName == nil ||
				*snap.Spec.Source.VolumeSnapshotContentName != content.Name || snap.Spec.Source.PersistentVolumeClaimName != nil {
				t.Errorf("snapshot %s/%s source %+v, want the content %s", snap.Namespace, snap.Name, snap.Spec.Source, content.Name)
			}
			if !ptr.Equal(cs.VolumeSnapshotClassName, tc.in.SnapshotClassName) || !ptr.Equal(snap.Spec.VolumeSnapshotClassName, tc.in.SnapshotClassName) {
				t.Errorf("snapshot class %v / %v, want %v", cs.VolumeSnapshotClassName, snap.Spec.VolumeSnapshotClassName, tc.in.SnapshotClassName)
			}
			for _, l := range []map[string]string{content.Labels, snap.Labels} {
				want := map[string]string{
					"app.kubernetes.io/managed-by": "myaas", myaasv1.LabelRole: myaasv1.RoleSharedSnapshot,
					myaasv1.LabelTemplate: tc.in.Template, myaasv1.LabelTemplateNamespace: tc.in.TemplateNamespace,
					myaasv1.LabelRevision: strconv.Itoa(int(tc.in.Revision)), myaasv1.LabelSharedWith: tc.in.Namespace,
				}
				for k, v := range want {
					if l[k] != v {
						t.Errorf("label %s=%q, want %q", k, l[k], v)
					}
				}
			}
		})
	}
}

func TestSharedNamesStayValid(t *testing.T) {
	long := strings.Repeat("t", 250)
	a := SharedContentName("dev-a", "shared", long, 1)
	b := SharedContentName("dev-a", "shared", long, 2)
	if a == b {
		t.Fatalf("two revisions share the name %s", a)
	}
	for _, n := range []string{a, b, SharedSnapshotName("shared", long, 1)} {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("%s: %v", n, errs)
		}
	}
}

func TestInstanceLabelsNameTheTemplateNamespaceOnlyAcrossNamespaces(t *testing.T) {
	for _, tc := range []struct {
		ref  myaasv1.TemplateReference
		want string
	}{
		{myaasv1.TemplateReference{Name: "shop"}, ""},
		{myaasv1.TemplateReference{Name: "shop", Namespace: "dev-a"}, ""},
		{myaasv1.TemplateReference{Name: "shop", Namespace: "shared"}, "shared"},
	} {
		inst := &myaasv1.DatabaseInstance{}
		inst.Namespace, inst.Name, inst.Spec.TemplateRef = "dev-a", "mine", tc.ref
		got, ok := InstanceLabels(inst)[myaasv1.LabelTemplateNamespace]
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("templateRef %+v: label %q (set %v), want %q", tc.ref, got, ok, tc.want)
		}
	}
}
