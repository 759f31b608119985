package controllers

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func TestStatusCollector(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }
	shop := &myaasv1.DatabaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "dev", Name: "shop"},
		Spec: myaasv1.DatabaseTemplateSpec{
			Refresh: &myaasv1.RefreshSpec{Schedule: "0 3 * * *", TimeZone: ptr.To("UTC")},
			Import:  myaasv1.ImportSpec{Timeout: &metav1.Duration{Duration: 2 * time.Hour}},
			Storage: myaasv1.TemplateStorage{Size: resource.MustParse("1Gi")},
		},
		Status: myaasv1.DatabaseTemplateStatus{
			LatestRevision: 3,
			Revisions: []myaasv1.TemplateRevision{
				{Revision: 2, ImportedAt: ago(33 * time.Hour), Instances: 1},
				{Revision: 3, ImportedAt: ago(9 * time.Hour), Instances: 2},
			},
			CurrentImport: &myaasv1.CurrentImport{
				Revision: 4, Phase: myaasv1.ImportPhaseLoading, StartedAt: ago(10 * time.Minute), Attempt: 2,
				Progress: &myaasv1.ImportProgress{BytesDone: 250, BytesTotal: 1000},
			},
		},
	}
	broken := &myaasv1.DatabaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "dev", Name: "broken"},
		Status: myaasv1.DatabaseTemplateStatus{
			LastFailure: &myaasv1.FailedImport{Revision: 1, Reason: "SQLError"},
			CurrentImport: &myaasv1.CurrentImport{
				Revision: 2, Phase: myaasv1.ImportPhaseSnapshotting, StartedAt: ago(time.Hour), SnapshotStartedAt: ptr.To(ago(7 * time.Minute)),
			},
		},
	}
	instance := func(name string, phase myaasv1.InstancePhase, cond *metav1.Condition) *myaasv1.DatabaseInstance {
		inst := &myaasv1.DatabaseInstance{
			ObjectMeta: metav1.ObjectMeta{Namespace: "dev", Name: name, CreationTimestamp: ago(time.Hour)},
			Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: "shop"}},
			Status:     myaasv1.DatabaseInstanceStatus{Phase: phase},
		}
		if cond != nil {
			inst.Status.Conditions = []metav1.Condition{*cond}
		}
		return inst
	}
	scheme := runtime.NewScheme()
	if err := myaasv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(shop, broken,
		instance("a", myaasv1.InstanceReady, nil),
		instance("b", myaasv1.InstanceReady, nil),
		instance("c", myaasv1.InstanceStarting, &metav1.Condition{Type: myaasv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: myaasv1.ReasonLoginFailed, LastTransitionTime: ago(3 * time.Minute)}),
		instance("d", myaasv1.InstanceSuspended, nil),
	).Build()

	elected := make(chan struct{})
	c := &StatusCollector{Reader: reader, Elected: elected, Now: func() time.Time { return now }, Version: "1.2.3"}
	standby := `
# HELP myaas_build_info Always 1; the version label is the running manager's.
# TYPE myaas_build_info gauge
myaas_build_info{version="1.2.3"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(standby)); err != nil {
		t.Errorf("a standby manager reports only its build: %v", err)
	}
	close(elected)

	want := map[string]string{
		"myaas_template_latest_revision": `
myaas_template_latest_revision{namespace="dev",template="broken"} 0
myaas_template_latest_revision{namespace="dev",template="shop"} 3`,
		"myaas_template_latest_revision_age_seconds": `
myaas_template_latest_revision_age_seconds{namespace="dev",template="shop"} 32400`,
		"myaas_template_refresh_interval_seconds": `
myaas_template_refresh_interval_seconds{namespace="dev",template="shop"} 86400`,
		"myaas_template_last_import_failed": `
myaas_template_last_import_failed{namespace="dev",reason="SQLError",template="broken"} 1
myaas_template_last_import_failed{namespace="dev",reason="",template="shop"} 0`,
		"myaas_template_import_running_seconds": `
myaas_template_import_running_seconds{namespace="dev",phase="Snapshotting",revision="2",template="broken"} 3600
myaas_template_import_running_seconds{namespace="dev",phase="Loading",revision="4",template="shop"} 600`,
		"myaas_template_import_timeout_seconds": `
myaas_template_import_timeout_seconds{namespace="dev",template="shop"} 7200`,
		"myaas_template_import_progress_ratio": `
myaas_template_import_progress_ratio{namespace="dev",template="broken"} 1
myaas_template_import_progress_ratio{namespace="dev",template="shop"} 0.25`,
		"myaas_template_import_attempt": `
myaas_template_import_attempt{namespace="dev",template="broken"} 1
myaas_template_import_attempt{namespace="dev",template="shop"} 2`,
		"myaas_template_snapshot_pending_seconds": `
myaas_template_snapshot_pending_seconds{namespace="dev",template="broken"} 420`,
		"myaas_template_revisions": `
myaas_template_revisions{namespace="dev",template="broken"} 0
myaas_template_revisions{namespace="dev",template="shop"} 2`,
		"myaas_template_revision_instances": `
myaas_template_revision_instances{namespace="dev",revision="2",template="shop"} 1
myaas_template_revision_instances{namespace="dev",revision="3",template="shop"} 2`,
		"myaas_instances": `
myaas_instances{namespace="dev",phase="Cloning",template="broken"} 0
myaas_instances{namespace="dev",phase="Failed",template="broken"} 0
myaas_instances{namespace="dev",phase="Pending",template="broken"} 0
myaas_instances{namespace="dev",phase="Ready",template="broken"} 0
myaas_instances{namespace="dev",phase="Resetting",template="broken"} 0
myaas_instances{namespace="dev",phase="Starting",template="broken"} 0
myaas_instances{namespace="dev",phase="Suspended",template="broken"} 0
myaas_instances{namespace="dev",phase="Cloning",template="shop"} 0
myaas_instances{namespace="dev",phase="Failed",template="shop"} 0
myaas_instances{namespace="dev",phase="Pending",template="shop"} 0
myaas_instances{namespace="dev",phase="Ready",template="shop"} 2
myaas_instances{namespace="dev",phase="Resetting",template="shop"} 0
myaas_instances{namespace="dev",phase="Starting",template="shop"} 1
myaas_instances{namespace="dev",phase="Suspended",template="shop"} 1`,
		"myaas_instance_not_ready_seconds": `
myaas_instance_not_ready_seconds{instance="c",namespace="dev",reason="LoginFailed",template="shop"} 180`,
	}
	for name, samples := range want {
		var help, typ string
		descs := make(chan *prometheus.Desc, 32)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			if strings.Contains(d.String(), `fqName: "`+name+`"`) {
				help = regexp.MustCompile(`help: "([^"]*)"`).FindStringSubmatch(d.String())[1]
				typ = "gauge"
			}
		}
		exposition := "# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + samples + "\n"
		if err := testutil.CollectAndCompare(c, strings.NewReader(exposition), name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRefreshInterval(t *testing.T) {
	monday := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		schedule string
		want     time.Duration
	}{
		{"0 3 * * *", 24 * time.Hour},
		{"@hourly", time.Hour},
		{"*/5 * * * *", 5 * time.Minute},
		// Weekdays only: the weekend gap is the longest, so Monday's data is not stale on Sunday.
		{"0 3 * * 1-5", 72 * time.Hour},
		{"0 3 * * 0", 7 * 24 * time.Hour},
	} {
		got, err := RefreshInterval(tc.schedule, ptr.To("Europe/Madrid"), monday)
		if err != nil || got != tc.want {
			t.Errorf("RefreshInterval(%q) = %s, %v; want %s", tc.schedule, got, err, tc.want)
		}
	}
	if _, err := RefreshInterval("61 * * * *", nil, monday); err == nil {
		t.Error("a bad schedule gives no interval")
	}
}

func TestEventMetrics(t *testing.T) {
	start := time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC)
	importing := myaasv1.DatabaseTemplateStatus{
		CurrentImport: &myaasv1.CurrentImport{Revision: 1, StartedAt: metav1.NewTime(start)},
	}
	imported := myaasv1.DatabaseTemplateStatus{Revisions: []myaasv1.TemplateRevision{
		{Revision: 1, ImportDuration: &metav1.Duration{Duration: time.Minute}, DumpBytes: 1000},
	}}
	failing := imported
	failing.CurrentImport = &myaasv1.CurrentImport{Revision: 2, StartedAt: metav1.NewTime(start.Add(time.Hour))}
	failed := imported
	failed.LastFailure = &myaasv1.FailedImport{Revision: 2, FailedAt: metav1.NewTime(start.Add(time.Hour + 30*time.Second))}
	for _, tr := range [][2]myaasv1.DatabaseTemplateStatus{
		{importing, imported},
		{imported, imported}, // a write of something else: nothing ended
		{failing, failed},
		{failed, failed},
	} {
		recordTemplateTransition("ev", "shop", &tr[0], &tr[1])
	}

	starting := myaasv1.DatabaseInstanceStatus{}
	ready := myaasv1.DatabaseInstanceStatus{ReadyAt: ptr.To(metav1.NewTime(start)), TimeToReady: &metav1.Duration{Duration: 2 * time.Second}}
	reset := myaasv1.DatabaseInstanceStatus{Resets: 1}
	readyAgain := myaasv1.DatabaseInstanceStatus{Resets: 1, ReadyAt: ptr.To(metav1.NewTime(start.Add(time.Hour))), TimeToReady: &metav1.Duration{Duration: time.Second}}
	for _, tr := range [][2]myaasv1.DatabaseInstanceStatus{
		{starting, ready}, {ready, ready}, {ready, reset}, {reset, reset}, {reset, readyAgain}, {readyAgain, readyAgain},
	} {
		recordInstanceTransition("ev", "shop", &tr[0], &tr[1])
	}
	inst := &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ev", Name: "a"},
		Spec: myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: "shop"}}}
	recordExpiration(inst, nil)
	recordExpiration(inst, apierrors.NewNotFound(schema.GroupResource{Resource: "databaseinstances"}, "a"))
	recordLoginFailure(inst)

	histogram := func(h *prometheus.HistogramVec, labels ...string) (count uint64, sum float64) {
		m := &dto.Metric{}
		if err := h.WithLabelValues(labels...).(prometheus.Metric).Write(m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
	}
	okCount, okSum := histogram(importDuration, "ev", "shop", ImportSucceeded)
	failCount, failSum := histogram(importDuration, "ev", "shop", ImportFailed)
	readyCount, readySum := histogram(timeToReady, "ev", "shop")
	for name, c := range map[string]struct{ got, want float64 }{
		"imports succeeded":      {testutil.ToFloat64(importsTotal.WithLabelValues("ev", "shop", ImportSucceeded)), 1},
		"imports failed":         {testutil.ToFloat64(importsTotal.WithLabelValues("ev", "shop", ImportFailed)), 1},
		"bytes imported":         {testutil.ToFloat64(importedBytes.WithLabelValues("ev", "shop")), 1000},
		"succeeded import count": {float64(okCount), 1},
		"succeeded import time":  {okSum, 60},
		"failed import count":    {float64(failCount), 1},
		"failed import time":     {failSum, 30},
		"times to Ready":         {float64(readyCount), 2},
		"time to Ready":          {readySum, 3},
		"resets":                 {testutil.ToFloat64(resets.WithLabelValues("ev", "shop")), 1},
		"expirations":            {testutil.ToFloat64(expirations.WithLabelValues("ev", "shop")), 1},
		"refused logins":         {testutil.ToFloat64(loginFailures.WithLabelValues("ev", "shop")), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", name, c.got, c.want)
		}
	}
}

// TestMetricsDocumented keeps docs/metrics.md complete: every metric the manager exports has a row.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	descs := make(chan *prometheus.Desc, 64)
	(&StatusCollector{}).Describe(descs)
	for _, c := range []prometheus.Collector{importsTotal, importDuration, importedBytes, timeToReady, expirations, resets, loginFailures} {
		c.Describe(descs)
	}
	close(descs)
	for d := range descs {
		name := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())[1]
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not describe %s", name)
		}
	}
}
