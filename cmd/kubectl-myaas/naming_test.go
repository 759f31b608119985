package main

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestSanitizeName(t *testing.T) {
	long := "feature/" + strings.Repeat("very-long-branch-name-", 5)
	for _, tc := range []struct{ in, want string }{
		{"pr-1", "pr-1"},
		{"feature/Login_Form", "feature-login-form"},
		{"--Fix  the__BUG--", "fix-the-bug"},
		{"123-hotfix", "b-123-hotfix"},
		{"dependabot/npm_and_yarn/lodash-4.17.21", "dependabot-npm-and-yarn-lodash-4-17-21"},
		{"ÄÖÜ", "db"},
		{"", "db"},
	} {
		if got := sanitizeName(tc.in); got != tc.want {
			t.Errorf("sanitizeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	a, b := sanitizeName(long+"a"), sanitizeName(long+"b")
	if a == b {
		t.Errorf("two long names differing at the end collide: %q", a)
	}
	for _, n := range []string{a, b, sanitizeName(strings.Repeat("x", 200)), sanitizeName(strings.Repeat("-/", 80) + "9")} {
		if len(n) > maxNameLength || len(validation.IsDNS1035Label(n)) > 0 {
			t.Errorf("%q (%d characters) is not a valid instance name", n, len(n))
		}
		if err := checkInstanceName(n); err != nil {
			t.Error(err)
		}
	}
}

func TestSanitizeLabelValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"acme/shop", "acme-shop"},
		{"Acme-Corp/shop.api", "Acme-Corp-shop.api"},
		{"feature/x_y", "feature-x_y"},
		{"_.odd._", "odd"},
	} {
		if got := sanitizeLabelValue(tc.in); got != tc.want {
			t.Errorf("sanitizeLabelValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := sanitizeLabelValue(strings.Repeat("group/", 20) + "repo")
	if errs := validation.IsValidLabelValue(long); len(errs) > 0 {
		t.Errorf("%q: %v", long, errs)
	}
}

func TestCheckInstanceName(t *testing.T) {
	for _, bad := range []string{"PR-1", "1pr", "pr_1", "pr-", strings.Repeat("a", maxNameLength+1)} {
		err := checkInstanceName(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "e.g.") {
			t.Errorf("%q: the error suggests no valid name: %v", bad, err)
		}
	}
	if err := checkInstanceName("pr-1"); err != nil {
		t.Error(err)
	}
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels([]string{"app=pr-123", "myaas.io/pr=123", "empty="})
	if err != nil || got["app"] != "pr-123" || got["myaas.io/pr"] != "123" || got["empty"] != "" {
		t.Fatalf("parseLabels: %v, %v", got, err)
	}
	for _, bad := range []string{"novalue", "bad key=x", "k=has space", "k=" + strings.Repeat("v", 64)} {
		if _, err := parseLabels([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
