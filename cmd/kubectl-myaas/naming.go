package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels the plugin puts on instances made for a pipeline, so that a scheduled clean-up can find
// those of closed pull requests without knowing their names.
const (
	LabelRepository = "myaas.io/repository"
	LabelPR         = "myaas.io/pr"
	LabelBranch     = "myaas.io/branch"
	LabelCreatedBy  = "app.kubernetes.io/managed-by"
	createdByPlugin = "kubectl-myaas"
)

// maxNameLength keeps the StatefulSet's pods valid: the controller-revision-hash label of a pod
// is the StatefulSet's name plus an 11-character suffix, and a label value ends at 63.
const maxNameLength = 52

// sanitizeName turns a branch or pull request name into an instance name: a DNS-1035 label (the
// instance's Service has its name), no longer than maxNameLength. A name that had to be cut gets a
// short hash of the whole so that two long branches sharing a prefix do not collide.
func sanitizeName(raw string) string {
	s := dashed(strings.ToLower(raw), func(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' })
	if s == "" {
		s = "db"
	}
	if s[0] < 'a' || s[0] > 'z' {
		s = "b-" + s
	}
	return truncateWithHash(s, raw, maxNameLength)
}

// sanitizeLabelValue makes a label value of a repository ("org/app") or branch name.
func sanitizeLabelValue(raw string) string {
	s := dashed(raw, func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_'
	})
	s = strings.Trim(s, "._-")
	return strings.Trim(truncateWithHash(s, raw, validation.LabelValueMaxLength), "._-")
}

// dashed replaces every run of runes outside keep with one dash, and trims dashes at both ends.
func dashed(s string, keep func(rune) bool) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		if keep(r) {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}

func truncateWithHash(s, whole string, limit int) string {
	if len(s) <= limit {
		return s
	}
	sum := sha256.Sum256([]byte(whole))
	suffix := hex.EncodeToString(sum[:])[:6]
	return strings.TrimRight(s[:limit-len(suffix)-1], "-._") + "-" + suffix
}

// checkInstanceName refuses a name the API server or the instance's children would reject, and
// says what to use instead.
func checkInstanceName(name string) error {
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 || len(name) > maxNameLength {
		return fmt.Errorf("invalid instance name %q: use lower-case letters, digits and '-', start with a letter, at most %d characters (e.g. %q)",
			name, maxNameLength, sanitizeName(name))
	}
	return nil
}

// parseLabels reads k=v pairs as given to --label.
func parseLabels(pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("label %q: want key=value", p)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("label %s value %q: %s", k, v, strings.Join(errs, "; "))
		}
		out[k] = v
	}
	return out, nil
}
