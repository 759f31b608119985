package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func TestRunSteps(t *testing.T) {
	type pass struct {
		wakeups
		ran []string
	}
	cont := func(name string, wake time.Duration) step[*pass] {
		return step[*pass]{name, func(_ context.Context, p *pass) (*ctrl.Result, error) {
			p.ran = append(p.ran, name)
			p.wakeIn(wake)
			return nil, nil
		}}
	}
	halt := func(name string, after time.Duration, err error) step[*pass] {
		return step[*pass]{name, func(_ context.Context, p *pass) (*ctrl.Result, error) {
			p.ran = append(p.ran, name)
			return stop(after), err
		}}
	}
	boom := errors.New("boom")
	cases := []struct {
		name    string
		steps   []step[*pass]
		ran     string
		requeue time.Duration
		err     error
	}{
		{"all run, earliest wake-up wins", []step[*pass]{cont("a", 5*time.Second), cont("b", time.Second), cont("c", 0)}, "abc", time.Second, nil},
		{"a waiting step ends the pass", []step[*pass]{cont("a", 0), halt("b", 3*time.Second, nil), cont("c", 0)}, "ab", 3 * time.Second, nil},
		{"a wake-up before the stop is kept if sooner", []step[*pass]{cont("a", time.Second), halt("b", 3*time.Second, nil)}, "ab", time.Second, nil},
		{"an error ends the pass", []step[*pass]{halt("a", 0, boom), cont("b", 0)}, "a", 0, boom},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &pass{}
			res, err := runSteps(context.Background(), p, &p.wakeups, tc.steps)
			ran := ""
			for _, r := range p.ran {
				ran += r
			}
			if ran != tc.ran || res.RequeueAfter != tc.requeue || !errors.Is(err, tc.err) {
				t.Fatalf("ran %q requeue %s err %v", ran, res.RequeueAfter, err)
			}
		})
	}
}

func TestConditionChanged(t *testing.T) {
	conds := []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "LoginFailed", Message: "refused"}}
	cases := []struct {
		name    string
		status  metav1.ConditionStatus
		reason  string
		message string
		want    bool
	}{
		{"same", metav1.ConditionFalse, "LoginFailed", "refused", false},
		{"new message", metav1.ConditionFalse, "LoginFailed", "timeout", true},
		{"new reason", metav1.ConditionFalse, "Starting", "refused", true},
		{"new status", metav1.ConditionTrue, "LoginFailed", "refused", true},
	}
	for _, tc := range cases {
		if got := conditionChanged(conds, "Ready", tc.status, tc.reason, tc.message); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
	if !conditionChanged(conds, "Other", metav1.ConditionTrue, "X", "") {
		t.Error("a new condition is a change")
	}
}

func TestPinnedRevision(t *testing.T) {
	cases := []struct {
		name   string
		spec   *int32
		status int32
		want   int32
	}{
		{"waiting for the first revision", nil, 0, 0},
		{"asked for in spec", ptr.To[int32](3), 0, 3},
		{"pinned once cloned", nil, 5, 5},
		{"the pin wins over the spec", ptr.To[int32](3), 5, 5},
	}
	for _, tc := range cases {
		inst := &myaasv1.DatabaseInstance{Spec: myaasv1.DatabaseInstanceSpec{Revision: tc.spec}, Status: myaasv1.DatabaseInstanceStatus{Revision: tc.status}}
		if got := pinnedRevision(inst); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
