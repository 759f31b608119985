package controllers

import (
	"fmt"
	"strings"
)

// ImagePatterns parses --allowed-images: comma-separated image references, where one ending in
// '*' stands for every reference that starts with what precedes it ("registry.corp/db/*").
func ImagePatterns(list string) []string {
	var out []string
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// imageAllowed says whether a template may run image. Its import pod mounts the template's
// source Secrets and runs as the template author's choice of image: a platform team that lets
// developers write templates can hold them to the images it trusts. No patterns allow any image.
func imageAllowed(image string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(image, prefix) || p == image {
			return true
		}
	}
	return false
}

func imageRefusal(image string, patterns []string) string {
	return fmt.Sprintf("image %s (spec.engine) is not allowed by this operator's --allowed-images (Helm value allowedImages: %s)",
		image, strings.Join(patterns, ", "))
}
