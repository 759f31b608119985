//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// s3ServerImage is SeaweedFS, built by hack/build-images.sh s3server and imported into the
	// local cluster: master, volume server, filer and S3 gateway in one process.
	s3ServerImage = "localhost/myaas/s3server:dev"
	s3ServerName  = "s3"
	s3Port        = 8333
	// s3CredentialsSecret holds the keys under the names spec.source.s3.credentialsSecretRef
	// expects. The server takes its only identity from the same Secret, so a template that does
	// not pass the keys on is refused.
	s3CredentialsSecret = "s3-credentials"
)

// startS3Server runs an S3 server in the namespace, with fresh keys in the Secret
// s3CredentialsSecret, and returns its endpoint as pods reach it (through cluster DNS).
func startS3Server(t *testing.T, ns string) (endpoint string) {
	t.Helper()
	key := make([]byte, 20)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s3CredentialsSecret},
		StringData: map[string]string{"accessKeyID": "e2e-" + ns, "secretAccessKey": hex.EncodeToString(key)},
	}
	fromSecret := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: s3CredentialsSecret}, Key: key}}}
	}
	labels := map[string]string{"app": s3ServerName}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s3ServerName},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "s3", Image: s3ServerImage, ImagePullPolicy: corev1.PullIfNotPresent,
					// Only the S3 gateway and what it stores through; nothing that phones home.
					Args: []string{"mini", "-dir=/data", "-s3.port=" + strconv.Itoa(s3Port),
						"-webdav=false", "-admin.ui=false", "-master.telemetry=false",
						"-s3.port.iceberg=0", "-s3.port.lance=0"},
					Env:          []corev1.EnvVar{fromSecret("AWS_ACCESS_KEY_ID", "accessKeyID"), fromSecret("AWS_SECRET_ACCESS_KEY", "secretAccessKey")},
					Ports:        []corev1.ContainerPort{{ContainerPort: s3Port}},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/healthz", Port: intstr.FromInt32(s3Port)}}, PeriodSeconds: 1},
				}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s3ServerName},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: s3Port, TargetPort: intstr.FromInt32(s3Port)}}},
	}
	for _, o := range []client.Object{secret, dep, svc} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 180*time.Second, "S3 server ready", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
			return err
		}
		if dep.Status.ReadyReplicas != 1 {
			return fmt.Errorf("%d ready", dep.Status.ReadyReplicas)
		}
		return nil
	})
	// The health check passes before the filer behind the gateway takes writes.
	c := s3Client(t, ns)
	eventually(t, 60*time.Second, "S3 server answering", func() error {
		_, err := c.ListBuckets(ctx)
		return err
	})
	return fmt.Sprintf("%s.%s.svc:%d", s3ServerName, ns, s3Port)
}

// s3Client talks to the namespace's S3 server from the test process, with the Secret's keys.
func s3Client(t *testing.T, ns string) *minio.Client {
	t.Helper()
	keys := secretData(t, ns, s3CredentialsSecret)
	return s3ClientWith(t, ns, credentials.NewStaticV4(keys["accessKeyID"], keys["secretAccessKey"], ""))
}

// s3ClientWith reaches the server pod by its IP, as connect reaches databases: the cluster's host
// has no cluster DNS, and Service addresses are routed nowhere outside kube-proxy's rules.
func s3ClientWith(t *testing.T, ns string, creds *credentials.Credentials) *minio.Client {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": s3ServerName}); err != nil {
		t.Fatal(err)
	}
	var addr string
	for _, p := range pods.Items {
		if p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			addr = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(s3Port))
		}
	}
	if addr == "" {
		t.Fatalf("no running S3 server pod in %s", ns)
	}
	c, err := minio.New(addr, &minio.Options{Creds: creds, Secure: false})
	if err != nil {
		t.Fatalf("S3 client: %v", err)
	}
	return c
}

// s3Upload creates the bucket, unless it exists, and stores the objects in it.
func s3Upload(t *testing.T, ns, bucket string, objects map[string][]byte) {
	t.Helper()
	c := s3Client(t, ns)
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		var resp minio.ErrorResponse
		if !errors.As(err, &resp) || resp.Code != "BucketAlreadyOwnedByYou" {
			t.Fatalf("creating bucket %s: %v", bucket, err)
		}
	}
	for key, content := range objects {
		if _, err := c.PutObject(ctx, bucket, key, bytes.NewReader(content), int64(len(content)), minio.PutObjectOptions{}); err != nil {
			t.Fatalf("uploading s3://%s/%s: %v", bucket, key, err)
		}
	}
}
