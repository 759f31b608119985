package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v6/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// A snapshot can only be restored in its own namespace (cross-namespace data sources are behind an
// alpha gate). An instance that clones a template of another namespace is therefore cloned from a
// copy of the revision made in its own namespace: a pre-provisioned VolumeSnapshotContent naming
// the same snapshot on the storage (its handle), bound to a VolumeSnapshot there. The copy's
// deletion policy is Retain: deleting it never deletes the data, which the template's own
// snapshot keeps until the revision is garbage-collected.

// SharedRevision is one revision of a template as copied into another namespace.
type SharedRevision struct {
	// TemplateNamespace, Template and Revision name the revision copied.
	TemplateNamespace string
	Template          string
	Revision          int32
	// Namespace the copy is made in: the instances' namespace.
	Namespace string
	// Driver, SnapshotHandle, SnapshotClassName and SourceVolumeMode are those of the revision's
	// own VolumeSnapshotContent.
	Driver            string
	SnapshotHandle    string
	SnapshotClassName *string
	SourceVolumeMode  *corev1.PersistentVolumeMode
}

// SharedSnapshotName is the copy's VolumeSnapshot in the instances' namespace. Namespace names
// hold no dots, so two templates of different namespaces never get the same name.
func SharedSnapshotName(templateNamespace, template string, n int32) string {
	return boundedName(fmt.Sprintf("%s.%s-r%d", templateNamespace, template, n))
}

// SharedContentName is the copy's VolumeSnapshotContent, cluster-scoped, hence named after the
// namespace it serves as well.
func SharedContentName(namespace, templateNamespace, template string, n int32) string {
	return boundedName(fmt.Sprintf("myaas.%s.%s.%s-r%d", namespace, templateNamespace, template, n))
}

// boundedName keeps a name within the limit of object names, replacing its tail with a hash of
// the whole when it is too long, so that it stays unique.
func boundedName(name string) string {
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:validation.DNS1123SubdomainMaxLength-17] + "-" + hex.EncodeToString(sum[:8])
}

// SharedSnapshotLabels mark both objects of a copy: the template controller finds them by these
// labels, in every namespace, to delete them once no instance there uses the revision.
func SharedSnapshotLabels(s SharedRevision) map[string]string {
	return mergeLabels(TemplateLabels(s.Template, s.Revision, myaasv1.RoleSharedSnapshot), map[string]string{
		myaasv1.LabelTemplateNamespace: s.TemplateNamespace,
		myaasv1.LabelSharedWith:        s.Namespace,
	})
}

// SharedSnapshotContent is the pre-provisioned VolumeSnapshotContent of the copy. It has no owner:
// a cluster-scoped object cannot be owned by a namespaced one; the template controller deletes it.
func SharedSnapshotContent(s SharedRevision) *snapshotv1.VolumeSnapshotContent {
	return &snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{
			Name:   SharedContentName(s.Namespace, s.TemplateNamespace, s.Template, s.Revision),
			Labels: SharedSnapshotLabels(s),
		},
		Spec: snapshotv1.VolumeSnapshotContentSpec{
			VolumeSnapshotRef: corev1.ObjectReference{
				APIVersion: snapshotv1.SchemeGroupVersion.String(),
				Kind:       "VolumeSnapshot",
				Namespace:  s.Namespace,
				Name:       SharedSnapshotName(s.TemplateNamespace, s.Template, s.Revision),
			},
			DeletionPolicy:          snapshotv1.VolumeSnapshotContentRetain,
			Driver:                  s.Driver,
			VolumeSnapshotClassName: s.SnapshotClassName,
			Source:                  snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: &s.SnapshotHandle},
			SourceVolumeMode:        s.SourceVolumeMode,
		},
	}
}

// SharedSnapshot is the copy's VolumeSnapshot in the instances' namespace, bound to its content.
// It is shared by every instance there that clones the revision, so no single one owns it.
func SharedSnapshot(s SharedRevision) *snapshotv1.VolumeSnapshot {
	content := SharedContentName(s.Namespace, s.TemplateNamespace, s.Template, s.Revision)
	return &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			Name:      SharedSnapshotName(s.TemplateNamespace, s.Template, s.Revision),
			Namespace: s.Namespace,
			Labels:    SharedSnapshotLabels(s),
		},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{VolumeSnapshotContentName: &content},
			VolumeSnapshotClassName: s.SnapshotClassName,
		},
	}
}
