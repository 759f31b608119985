//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/myaas/myaas/test/e2e/dumpgen"
	"github.com/myaas/myaas/test/e2e/fixture"
)

// The dump every source serves: a few MB, so an import takes seconds.
var shopDump = dumpgen.Spec{Database: "shop", Rows: 100000, Seed: 1}

// startDumpServer runs the dump server in the namespace and returns its base URL. rate (bytes/s)
// slows the download so that an import lasts long enough to be watched or interrupted.
func startDumpServer(t *testing.T, ns string, rate int) string {
	t.Helper()
	dep, svc := fixture.DumpServer(ns, shopDump.Rows, rate)
	for _, o := range []client.Object{dep, svc} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 120*time.Second, "dump server ready", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
			return err
		}
		if dep.Status.ReadyReplicas != 1 {
			return fmt.Errorf("%d ready", dep.Status.ReadyReplicas)
		}
		return nil
	})
	return fmt.Sprintf("http://dumpserver.%s.svc.cluster.local:8080", ns)
}

// dumpsPVC makes a PVC holding the dumps, written by a Job, as a backup system would leave them.
func dumpsPVC(t *testing.T, ns string) string {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly-dumps"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr(storageClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("256Mi")}},
		},
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "write-dumps"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "write", Image: fixture.DumpServerImage, ImagePullPolicy: corev1.PullIfNotPresent,
					Command:      []string{"/dumpserver", "write", "--dir=/dumps", "--rows=" + strconv.Itoa(shopDump.Rows), "--seed=1"},
					VolumeMounts: []corev1.VolumeMount{{Name: "dumps", MountPath: "/dumps"}},
				}},
				Volumes: []corev1.Volume{{Name: "dumps", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name}}}},
			}},
		},
	}
	for _, o := range []client.Object{pvc, job} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 180*time.Second, "dumps written", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil {
			return err
		}
		if job.Status.Failed > 0 {
			t.Fatalf("writing the dumps failed: %+v", job.Status)
		}
		if job.Status.Succeeded != 1 {
			return fmt.Errorf("not done")
		}
		return nil
	})
	// The import pod mounts the PVC next; the writer must be gone from the node's point of view.
	_ = k8s.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationForeground))
	return pvc.Name
}

// countOwned counts the template's children of one kind: duplicates are bugs.
func countOwned(t *testing.T, ns, template string, list client.ObjectList) int {
	t.Helper()
	if err := k8s.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{"myaas.io/template": template}); err != nil {
		t.Fatal(err)
	}
	n := 0
	switch l := list.(type) {
	case *batchv1.JobList:
		for _, j := range l.Items {
			if j.Labels["myaas.io/role"] == "import" {
				n++
			}
		}
	case *corev1.PersistentVolumeClaimList:
		for _, p := range l.Items {
			if p.Labels["myaas.io/role"] == "template-data" {
				n++
			}
		}
	default:
		n = lenList(list)
	}
	return n
}
