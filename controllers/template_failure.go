package controllers

import (
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
)

// attemptFailure is why an import attempt ended without a loaded volume.
type attemptFailure struct {
	reason  string
	message string
	// retryable: something outside the data stopped the attempt; another may succeed.
	retryable bool
}

// classifyImportFailure names the cause of a failed import Job. The kubelet's and the scheduler's
// word comes first (an OOM kill makes the agent report only that its server died), then the
// agent's own report; a pod that is gone left no word at all and was deleted or lost.
func classifyImportFailure(job *batchv1.Job, pod *corev1.Pod, res corev1.ResourceRequirements) attemptFailure {
	if jobFailedWith(job, batchv1.JobReasonDeadlineExceeded) {
		return attemptFailure{reason: myaasv1.ReasonImportJobFailed,
			message: fmt.Sprintf("the import ran longer than spec.import.timeout (Job %s: DeadlineExceeded)", job.Name)}
	}
	if pod == nil {
		return attemptFailure{reason: myaasv1.ReasonPodDisrupted, retryable: true,
			message: fmt.Sprintf("the import pod of Job %s was deleted or lost with its node", job.Name)}
	}
	if term := terminated(pod, builder.ImportContainer); term != nil && term.Reason == "OOMKilled" {
		limit := "no limit"
		if l, ok := res.Limits[corev1.ResourceMemory]; ok {
			limit = l.String()
		}
		return attemptFailure{reason: myaasv1.ReasonOOMKilled, retryable: true,
			message: fmt.Sprintf("OOMKilled: raise spec.import.resources.limits.memory (now %s)", limit)}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return attemptFailure{reason: myaasv1.ReasonPodDisrupted, retryable: true,
				message: fmt.Sprintf("the import pod was stopped by the cluster: %s: %s", c.Reason, c.Message)}
		}
	}
	if pod.Status.Reason == "Evicted" || pod.Status.Reason == "Preempting" || pod.Status.Reason == "NodeLost" {
		return attemptFailure{reason: myaasv1.ReasonPodDisrupted, retryable: true,
			message: fmt.Sprintf("the import pod was stopped by the cluster: %s: %s", pod.Status.Reason, pod.Status.Message)}
	}
	report := parseImportReport(terminationMessage(pod, builder.ImportContainer))
	switch report.Outcome {
	case agentapi.OutcomeFailed:
		return attemptFailure{reason: orDefault(report.Reason, myaasv1.ReasonImportJobFailed), message: report.Message}
	case agentapi.OutcomeInterrupted:
		return attemptFailure{reason: orDefault(report.Reason, myaasv1.ReasonPodDisrupted), message: report.Message, retryable: true}
	}
	if term := terminated(pod, builder.ImportContainer); term != nil {
		if term.ExitCode > 128 {
			// No report: a signal killed the agent before it could write one.
			return attemptFailure{reason: myaasv1.ReasonPodDisrupted, retryable: true,
				message: fmt.Sprintf("the import container was killed by signal %d", term.ExitCode-128)}
		}
		// The agent stopped before it could report (bad arguments, say): it would again.
		return attemptFailure{reason: myaasv1.ReasonImportJobFailed,
			message: fmt.Sprintf("the import agent failed without a report (exit code %d): %s", term.ExitCode, lastLine(term.Message))}
	}
	return attemptFailure{reason: myaasv1.ReasonPodDisrupted, retryable: true,
		message: fmt.Sprintf("the import pod of Job %s stopped before its container ended", job.Name)}
}

func jobFailedWith(job *batchv1.Job, reason string) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue && c.Reason == reason {
			return true
		}
	}
	return false
}

// imagePullFailure says why a pod cannot start its containers' images, or "".
func imagePullFailure(pod *corev1.Pod) string {
	if pod == nil {
		return ""
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
			return fmt.Sprintf("container %s cannot pull image %s: %s: %s", cs.Name, cs.Image, w.Reason, w.Message)
		}
	}
	return ""
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// lastLine is the last non-empty line of a container's log tail, at most 300 bytes: the agent's
// own last word, without the rest of the log.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if len(last) > 300 {
		last = strings.ToValidUTF8(last[:300], "") + "..."
	}
	return last
}
