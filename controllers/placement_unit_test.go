package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func placed(uid, node string, deleting bool) myaasv1.DatabaseInstance {
	inst := myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}, Status: myaasv1.DatabaseInstanceStatus{Node: node}}
	if deleting {
		now := metav1.Now()
		inst.DeletionTimestamp = &now
	}
	return inst
}

func TestPlacementsCountWhatRunsAndWhatWasJustPlaced(t *testing.T) {
	now := time.Now()
	usable := []string{"c", "a", "b"}
	cases := []struct {
		name      string
		recent    map[types.UID]placement
		instances []myaasv1.DatabaseInstance
		want      string
	}{
		{name: "empty cluster: first by name", want: "a"},
		{name: "fewest instances", instances: []myaasv1.DatabaseInstance{placed("1", "a", false), placed("2", "b", false)}, want: "c"},
		{name: "instances being deleted count nowhere",
			instances: []myaasv1.DatabaseInstance{placed("1", "a", true), placed("2", "b", false), placed("3", "c", false)}, want: "a"},
		{name: "placed a moment ago, its status not in the cache yet",
			recent: map[types.UID]placement{"9": {node: "a", at: now}}, instances: []myaasv1.DatabaseInstance{placed("9", "", false), placed("2", "b", false)}, want: "c"},
		{name: "placed and gone from the cache: deleted",
			recent: map[types.UID]placement{"9": {node: "a", at: now}}, instances: []myaasv1.DatabaseInstance{placed("2", "b", false)}, want: "a"},
		{name: "placed long ago and never shown placed: forgotten",
			recent: map[types.UID]placement{"9": {node: "a", at: now.Add(-time.Hour)}}, instances: []myaasv1.DatabaseInstance{placed("9", "", false), placed("2", "b", false)}, want: "a"},
		{name: "the instance's own earlier choice holds",
			recent: map[types.UID]placement{"self": {node: "b", at: now}}, instances: []myaasv1.DatabaseInstance{placed("2", "b", false)}, want: "b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &placements{recent: tc.recent}
			if got := p.choose("self", usable, tc.instances, now); got != tc.want {
				t.Fatalf("placed on %s, want %s", got, tc.want)
			}
		})
	}
}
