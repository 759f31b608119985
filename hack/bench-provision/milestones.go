package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
)

// The steps of one instance's cold path, in the order they normally happen, as the API shows
// them: what the operator, the scheduler, the CSI provisioner, the kubelet and the endpoints
// controller each wrote, first seen by a watch.
const (
	stepPVCMade         = "PVC made"
	stepPodMade         = "pod made"
	stepPVCBound        = "PVC bound"
	stepScheduled       = "pod scheduled"
	stepPodIP           = "pod IP"
	stepRunning         = "server running"
	stepEndpoint        = "endpoint"
	stepStarting        = "phase Starting"
	stepPodReady        = "pod Ready"
	stepInstanceReady   = "Ready"
	endpointServiceName = "kubernetes.io/service-name"
)

var steps = []string{stepPVCMade, stepPodMade, stepPVCBound, stepScheduled, stepPodIP, stepRunning, stepEndpoint, stepStarting, stepPodReady, stepInstanceReady}

// milestones records when each step was first seen for each instance of the namespace.
type milestones struct {
	mu   sync.Mutex
	seen map[string]map[string]time.Time // instance → step → first seen
}

func (m *milestones) mark(instance, step string) {
	if instance == "" {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen[instance] == nil {
		m.seen[instance] = map[string]time.Time{}
	}
	if _, ok := m.seen[instance][step]; !ok {
		m.seen[instance][step] = now
	}
}

// since is each step's time after start for one instance; a step never seen is left out.
func (m *milestones) since(instance string, start time.Time) map[string]time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]time.Duration{}
	for step, t := range m.seen[instance] {
		out[step] = t.Sub(start)
	}
	return out
}

// watchMilestones follows the namespace's PVCs, pods, EndpointSlices and instances until ctx ends.
func watchMilestones(ctx context.Context, c client.WithWatch, ns string) *milestones {
	m := &milestones{seen: map[string]map[string]time.Time{}}
	follow := func(list client.ObjectList, observe func(runtimeObject any)) {
		for ctx.Err() == nil {
			w, err := c.Watch(ctx, list, client.InNamespace(ns))
			if err != nil {
				log.Printf("watch %T: %v", list, err)
				time.Sleep(time.Second)
				continue
			}
			for ev := range w.ResultChan() {
				if ev.Type == watch.Added || ev.Type == watch.Modified {
					observe(ev.Object)
				}
			}
		}
	}
	go follow(&corev1.PersistentVolumeClaimList{}, func(o any) {
		pvc, ok := o.(*corev1.PersistentVolumeClaim)
		if !ok {
			return
		}
		m.mark(pvc.Labels[myaasv1.LabelInstance], stepPVCMade)
		if pvc.Status.Phase == corev1.ClaimBound {
			m.mark(pvc.Labels[myaasv1.LabelInstance], stepPVCBound)
		}
	})
	go follow(&corev1.PodList{}, func(o any) {
		pod, ok := o.(*corev1.Pod)
		if !ok {
			return
		}
		inst := pod.Labels[myaasv1.LabelInstance]
		m.mark(inst, stepPodMade)
		if pod.Spec.NodeName != "" {
			m.mark(inst, stepScheduled)
		}
		if pod.Status.PodIP != "" {
			m.mark(inst, stepPodIP)
		}
		for _, s := range pod.Status.ContainerStatuses {
			if s.Name == builder.DatabaseContainer && s.State.Running != nil {
				m.mark(inst, stepRunning)
			}
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				m.mark(inst, stepPodReady)
			}
		}
	})
	go follow(&discoveryv1.EndpointSliceList{}, func(o any) {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok && len(s.Endpoints) > 0 {
			m.mark(s.Labels[endpointServiceName], stepEndpoint)
		}
	})
	go follow(&myaasv1.DatabaseInstanceList{}, func(o any) {
		d, ok := o.(*myaasv1.DatabaseInstance)
		if !ok {
			return
		}
		// Starting: the operator saw the server run and logs in; an instance whose first login
		// succeeds goes from Cloning to Ready and never shows it.
		if d.Status.Phase == myaasv1.InstanceStarting {
			m.mark(d.Name, stepStarting)
		}
		if meta.IsStatusConditionTrue(d.Status.Conditions, myaasv1.ConditionReady) {
			m.mark(d.Name, stepInstanceReady)
		}
	})
	return m
}

// breakdown is the p50 of each step's time after apply over the instances given.
func breakdown(perInstance []map[string]time.Duration) string {
	return breakdownAt(perInstance, 50)
}

// breakdownAt is the p-th percentile of each step's time after apply.
func breakdownAt(perInstance []map[string]time.Duration, p int) string {
	parts := make([]string, 0, len(steps))
	for _, step := range steps {
		var times []time.Duration
		for _, inst := range perInstance {
			if d, ok := inst[step]; ok {
				times = append(times, d)
			}
		}
		if len(times) == 0 {
			continue
		}
		slices.Sort(times)
		parts = append(parts, fmt.Sprintf("%s %s", step, secs(percentile(times, p))))
	}
	return strings.Join(parts, ", ")
}
