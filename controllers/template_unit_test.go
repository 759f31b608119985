package controllers

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
)

func TestImportSpecHashChangesOnlyForWhatChangesTheData(t *testing.T) {
	base := myaasv1.DatabaseTemplateSpec{
		Engine:  myaasv1.EngineSpec{Type: myaasv1.EngineMariaDB},
		Source:  myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: "https://x/a.sql"}},
		Storage: myaasv1.TemplateStorage{Size: resource.MustParse("1Gi")},
	}
	h := ImportSpecHash(base)
	cases := []struct {
		name    string
		mutate  func(*myaasv1.DatabaseTemplateSpec)
		changes bool
	}{
		{"schedule", func(s *myaasv1.DatabaseTemplateSpec) { s.Refresh = &myaasv1.RefreshSpec{Schedule: "@daily"} }, false},
		{"retention", func(s *myaasv1.DatabaseTemplateSpec) { s.RetainRevisions = 5 }, false},
		{"import timeout", func(s *myaasv1.DatabaseTemplateSpec) { s.Import.Timeout = &metav1.Duration{Duration: time.Hour} }, false},
		{"source", func(s *myaasv1.DatabaseTemplateSpec) { s.Source.HTTP.URL = "https://x/b.sql" }, true},
		{"masking SQL", func(s *myaasv1.DatabaseTemplateSpec) {
			s.PostImportSQL = &myaasv1.PostImportSQL{Statements: []string{"DELETE FROM t"}}
		}, true},
		{"engine version", func(s *myaasv1.DatabaseTemplateSpec) { s.Engine.Version = "10.11" }, true},
		{"storage class", func(s *myaasv1.DatabaseTemplateSpec) { s.Storage.StorageClassName = ptr.To("zfs") }, true},
	}
	for _, tc := range cases {
		spec := *base.DeepCopy()
		tc.mutate(&spec)
		if got := ImportSpecHash(spec) != h; got != tc.changes {
			t.Errorf("%s: hash changed = %v, want %v", tc.name, got, tc.changes)
		}
	}
}

func TestSummarizeTemplate(t *testing.T) {
	cases := []struct {
		name         string
		status       myaasv1.DatabaseTemplateStatus
		ready        metav1.ConditionStatus
		readyReason  string
		importing    metav1.ConditionStatus
		wantProgress string
	}{
		{"new", myaasv1.DatabaseTemplateStatus{}, metav1.ConditionFalse, myaasv1.ReasonNoRevisionYet, metav1.ConditionFalse, ""},
		{"first import loading", myaasv1.DatabaseTemplateStatus{CurrentImport: &myaasv1.CurrentImport{Revision: 1, Phase: myaasv1.ImportPhaseLoading,
			Progress: &myaasv1.ImportProgress{Percent: "10%"}}}, metav1.ConditionFalse, myaasv1.ReasonNoRevisionYet, metav1.ConditionTrue, "r1 Loading 10%"},
		{"streamed source of unknown size", myaasv1.DatabaseTemplateStatus{CurrentImport: &myaasv1.CurrentImport{Revision: 1, Phase: myaasv1.ImportPhaseLoading,
			Progress: &myaasv1.ImportProgress{BytesDone: 938967040}}}, metav1.ConditionFalse, myaasv1.ReasonNoRevisionYet, metav1.ConditionTrue, "r1 Loading 895Mi"},
		{"first import failed", myaasv1.DatabaseTemplateStatus{LastFailure: &myaasv1.FailedImport{Revision: 1, Message: "boom"}},
			metav1.ConditionFalse, myaasv1.ReasonImportJobFailed, metav1.ConditionFalse, "r1 failed"},
		{"serving r2 while r3 snapshots", myaasv1.DatabaseTemplateStatus{LatestRevision: 2, CurrentImport: &myaasv1.CurrentImport{Revision: 3, Phase: myaasv1.ImportPhaseSnapshotting}},
			metav1.ConditionTrue, myaasv1.ReasonRevisionAvailable, metav1.ConditionTrue, "r3 Snapshotting"},
	}
	for _, tc := range cases {
		tmpl := &myaasv1.DatabaseTemplate{ObjectMeta: metav1.ObjectMeta{Generation: 4}, Status: tc.status}
		summarizeTemplate(tmpl)
		ready := meta.FindStatusCondition(tmpl.Status.Conditions, myaasv1.ConditionReady)
		importing := meta.FindStatusCondition(tmpl.Status.Conditions, myaasv1.ConditionImporting)
		if ready.Status != tc.ready || ready.Reason != tc.readyReason || ready.ObservedGeneration != 4 || importing.Status != tc.importing || tmpl.Status.Summary != tc.wantProgress {
			t.Errorf("%s: ready %s/%s importing %s progress %q", tc.name, ready.Status, ready.Reason, importing.Status, tmpl.Status.Summary)
		}
	}
}

func TestProgressStatus(t *testing.T) {
	now := metav1.Now()
	got := ProgressStatus(&agentapi.Progress{Step: "Loading", BytesDone: 5, BytesTotal: 10, Percent: 49.6, ETASeconds: 200, CurrentFile: "a.sql"}, now)
	if got.Percent != "50%" || got.ETA != "3m20s" || got.Step != "Loading" || got.CurrentFile != "a.sql" {
		t.Fatalf("%+v", got)
	}
	// Unknown total (a stream without Content-Length): no made-up percentage.
	if got := ProgressStatus(&agentapi.Progress{Step: "Loading", BytesDone: 5}, now); got.Percent != "" || got.ETA != "" {
		t.Fatalf("%+v", got)
	}
}

func TestNewestRefreshRequest(t *testing.T) {
	at := func(name string, sec int64) batchv1.Job {
		return batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.Unix(sec, 0)}}
	}
	created := metav1.Unix(5, 0)
	cases := []struct {
		name string
		jobs []batchv1.Job
		want string
	}{
		{"none", nil, ""},
		{"newest wins, ties by name", []batchv1.Job{at("b", 20), at("c", 10), at("a", 20)}, "b"},
		{"a deleted template's requests are ignored", []batchv1.Job{at("old", 4)}, ""},
		{"only this template's requests count", []batchv1.Job{at("old", 4), at("new", 6)}, "new"},
	}
	for _, tc := range cases {
		got := newestRefreshRequest(tc.jobs, created)
		if name := func() string {
			if got == nil {
				return ""
			}
			return got.Name
		}(); name != tc.want {
			t.Errorf("%s: newest %q, want %q", tc.name, name, tc.want)
		}
	}
}

func TestExpiryTime(t *testing.T) {
	created := metav1.Unix(1000, 0)
	at := metav1.Unix(5000, 0)
	cases := []struct {
		spec myaasv1.DatabaseInstanceSpec
		want *metav1.Time
	}{
		{myaasv1.DatabaseInstanceSpec{}, nil},
		{myaasv1.DatabaseInstanceSpec{TTL: &metav1.Duration{Duration: time.Hour}}, ptr.To(metav1.Unix(4600, 0))},
		{myaasv1.DatabaseInstanceSpec{ExpiresAt: &at}, &at},
	}
	for i, tc := range cases {
		got := ExpiryTime(&myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created}, Spec: tc.spec})
		if (got == nil) != (tc.want == nil) || (got != nil && !got.Equal(tc.want)) {
			t.Errorf("case %d: %v, want %v", i, got, tc.want)
		}
	}
}

func TestRandomPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p, err := RandomPassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 24 || seen[p] {
			t.Fatalf("password %d chars, repeated %v", len(p), seen[p])
		}
		seen[p] = true
	}
}
