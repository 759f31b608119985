package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitRule(t *testing.T) {
	rule := func(resources ...any) object {
		return object{"apiGroups": []any{""}, "resources": resources, "verbs": []any{"get"}}
	}
	for _, tc := range []struct {
		name                string
		in                  object
		cluster, namespaced object
		wantErr             string
	}{
		{name: "namespaced", in: rule("secrets", "pods/status"), namespaced: rule("secrets", "pods/status")},
		{name: "cluster-scoped", in: rule("persistentvolumes"), cluster: rule("persistentvolumes")},
		{name: "mixed", in: rule("persistentvolumes", "persistentvolumeclaims"),
			cluster: rule("persistentvolumes"), namespaced: rule("persistentvolumeclaims")},
		{name: "non-resource URL", in: object{"nonResourceURLs": []any{"/metrics"}, "verbs": []any{"get"}},
			cluster: object{"nonResourceURLs": []any{"/metrics"}, "verbs": []any{"get"}}},
		{name: "unknown resource", in: rule("widgets"), wantErr: `"widgets"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, ns, err := splitRule(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(cl, tc.cluster) || !reflect.DeepEqual(ns, tc.namespaced) {
				t.Errorf("cluster %v, namespaced %v, %v; want %v, %v", cl, ns, err, tc.cluster, tc.namespaced)
			}
		})
	}
}
