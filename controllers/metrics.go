package controllers

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// The operator's metrics (docs/metrics.md describes each one). What the status says is read from
// it at scrape time by StatusCollector, so a gauge can never disagree with `kubectl get`. Events
// are counted when the status write that records them succeeds, or, for those the status does not
// keep (an expiry, a refused login), where they happen.

const metricsNamespace = "myaas"

// Results of an import, the values of the result label.
const (
	ImportSucceeded = "succeeded"
	ImportFailed    = "failed"
)

var (
	importsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "template_imports_total",
		Help: "Imports that ended, by result (succeeded: a new revision; failed: the previous one kept serving).",
	}, []string{"namespace", "template", "result"})
	importDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Name: "template_import_duration_seconds",
		Help:    "Time from the start of an import to its new revision's ready snapshot, or to its failure.",
		Buckets: []float64{30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800},
	}, []string{"namespace", "template", "result"})
	importedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "template_imported_bytes_total",
		Help: "Dump bytes read by imports that became revisions (compressed size for compressed dumps).",
	}, []string{"namespace", "template"})
	timeToReady = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Name: "instance_time_to_ready_seconds",
		Help:    "Time from an instance's creation (or reset) to its first successful login.",
		Buckets: []float64{0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600},
	}, []string{"namespace", "template"})
	expirations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "instance_expirations_total",
		Help: "Instances deleted because their TTL or expiresAt passed.",
	}, []string{"namespace", "template"})
	resets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "instance_resets_total",
		Help: "Instances whose data was replaced with the template's latest revision (myaas.io/reset).",
	}, []string{"namespace", "template"})
	loginFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "instance_login_failures_total",
		Help: "Logins with an instance's Secret that a running server refused.",
	}, []string{"namespace", "template"})
)

func init() {
	metrics.Registry.MustRegister(importsTotal, importDuration, importedBytes, timeToReady, expirations, resets, loginFailures)
}

// patchTemplateStatus writes the template's status (patchStatus) and counts the imports that the
// write records as ended. Counting at the write, not where a step decides, counts each import once:
// a step that ran on a stale cache decides again, but its write fails on the optimistic lock.
func patchTemplateStatus(ctx context.Context, c client.Client, before, t *myaasv1.DatabaseTemplate) error {
	if err := patchStatus(ctx, c, before, t, before.Status, t.Status); err != nil {
		return err
	}
	recordTemplateTransition(t.Namespace, t.Name, &before.Status, &t.Status)
	return nil
}

// patchInstanceStatus writes the instance's status and counts, once, the resets and the arrivals at
// Ready it records.
func patchInstanceStatus(ctx context.Context, c client.Client, before, inst *myaasv1.DatabaseInstance) error {
	if err := patchStatus(ctx, c, before, inst, before.Status, inst.Status); err != nil {
		return err
	}
	recordInstanceTransition(inst.Namespace, inst.Spec.TemplateRef.Name, &before.Status, &inst.Status)
	return nil
}

func recordTemplateTransition(ns, name string, before, after *myaasv1.DatabaseTemplateStatus) {
	known := map[int32]bool{}
	for _, rev := range before.Revisions {
		known[rev.Revision] = true
	}
	for _, rev := range after.Revisions {
		if known[rev.Revision] {
			continue
		}
		importsTotal.WithLabelValues(ns, name, ImportSucceeded).Inc()
		if rev.ImportDuration != nil {
			importDuration.WithLabelValues(ns, name, ImportSucceeded).Observe(rev.ImportDuration.Seconds())
		}
		importedBytes.WithLabelValues(ns, name).Add(float64(rev.DumpBytes))
	}
	f, was := after.LastFailure, before.LastFailure
	if f == nil || (was != nil && was.Revision == f.Revision && was.FailedAt.Equal(&f.FailedAt)) {
		return
	}
	importsTotal.WithLabelValues(ns, name, ImportFailed).Inc()
	// The import that failed is the one the status held until this write.
	if ci := before.CurrentImport; ci != nil && ci.Revision == f.Revision {
		importDuration.WithLabelValues(ns, name, ImportFailed).Observe(f.FailedAt.Sub(ci.StartedAt.Time).Seconds())
	}
}

func recordInstanceTransition(ns, template string, before, after *myaasv1.DatabaseInstanceStatus) {
	if d := after.Resets - before.Resets; d > 0 {
		resets.WithLabelValues(ns, template).Add(float64(d))
	}
	if after.ReadyAt != nil && before.ReadyAt == nil && after.TimeToReady != nil {
		timeToReady.WithLabelValues(ns, template).Observe(after.TimeToReady.Seconds())
	}
}

// recordExpiration counts an expired instance that deleteErr says was deleted now; NotFound means
// an earlier pass, on a cache that had not seen the deletion yet, deleted it.
func recordExpiration(inst *myaasv1.DatabaseInstance, deleteErr error) {
	if deleteErr == nil {
		expirations.WithLabelValues(inst.Namespace, inst.Spec.TemplateRef.Name).Inc()
	}
}

// recordLoginFailure counts a login the running server refused; each attempt is one.
func recordLoginFailure(inst *myaasv1.DatabaseInstance) {
	loginFailures.WithLabelValues(inst.Namespace, inst.Spec.TemplateRef.Name).Inc()
}

var (
	templateLabels = []string{"namespace", "template"}

	descBuildInfo = prometheus.NewDesc("myaas_build_info",
		"Always 1; the version label is the running manager's.", []string{"version"}, nil)
	descLatestRevision = prometheus.NewDesc("myaas_template_latest_revision",
		"Number of the template's latest ready revision (0: none yet).", templateLabels, nil)
	descLatestAge = prometheus.NewDesc("myaas_template_latest_revision_age_seconds",
		"Time since the latest revision became ready: the age of the data new instances get.", templateLabels, nil)
	descRefreshInterval = prometheus.NewDesc("myaas_template_refresh_interval_seconds",
		"Longest gap between two runs of spec.refresh.schedule in the coming week; absent without an active schedule.", templateLabels, nil)
	descLastFailed = prometheus.NewDesc("myaas_template_last_import_failed",
		"1 when the last import failed (reason: its reason), 0 otherwise.", append(templateLabels, "reason"), nil)
	descImportRunning = prometheus.NewDesc("myaas_template_import_running_seconds",
		"Time since the running import started, by phase; absent when none runs.", append(templateLabels, "revision", "phase"), nil)
	descImportTimeout = prometheus.NewDesc("myaas_template_import_timeout_seconds",
		"spec.import.timeout; absent when the template sets none.", templateLabels, nil)
	descImportProgress = prometheus.NewDesc("myaas_template_import_progress_ratio",
		"Share of the dump the running import has read (0 to 1); absent when none runs.", templateLabels, nil)
	descImportAttempt = prometheus.NewDesc("myaas_template_import_attempt",
		"Attempt number of the running import (retries after interruptions); absent when none runs.", templateLabels, nil)
	descSnapshotPending = prometheus.NewDesc("myaas_template_snapshot_pending_seconds",
		"Time since the running import's snapshot was requested while it is not ready; absent otherwise.", templateLabels, nil)
	descRevisions = prometheus.NewDesc("myaas_template_revisions",
		"Ready revisions the template keeps.", templateLabels, nil)
	descRevisionInstances = prometheus.NewDesc("myaas_template_revision_instances",
		"Instances cloned from each kept revision.", append(templateLabels, "revision"), nil)
	descInstances = prometheus.NewDesc("myaas_instances",
		"Instances by phase.", append(templateLabels, "phase"), nil)
	descNotReady = prometheus.NewDesc("myaas_instance_not_ready_seconds",
		"Time since an instance that is neither Ready nor suspended last changed its Ready condition; absent for the others.",
		append(templateLabels, "instance", "reason"), nil)
)

// instancePhases are every phase an instance can be in, so that a phase without instances reads 0.
var instancePhases = []myaasv1.InstancePhase{
	myaasv1.InstancePending, myaasv1.InstanceCloning, myaasv1.InstanceStarting, myaasv1.InstanceReady,
	myaasv1.InstanceResetting, myaasv1.InstanceSuspended, myaasv1.InstanceFailed,
}

// StatusCollector reports the gauges of every template and instance from the manager's cache.
type StatusCollector struct {
	Reader client.Reader
	// Elected closes once this manager leads; until then it reports nothing, so that a standby
	// replica does not duplicate the leader's series.
	Elected <-chan struct{}
	Now     func() time.Time
	Version string
}

// SetupMetrics registers the status collector with controller-runtime's registry, which the
// manager serves on its metrics endpoint.
func SetupMetrics(mgr ctrl.Manager, version string) error {
	c := &StatusCollector{Reader: mgr.GetCache(), Elected: mgr.Elected(), Now: time.Now, Version: version}
	if err := metrics.Registry.Register(c); err != nil {
		return fmt.Errorf("register the status metrics: %w", err)
	}
	return nil
}

// Describe implements prometheus.Collector.
func (c *StatusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descLatestRevision, descLatestAge, descRefreshInterval, descLastFailed,
		descImportRunning, descImportTimeout, descImportProgress, descImportAttempt, descSnapshotPending, descRevisions,
		descRevisionInstances, descInstances, descNotReady} {
		ch <- d
	}
}

// collectTimeout bounds a scrape that finds the cache not synced yet.
const collectTimeout = 5 * time.Second

// Collect implements prometheus.Collector.
func (c *StatusCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, c.Version)
	if c.Elected != nil {
		select {
		case <-c.Elected:
		default:
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	log := ctrl.Log.WithName("metrics")
	templates := &myaasv1.DatabaseTemplateList{}
	if err := c.Reader.List(ctx, templates); err != nil {
		log.Error(err, "list DatabaseTemplates for the metrics")
		return
	}
	instances := &myaasv1.DatabaseInstanceList{}
	if err := c.Reader.List(ctx, instances); err != nil {
		log.Error(err, "list DatabaseInstances for the metrics")
		return
	}
	now := c.Now()
	for i := range templates.Items {
		collectTemplate(ch, &templates.Items[i], now)
	}
	collectInstances(ch, templates.Items, instances.Items, now)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func collectTemplate(ch chan<- prometheus.Metric, t *myaasv1.DatabaseTemplate, now time.Time) {
	ns, name, st := t.Namespace, t.Name, &t.Status
	// The counters start at 0, so that the first import shows as an increase.
	importsTotal.WithLabelValues(ns, name, ImportSucceeded)
	importsTotal.WithLabelValues(ns, name, ImportFailed)

	gauge(ch, descLatestRevision, float64(st.LatestRevision), ns, name)
	gauge(ch, descRevisions, float64(len(st.Revisions)), ns, name)
	for _, rev := range st.Revisions {
		gauge(ch, descRevisionInstances, float64(rev.Instances), ns, name, strconv.Itoa(int(rev.Revision)))
		if rev.Revision == st.LatestRevision {
			gauge(ch, descLatestAge, now.Sub(rev.ImportedAt.Time).Seconds(), ns, name)
		}
	}
	if r := t.Spec.Refresh; r != nil && !r.Suspend {
		if d, err := RefreshInterval(r.Schedule, r.TimeZone, now); err == nil {
			gauge(ch, descRefreshInterval, d.Seconds(), ns, name)
		}
	}
	if f := st.LastFailure; f != nil {
		gauge(ch, descLastFailed, 1, ns, name, f.Reason)
	} else {
		gauge(ch, descLastFailed, 0, ns, name, "")
	}
	if d := t.Spec.Import.Timeout; d != nil && d.Duration > 0 {
		gauge(ch, descImportTimeout, d.Seconds(), ns, name)
	}
	ci := st.CurrentImport
	if ci == nil {
		return
	}
	gauge(ch, descImportRunning, now.Sub(ci.StartedAt.Time).Seconds(), ns, name, strconv.Itoa(int(ci.Revision)), string(ci.Phase))
	gauge(ch, descImportAttempt, float64(max(ci.Attempt, 1)), ns, name)
	gauge(ch, descImportProgress, importProgressRatio(ci), ns, name)
	if ci.Phase == myaasv1.ImportPhaseSnapshotting && ci.SnapshotStartedAt != nil {
		gauge(ch, descSnapshotPending, now.Sub(ci.SnapshotStartedAt.Time).Seconds(), ns, name)
	}
}

// importProgressRatio: the load is done once the import snapshots; before the agent reports, 0.
func importProgressRatio(ci *myaasv1.CurrentImport) float64 {
	switch {
	case ci.Phase == myaasv1.ImportPhaseSnapshotting:
		return 1
	case ci.Progress == nil || ci.Progress.BytesTotal <= 0:
		return 0
	}
	return min(float64(ci.Progress.BytesDone)/float64(ci.Progress.BytesTotal), 1)
}

func collectInstances(ch chan<- prometheus.Metric, templates []myaasv1.DatabaseTemplate, instances []myaasv1.DatabaseInstance, now time.Time) {
	type key struct{ ns, template string }
	counts := map[key]map[myaasv1.InstancePhase]int{}
	for _, t := range templates {
		counts[key{t.Namespace, t.Name}] = map[myaasv1.InstancePhase]int{}
	}
	for i := range instances {
		inst := &instances[i]
		k := key{inst.Namespace, inst.Spec.TemplateRef.Name}
		if counts[k] == nil {
			counts[k] = map[myaasv1.InstancePhase]int{}
		}
		phase := inst.Status.Phase
		if phase == "" {
			phase = myaasv1.InstancePending
		}
		counts[k][phase]++
		if phase == myaasv1.InstanceReady || phase == myaasv1.InstanceSuspended || !inst.DeletionTimestamp.IsZero() {
			continue
		}
		since, reason := inst.CreationTimestamp, ""
		if c := meta.FindStatusCondition(inst.Status.Conditions, myaasv1.ConditionReady); c != nil {
			since, reason = laterOf(since, c.LastTransitionTime), c.Reason
		}
		gauge(ch, descNotReady, now.Sub(since.Time).Seconds(), k.ns, k.template, inst.Name, reason)
	}
	for k, byPhase := range counts {
		for _, p := range instancePhases {
			gauge(ch, descInstances, float64(byPhase[p]), k.ns, k.template, string(p))
		}
	}
}

func laterOf(a, b metav1.Time) metav1.Time {
	if a.Before(&b) {
		return b
	}
	return a
}

// refreshHorizon and refreshRuns bound the look-ahead of RefreshInterval: a week covers weekly
// patterns (no refresh at weekends), the run limit keeps a per-minute schedule cheap.
const (
	refreshHorizon = 8 * 24 * time.Hour
	refreshRuns    = 1000
)

// RefreshInterval is the longest gap between two consecutive runs of a cron schedule in the
// coming week: data younger than that (plus the time an import takes) is as fresh as the
// schedule allows, even on the Monday after a weekday-only schedule's weekend.
func RefreshInterval(schedule string, timeZone *string, now time.Time) (time.Duration, error) {
	sched, err := cron.ParseStandard(schedule)
	if err != nil {
		return 0, fmt.Errorf("parse schedule %q: %w", schedule, err)
	}
	loc := time.Local
	if timeZone != nil && *timeZone != "" {
		if loc, err = time.LoadLocation(*timeZone); err != nil {
			return 0, fmt.Errorf("load time zone %q: %w", *timeZone, err)
		}
	}
	prev := sched.Next(now.In(loc))
	if prev.IsZero() {
		return 0, fmt.Errorf("schedule %q never runs", schedule)
	}
	var longest time.Duration
	for range refreshRuns {
		next := sched.Next(prev)
		if next.IsZero() {
			break
		}
		longest = max(longest, next.Sub(prev))
		if next.Sub(now) > refreshHorizon {
			break
		}
		prev = next
	}
	if longest == 0 {
		return 0, fmt.Errorf("schedule %q runs only once", schedule)
	}
	return longest, nil
}
