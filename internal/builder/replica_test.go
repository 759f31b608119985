package builder

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func TestReplicaImport(t *testing.T) {
	cases := []struct {
		name, node string
	}{
		{"short node name", "node-2"},
		{"node name longer than a label value", strings.Repeat("rack-7.zone-b.", 12) + "example.org"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := template(nil)
			pvc, job, snap, err := ReplicaImport(tmpl, 4, tc.node, "myaas:v1")
			if err != nil {
				t.Fatal(err)
			}
			name := ReplicaName("shop", 4, tc.node)
			if len(pvc.Labels[myaasv1.LabelReplica]) > 63 || len(name) > 63 || len(job.Name) > 63 {
				t.Fatalf("names or labels too long for Kubernetes: %q %q %q", name, job.Name, pvc.Labels[myaasv1.LabelReplica])
			}
			if pvc.Name != name || pvc.Annotations[AnnotationSelectedNode] != tc.node || pvc.Annotations[myaasv1.AnnotationNode] != tc.node ||
				pvc.Labels[myaasv1.LabelRevision] != "4" || pvc.Labels[myaasv1.LabelRole] != myaasv1.RoleTemplateData || metav1.GetControllerOf(pvc) == nil {
				t.Fatalf("copy volume %+v", pvc.ObjectMeta)
			}
			if pvc.Spec.Resources.Requests.Storage().Cmp(resource.MustParse("20Gi")) != 0 {
				t.Fatalf("copy volume size %s, want the template's", pvc.Spec.Resources.Requests.Storage())
			}
			pod := job.Spec.Template.Spec
			terms := pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			if len(terms) != 1 || terms[0].MatchFields[0].Key != "metadata.name" || !slices.Equal(terms[0].MatchFields[0].Values, []string{tc.node}) {
				t.Fatalf("import pod not pinned to %s: %+v", tc.node, terms)
			}
			if job.Labels[myaasv1.LabelRole] != myaasv1.RoleImport || job.Spec.Template.Labels[myaasv1.LabelReplica] != ReplicaSuffix(tc.node) {
				t.Fatalf("import Job labels %v, pod labels %v", job.Labels, job.Spec.Template.Labels)
			}
			var claims []string
			for _, v := range pod.Volumes {
				if v.PersistentVolumeClaim != nil {
					claims = append(claims, v.PersistentVolumeClaim.ClaimName)
				}
			}
			if !slices.Contains(claims, name) || slices.Contains(claims, TemplatePVCName("shop", 4)) {
				t.Fatalf("import pod mounts %v: it must load the copy's volume, never the first import's", claims)
			}
			if snap.Name != name || *snap.Spec.Source.PersistentVolumeClaimName != name || snap.Spec.VolumeSnapshotClassName != tmpl.Spec.Storage.SnapshotClassName {
				t.Fatalf("copy snapshot %+v", snap)
			}
		})
	}
	if ReplicaName("shop", 1, "a") == ReplicaName("shop", 1, "b") {
		t.Fatal("two nodes' copies share a name")
	}
}

func TestInstanceStatefulSetPlacement(t *testing.T) {
	pinned := &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "topology.zfs.openebs.io/nodeid", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}},
	}}}}
	cases := []struct {
		name         string
		node         string
		affinity     *corev1.NodeAffinity
		wantAffinity *corev1.NodeAffinity
		wantSpread   bool
		wantSelected string
	}{
		{name: "on a node's copy", node: "n2", wantAffinity: OnNode("n2"), wantSelected: "n2"},
		{name: "revision without recorded copies: its volume's pin", affinity: pinned, wantAffinity: pinned},
		{name: "storage every node reaches: spread", wantSpread: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := StatefulSetParams{Engine: mustEngine(t, "mariadb"), Image: "mariadb:11", AgentImage: "myaas:v1", Revision: 1, SnapshotName: "shop-r1",
				RestoreSize: resource.MustParse("1Gi"), NodeAffinity: tc.affinity, Node: tc.node}
			sts := InstanceStatefulSet(instance(nil), p)
			spec := sts.Spec.Template.Spec
			var got *corev1.NodeAffinity
			if spec.Affinity != nil {
				got = spec.Affinity.NodeAffinity
			}
			if (got == nil) != (tc.wantAffinity == nil) || (got != nil && got.String() != tc.wantAffinity.String()) {
				t.Fatalf("affinity %v, want %v", got, tc.wantAffinity)
			}
			if spread := len(spec.TopologySpreadConstraints) == 1 && spec.TopologySpreadConstraints[0].WhenUnsatisfiable == corev1.ScheduleAnyway; spread != tc.wantSpread {
				t.Fatalf("spread constraints %+v", spec.TopologySpreadConstraints)
			}
			claim := InstanceClaim(instance(nil), p)
			if claim.Annotations[AnnotationSelectedNode] != tc.wantSelected {
				t.Fatalf("clone asks for node %q, want %q", claim.Annotations[AnnotationSelectedNode], tc.wantSelected)
			}
		})
	}
}
