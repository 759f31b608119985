package controllers

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
	"github.com/myaas/myaas/internal/mariadbtest"
)

// The kubelet may post a new pod's IP before it reports the server container running (an init
// container has just finished, or its next look at the runtime is still to come). The instance
// is Ready as soon as the Secret's credentials log in, and not before.
func TestInstanceReadyOnLoginBeforeKubeletReportsServerRunning(t *testing.T) {
	requireEnv(t)
	srv := mariadbtest.Start(t)
	startManager(t, Options{Address: loopbackTo(srv)})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	newInstance(t, ns, "early", "shop")
	creds := credentials(t, ns, "early")
	playInstancePodStatus(t, ns, "early", func(pod *corev1.Pod) {
		pod.Status.Phase = corev1.PodPending
		pod.Status.PodIP = "127.0.0.1"
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: builder.DatabaseContainer, Image: pod.Spec.Containers[0].Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}},
		}}
	})

	// The server does not know the Secret's credentials yet: the instance waits for it.
	eventually(t, 10*time.Second, "phase Starting", func() error {
		if got := getInstance(t, ns, "early"); got.Status.Phase != myaasv1.InstanceStarting {
			return fmt.Errorf("phase %s", got.Status.Phase)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // several login attempts
	if got := getInstance(t, ns, "early"); got.Status.Phase == myaasv1.InstanceReady {
		t.Fatalf("Ready before the Secret's credentials logged in: %+v", got.Status.Conditions)
	}

	grant(t, srv, creds)
	eventually(t, 5*time.Second, "Ready", func() error {
		got := getInstance(t, ns, "early")
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, "True", myaasv1.ReasonCredentialsVerified)
	})
}
