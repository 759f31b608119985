package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func newRefreshCmd(e *env) *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "refresh TEMPLATE",
		Short: "Import the template's source now, as its schedule would",
		Long: `Request a new revision of the template now: a Job from the CronJob <TEMPLATE>-refresh, as
"kubectl create job --from=cronjob/<TEMPLATE>-refresh" makes. With --wait, follow the import's
progress and exit non-zero with the operator's failure message (file, line, statement) if it
fails; the previous revision keeps serving either way.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := e.connectCluster(); err != nil {
				return err
			}
			return e.refresh(cmd.Context(), args[0], wait, timeout)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the import to end, showing its progress")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Hour, "how long to wait for the import")
	return cmd
}

// refreshCronJobName is the operator's name for a template's CronJob.
func refreshCronJobName(template string) string { return template + "-refresh" }

// jobFromCronJob is what `kubectl create job --from=cronjob/...` makes: the CronJob's Job
// template, owned by the CronJob and marked as started by hand.
func jobFromCronJob(cj *batchv1.CronJob, name string) *batchv1.Job {
	annotations := map[string]string{"cronjob.kubernetes.io/instantiate": "manual"}
	for k, v := range cj.Spec.JobTemplate.Annotations {
		annotations[k] = v
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   cj.Namespace,
			Labels:      cj.Spec.JobTemplate.Labels,
			Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: ptr.To(true),
			}},
		},
		Spec: cj.Spec.JobTemplate.Spec,
	}
}

func (e *env) refresh(ctx context.Context, template string, wait bool, timeout time.Duration) error {
	t, err := e.getTemplate(ctx, template)
	if err != nil {
		return err
	}
	cj := &batchv1.CronJob{}
	err = e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: refreshCronJobName(template)}, cj)
	if apierrors.IsNotFound(err) {
		if t.Spec.Refresh == nil {
			return fmt.Errorf("template %s has no spec.refresh, so no CronJob %s to start a refresh from: add spec.refresh (a schedule, suspend: true for manual refreshes only)", template, refreshCronJobName(template))
		}
		return fmt.Errorf("CronJob %s not found: the operator has not created it yet (see kubectl describe databasetemplate %s)", refreshCronJobName(template), template)
	}
	if err != nil {
		return apiError(err, "get CronJob "+refreshCronJobName(template))
	}
	job := jobFromCronJob(cj, fmt.Sprintf("%s-manual-%s", refreshCronJobName(template), rand.String(5)))
	if err := e.c.Create(ctx, job); err != nil {
		return apiError(err, "create refresh Job")
	}
	fmt.Fprintf(e.Err, "refresh of %s requested (job %s)\n", template, job.Name)
	if !wait {
		return nil
	}
	return e.followRefresh(ctx, template, job.Name, timeout)
}

// refreshState reads, from the template's status, what became of the refresh Job: the revision
// it started, and whether that revision is served or failed.
type refreshState struct {
	revision int32 // 0 while the request waits for a running import to end
	done     bool
	failure  *myaasv1.FailedImport
	progress string
}

func readRefresh(t *myaasv1.DatabaseTemplate, job string, revision int32) refreshState {
	st := refreshState{revision: revision, progress: progressLine(t)}
	if st.revision == 0 {
		if t.Status.HandledRefreshJob != job {
			st.progress = "waiting for the operator to start the import"
			if ci := t.Status.CurrentImport; ci != nil {
				st.progress = fmt.Sprintf("queued behind the running import of revision %d", ci.Revision)
			}
			return st
		}
		// The operator records the revision before it creates anything; an import that ended
		// between two polls is found through the next revision number.
		if ci := t.Status.CurrentImport; ci != nil && ci.Trigger == "refresh job "+job {
			st.revision = ci.Revision
		} else {
			st.revision = t.Status.NextRevision - 1
		}
	}
	if f := t.Status.LastFailure; f != nil && f.Revision == st.revision {
		st.failure, st.done = f, true
		return st
	}
	for _, r := range t.Status.Revisions {
		if r.Revision == st.revision {
			st.done = true
		}
	}
	return st
}

func progressLine(t *myaasv1.DatabaseTemplate) string {
	ci := t.Status.CurrentImport
	if ci == nil {
		return t.Status.Summary
	}
	parts := []string{fmt.Sprintf("revision %d: %s", ci.Revision, ci.Phase)}
	if p := ci.Progress; p != nil {
		if p.Percent != "" {
			parts = append(parts, p.Percent)
		}
		if p.CurrentFile != "" {
			parts = append(parts, p.CurrentFile)
		}
		if p.ETA != "" {
			parts = append(parts, "ETA "+p.ETA)
		}
	}
	if ci.HoldMessage != "" {
		parts = append(parts, ci.HoldMessage)
	}
	if t.Status.Summary != "" {
		parts = append(parts, "("+t.Status.Summary+")")
	}
	return strings.Join(parts, " ")
}

func (e *env) followRefresh(ctx context.Context, template, job string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var st refreshState
	lastLine := ""
	for {
		t := &myaasv1.DatabaseTemplate{}
		err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: template}, t)
		switch {
		case apierrors.IsNotFound(err):
			return fmt.Errorf("template %s was deleted during the refresh", template)
		case err != nil && ctx.Err() == nil:
			return apiError(err, "get template "+template)
		case err == nil:
			st = readRefresh(t, job, st.revision)
			if st.progress != lastLine && st.progress != "" {
				fmt.Fprintf(e.Err, "%s  %s\n", time.Since(start).Round(time.Second), st.progress)
				lastLine = st.progress
			}
			if st.failure != nil {
				return fmt.Errorf("import of %s revision %d failed (%s): %s", template, st.revision, st.failure.Reason, st.failure.Message)
			}
			if st.done {
				fmt.Fprintf(e.Out, "template %s: revision %d imported in %s\n", template, st.revision, time.Since(start).Round(time.Second))
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s waiting for the refresh of %s: %s", timeout, template, lastLine)
		case <-time.After(time.Second):
		}
	}
}

func newLogsCmd(e *env) *cobra.Command {
	var follow bool
	var tail int64
	cmd := &cobra.Command{
		Use:   "logs TEMPLATE",
		Short: "Print the log of the template's current or last import",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := e.connectCluster(); err != nil {
				return err
			}
			return e.importLogs(cmd.Context(), args[0], follow, tail, e.Out)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "stream the log while the import runs")
	cmd.Flags().Int64Var(&tail, "tail", -1, "lines from the end to show (-1: all)")
	return cmd
}

func (e *env) importLogs(ctx context.Context, template string, follow bool, tail int64, w io.Writer) error {
	t, err := e.getTemplate(ctx, template)
	if err != nil {
		return err
	}
	jobs := &batchv1.JobList{}
	if err := e.c.List(ctx, jobs, client.InNamespace(e.namespace), client.MatchingLabels{
		myaasv1.LabelTemplate: template, myaasv1.LabelRole: myaasv1.RoleImport,
	}); err != nil {
		return apiError(err, "list import Jobs")
	}
	var names []string
	for _, j := range jobs.Items {
		names = append(names, j.Name)
	}
	pods := &corev1.PodList{}
	if err := e.c.List(ctx, pods, client.InNamespace(e.namespace), client.MatchingLabels{
		myaasv1.LabelTemplate: template, myaasv1.LabelRole: myaasv1.RoleImport,
	}); err != nil {
		return apiError(err, "list import pods")
	}
	pod := newestImportPod(pods.Items, names)
	if pod == nil {
		msg := fmt.Sprintf("template %s has no import pod left: a failed import's Job goes with its volume unless spec.import.keepFailedVolume is set, and those of old revisions with their revisions", template)
		if f := t.Status.LastFailure; f != nil {
			msg += fmt.Sprintf("; the last failure (revision %d, %s): %s", f.Revision, f.Reason, f.Message)
		}
		return errors.New(msg)
	}
	fmt.Fprintf(e.Err, "pod %s\n", pod.Name)
	opts := &corev1.PodLogOptions{Container: importContainer(pod), Follow: follow}
	if tail >= 0 {
		opts.TailLines = &tail
	}
	stream, err := e.cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, opts).Stream(ctx)
	if err != nil {
		return apiError(err, "read the log of "+pod.Name)
	}
	defer stream.Close()
	if _, err := io.Copy(w, stream); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read the log of %s: %w", pod.Name, err)
	}
	return nil
}

// newestImportPod is the newest pod of the template's import Jobs.
func newestImportPod(pods []corev1.Pod, jobs []string) *corev1.Pod {
	ofJob := map[string]bool{}
	for _, j := range jobs {
		ofJob[j] = true
	}
	var cands []*corev1.Pod
	for i := range pods {
		p := &pods[i]
		name := p.Labels["batch.kubernetes.io/job-name"]
		if name == "" {
			name = p.Labels["job-name"]
		}
		if ofJob[name] {
			cands = append(cands, p)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i].CreationTimestamp, cands[j].CreationTimestamp
		return b.Before(&a) || a.Equal(&b) && cands[i].Name > cands[j].Name
	})
	if len(cands) == 0 {
		return nil
	}
	return cands[0]
}

// importContainer is the container that runs the import: the pod's only regular container.
func importContainer(pod *corev1.Pod) string {
	if len(pod.Spec.Containers) == 0 {
		return ""
	}
	return pod.Spec.Containers[0].Name
}
