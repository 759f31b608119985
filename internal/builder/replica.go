package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// AnnotationSelectedNode asks the external-provisioner to make a volume on that node. The
// scheduler writes it for volumes bound when their pod is scheduled; the operator writes it for
// volumes it places itself.
const AnnotationSelectedNode = "volume.kubernetes.io/selected-node"

// ReplicaSuffix stands for a node in the names and labels of a replica's objects: a node name may
// be 253 characters long, a label value only 63.
func ReplicaSuffix(node string) string {
	sum := sha256.Sum256([]byte(node))
	return hex.EncodeToString(sum[:4])
}

// ReplicaName is the volume and the snapshot of revision n's copy on node.
func ReplicaName(template string, n int32, node string) string {
	return fmt.Sprintf("%s-r%d-%s", template, n, ReplicaSuffix(node))
}

// ReplicaImportJobName is the Job that loads revision n's copy on node.
func ReplicaImportJobName(template string, n int32, node string) string {
	return fmt.Sprintf("%s-import-r%d-%s", template, n, ReplicaSuffix(node))
}

// OnNode pins a pod to a node by name: the node a volume it mounts lives on.
func OnNode(node string) *corev1.NodeAffinity {
	return &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{
			Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
		}}}},
	}}
}

// ReplicaImport is what puts revision n on another node than its first import's: a volume made on
// that node, the import Job pinned there, and the snapshot of the volume once loaded. With storage
// that keeps volumes on their node, importing again is the one way every driver supports; the
// Job loads the same source with the same spec as the first import.
func ReplicaImport(t *myaasv1.DatabaseTemplate, n int32, node, agentImage string) (*corev1.PersistentVolumeClaim, *batchv1.Job, *snapshotv1.VolumeSnapshot, error) {
	name := ReplicaName(t.Name, n, node)
	mark := func(labels map[string]string) map[string]string {
		labels[myaasv1.LabelReplica] = ReplicaSuffix(node)
		return labels
	}
	pvc := TemplatePVC(t, n)
	pvc.Name = name
	pvc.Labels = mark(pvc.Labels)
	pvc.Annotations = map[string]string{myaasv1.AnnotationNode: node, AnnotationSelectedNode: node}

	job, err := ImportJob(t, n, 1, agentImage)
	if err != nil {
		return nil, nil, nil, err
	}
	job.Name = ReplicaImportJobName(t.Name, n, node)
	job.Labels = mark(job.Labels)
	job.Annotations = map[string]string{myaasv1.AnnotationNode: node}
	pod := &job.Spec.Template
	pod.Labels = mark(pod.Labels)
	pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: OnNode(node)}
	for i := range pod.Spec.Volumes {
		if c := pod.Spec.Volumes[i].PersistentVolumeClaim; c != nil && c.ClaimName == TemplatePVCName(t.Name, n) {
			c.ClaimName = name
		}
	}

	snap := TemplateSnapshot(t, n)
	snap.Name = name
	snap.Labels = mark(snap.Labels)
	snap.Annotations = map[string]string{myaasv1.AnnotationNode: node}
	snap.Spec.Source.PersistentVolumeClaimName = ptr.To(name)
	return pvc, job, snap, nil
}
