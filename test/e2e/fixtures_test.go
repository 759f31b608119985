//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
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
	waitDeploymentReady(t, dep, 120*time.Second)
	return fmt.Sprintf("http://dumpserver.%s.svc.cluster.local:8080", ns)
}

// waitDeploymentReady waits for the one replica of a test server to be ready.
func waitDeploymentReady(t *testing.T, dep *appsv1.Deployment, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, dep.Name+" ready", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
			return err
		}
		if dep.Status.ReadyReplicas != 1 {
			return fmt.Errorf("%d ready", dep.Status.ReadyReplicas)
		}
		return nil
	})
}

// dumpsPVC makes a PVC holding the dumps, written by a Job, as a backup system would leave them.
func dumpsPVC(t *testing.T, ns string) string {
	t.Helper()
	return volumeWrittenByJob(t, ns, "nightly-dumps", "256Mi", corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "write", Image: fixture.DumpServerImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command:      []string{"/dumpserver", "write", "--dir=/dumps", "--rows=" + strconv.Itoa(shopDump.Rows), "--seed=1"},
			VolumeMounts: []corev1.VolumeMount{{Name: "dumps", MountPath: "/dumps"}},
		}},
	}, "dumps")
}

// volumeWrittenByJob makes a PVC of size and fills it with a Job running pod, in which the PVC is
// the volume called volume. It returns once the Job has succeeded and is gone.
func volumeWrittenByJob(t *testing.T, ns, name, size string, pod corev1.PodSpec, volume string) string {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr(storageClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	pod.RestartPolicy = corev1.RestartPolicyNever
	pod.Volumes = append(pod.Volumes, corev1.Volume{Name: volume, VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name}}})
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "write-" + name},
		Spec:       batchv1.JobSpec{BackoffLimit: ptr[int32](0), Template: corev1.PodTemplateSpec{Spec: pod}},
	}
	for _, o := range []client.Object{pvc, job} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 300*time.Second, "volume "+name+" written", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil {
			return err
		}
		if job.Status.Failed > 0 {
			t.Fatalf("Job %s failed (see `kubectl -n %s logs job/%s`): %+v", job.Name, ns, job.Name, job.Status)
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
