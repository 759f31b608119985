package controllers

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
)

func TestClassifyImportFailure(t *testing.T) {
	failedJob := func(reason string) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "shop-import-r2"}, Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason},
		}}}
	}
	report := func(outcome agentapi.Outcome, reason, msg string) string {
		b, _ := json.Marshal(agentapi.Report{Outcome: outcome, Reason: reason, Message: msg})
		return string(b)
	}
	pod := func(term *corev1.ContainerStateTerminated, conds ...corev1.PodCondition) *corev1.Pod {
		p := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Conditions: conds}}
		if term != nil {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: builder.ImportContainer, State: corev1.ContainerState{Terminated: term}}}
		}
		return p
	}
	limits := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("96Mi")}}
	cases := []struct {
		name      string
		job       *batchv1.Job
		pod       *corev1.Pod
		reason    string
		retryable bool
		says      string
	}{
		{"broken dump: the agent's reason, never retried", failedJob("BackoffLimitExceeded"),
			pod(&corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: report(agentapi.OutcomeFailed, agentapi.ReasonTruncatedDump, "truncated: no '-- Dump completed' trailer")}),
			agentapi.ReasonTruncatedDump, false, "truncated"},
		{"image without the backup tool: named, never retried", failedJob("BackoffLimitExceeded"),
			pod(&corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: report(agentapi.OutcomeFailed, agentapi.ReasonBackupToolMissing, "image mariadb:11.4 has no mariadb-backup or mariabackup")}),
			agentapi.ReasonBackupToolMissing, false, "image mariadb:11.4 has no mariadb-backup"},
		{"OOM kill wins over the agent's word that its server died", failedJob("BackoffLimitExceeded"),
			pod(&corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", Message: report(agentapi.OutcomeFailed, agentapi.ReasonServerError, "server exited")}),
			myaasv1.ReasonOOMKilled, true, "OOMKilled: raise spec.import.resources.limits.memory (now 96Mi)"},
		{"evicted", failedJob("BackoffLimitExceeded"),
			pod(nil, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting"}),
			myaasv1.ReasonPodDisrupted, true, "EvictionByEvictionAPI"},
		{"preempted", failedJob("BackoffLimitExceeded"),
			pod(nil, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "PreemptionByScheduler"}),
			myaasv1.ReasonPodDisrupted, true, "PreemptionByScheduler"},
		{"pod deleted or lost with its node", failedJob("BackoffLimitExceeded"), nil,
			myaasv1.ReasonPodDisrupted, true, "deleted or lost"},
		{"agent stopped by a signal", failedJob("BackoffLimitExceeded"),
			pod(&corev1.ContainerStateTerminated{ExitCode: 1, Message: report(agentapi.OutcomeInterrupted, agentapi.ReasonAgentStopped, "the import was stopped")}),
			agentapi.ReasonAgentStopped, true, "stopped"},
		{"stalled source", failedJob("BackoffLimitExceeded"),
			pod(&corev1.ContainerStateTerminated{ExitCode: 1, Message: report(agentapi.OutcomeInterrupted, agentapi.ReasonSourceStalled, "source sent nothing for 2m0s")}),
			agentapi.ReasonSourceStalled, true, "sent nothing"},
		{"killed before writing a report", failedJob("BackoffLimitExceeded"),
			pod(&corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error"}),
			myaasv1.ReasonPodDisrupted, true, "signal 9"},
		{"failed before it could report: not retried", failedJob("BackoffLimitExceeded"),
			pod(&corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: "Usage of agent import:\n  -datadir string\nmyaas: flag provided but not defined: -x\n"}),
			myaasv1.ReasonImportJobFailed, false, "flag provided but not defined: -x"},
		{"over spec.import.timeout: not retried", failedJob(batchv1.JobReasonDeadlineExceeded), nil,
			myaasv1.ReasonImportJobFailed, false, "spec.import.timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classifyImportFailure(tc.job, tc.pod, limits)
			if got.reason != tc.reason || got.retryable != tc.retryable || !strings.Contains(got.message, tc.says) {
				t.Fatalf("got %+v, want reason %s retryable %v saying %q", got, tc.reason, tc.retryable, tc.says)
			}
		})
	}
}

func TestImagePullFailure(t *testing.T) {
	waiting := func(reason string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "import", Image: "mariadb:does-not-exist",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "not found"}},
		}}}}
	}
	for reason, stuck := range map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ContainerCreating": false, "PodInitializing": false} {
		msg := imagePullFailure(waiting(reason))
		if (msg != "") != stuck || (stuck && !strings.Contains(msg, "mariadb:does-not-exist")) {
			t.Errorf("%s: %q", reason, msg)
		}
	}
	if imagePullFailure(nil) != "" {
		t.Error("no pod, no pull failure")
	}
}

func TestImportBackoff(t *testing.T) {
	for attempt, want := range map[int32]time.Duration{2: 10 * time.Second, 3: 20 * time.Second, 4: 40 * time.Second, 10: 5 * time.Minute} {
		if got := importBackoff(attempt); got != want {
			t.Errorf("attempt %d: %s, want %s", attempt, got, want)
		}
	}
}
