package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
)

// ProgressReader reads an import pod's progress.
type ProgressReader interface {
	Read(ctx context.Context, pod *corev1.Pod) (*agentapi.Progress, error)
}

// HTTPProgressReader asks the agent over the pod network, which reaches pods both from a manager
// inside the cluster and from one running on a node of a local cluster.
type HTTPProgressReader struct {
	Client *http.Client
	// Port overrides the agent's port (tests serve progress elsewhere).
	Port int
}

// Read implements ProgressReader.
func (h HTTPProgressReader) Read(ctx context.Context, pod *corev1.Pod) (*agentapi.Progress, error) {
	if pod.Status.PodIP == "" {
		return nil, fmt.Errorf("pod %s has no IP yet", pod.Name)
	}
	port := h.Port
	if port == 0 {
		port = agentapi.ProgressPort
	}
	c := h.Client
	if c == nil {
		c = &http.Client{Timeout: 2 * time.Second}
	}
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)) + agentapi.ProgressPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read progress of pod %s: %w", pod.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read progress of pod %s: %s", pod.Name, resp.Status)
	}
	p := &agentapi.Progress{}
	if err := json.NewDecoder(resp.Body).Decode(p); err != nil {
		return nil, fmt.Errorf("decode progress of pod %s: %w", pod.Name, err)
	}
	return p, nil
}

// readProgress copies the agent's progress into the status. Progress is informative only: when the
// agent cannot be reached the import goes on and the last figures stay.
func (r *DatabaseTemplateReconciler) readProgress(ctx context.Context, t *myaasv1.DatabaseTemplate, pod *corev1.Pod) {
	if r.Progress == nil {
		return
	}
	p, err := r.Progress.Read(ctx, pod)
	if err != nil {
		log.FromContext(ctx).V(1).Info("progress not available", "pod", pod.Name, "error", err.Error())
		return
	}
	now := metav1.NewTime(r.Clock.Now())
	t.Status.CurrentImport.Progress = ProgressStatus(p, now)
}

// ProgressStatus renders the agent's figures for the status.
func ProgressStatus(p *agentapi.Progress, now metav1.Time) *myaasv1.ImportProgress {
	out := &myaasv1.ImportProgress{
		Step:        p.Step,
		BytesDone:   p.BytesDone,
		BytesTotal:  p.BytesTotal,
		CurrentFile: p.CurrentFile,
		UpdatedAt:   &now,
	}
	if p.BytesTotal > 0 {
		out.Percent = fmt.Sprintf("%.0f%%", p.Percent)
	}
	if p.ETASeconds > 0 {
		out.ETA = (time.Duration(p.ETASeconds) * time.Second).String()
	}
	return out
}
