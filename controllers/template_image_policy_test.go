package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func TestImageAllowed(t *testing.T) {
	patterns := ImagePatterns(" mariadb:* , registry.corp/db/*,mysql:8.0.36,")
	cases := []struct {
		image string
		want  bool
	}{
		{"mariadb:11.4", true},
		{"mariadb-evil:11.4", false},
		{"registry.corp/db/mariadb:11.4-custom", true},
		{"registry.corp/dbx/mariadb:11.4", false},
		{"mysql:8.0.36", true},
		{"mysql:8.0.37", false},
		{"docker.io/library/mariadb:11.4", false},
	}
	for _, tc := range cases {
		if got := imageAllowed(tc.image, patterns); got != tc.want {
			t.Errorf("imageAllowed(%q) = %v, want %v", tc.image, got, tc.want)
		}
	}
	if !imageAllowed("anything:1", ImagePatterns("")) {
		t.Error("an empty list must allow any image")
	}
}

// A template asking for an image outside --allowed-images fails before any pod exists, and says
// which setting refused it.
func TestTemplateImageOutsideTheAllowListIsRefused(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{AllowedImages: ImagePatterns("mariadb:*")})
	ns := newNamespace(t)
	newTemplate(t, ns, "miner", func(d *myaasv1.DatabaseTemplate) { d.Spec.Engine.Image = "evil.example/miner:1" })
	newTemplate(t, ns, "shop")
	eventually(t, 20*time.Second, "refused import", func() error {
		f := getTemplate(t, ns, "miner").Status.LastFailure
		switch {
		case f == nil:
			return fmt.Errorf("no failure yet")
		case f.Reason != myaasv1.ReasonImageNotAllowed || !strings.Contains(f.Message, "evil.example/miner:1") || !strings.Contains(f.Message, "--allowed-images"):
			return fmt.Errorf("failure %s: %s", f.Reason, f.Message)
		}
		return nil
	})
	waitForImportJob(t, ns, "shop", 1)
	if n := countChildren(t, ns, "miner", &batchv1.JobList{}); n != 0 {
		t.Fatalf("%d import Jobs for a refused image", n)
	}
}
