package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// runNodes is the row of a cluster of several nodes with node-local storage, against its own
// baseline in the same run: the small template on the one node its volume is on, and the same
// template with a copy on every node, instances spread over them.
func (b *bench) runNodes(ctx context.Context, rows, runs, concurrent int) error {
	nodes := &corev1.NodeList{}
	if err := b.c.List(ctx, nodes); err != nil {
		return err
	}
	n := int32(len(nodes.Items))
	if n < 2 {
		return fmt.Errorf("--nodes-only needs a cluster of several nodes (make dev-cluster NODES=3); this one has %d", n)
	}
	if err := b.template(ctx, mariadb, "onenode", rows, "2Gi"); err != nil {
		return err
	}
	start := time.Now()
	if err := b.template(ctx, mariadb, "spread", rows, "2Gi", func(t *myaasv1.DatabaseTemplate) {
		t.Spec.Replicas = &myaasv1.ReplicaSpec{Nodes: &n}
	}); err != nil {
		return err
	}
	if err := poll(ctx, time.Hour, fmt.Sprintf("template spread ready on %d nodes", n), func() (bool, error) {
		t := &myaasv1.DatabaseTemplate{}
		if err := b.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "spread"}, t); err != nil {
			return false, err
		}
		ready := 0
		for _, rep := range t.Status.Revisions[0].Replicas {
			if rep.State == myaasv1.ReplicaReady {
				ready++
			}
		}
		return ready == int(n), nil
	}); err != nil {
		return err
	}
	fmt.Printf("template with a copy on each of %d nodes: ready on all in %s\n", n, time.Since(start).Round(time.Second))

	one, err := b.sequential(ctx, "onenode", runs, " on the one node of its volume")
	if err != nil {
		return err
	}
	spread, err := b.sequential(ctx, "spread", runs, fmt.Sprintf(" over %d nodes", n))
	if err != nil {
		return err
	}
	oneAll, err := b.concurrent(ctx, "onenode", concurrent)
	if err != nil {
		return err
	}
	for i := range concurrent {
		if err := b.c.Delete(ctx, b.instance(fmt.Sprintf("onenode-par-%02d", i), "onenode")); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	// The next row on a machine as quiet as this one had: the servers just deleted stopped.
	if err := poll(ctx, 5*time.Minute, "the one-node instances' pods gone", func() (bool, error) {
		left, err := b.instancesPerNode(ctx, "onenode")
		return left == "", err
	}); err != nil {
		return err
	}
	spreadAll, err := b.concurrent(ctx, "spread", concurrent)
	if err != nil {
		return err
	}
	perNode, err := b.instancesPerNode(ctx, "spread")
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Printf("%d nodes, node-local storage (one btrfs pool per node): sequential p50 %s on one node, %s spread over %d nodes\n",
		n, secs(one.p50), secs(spread.p50), n)
	fmt.Printf("%d nodes, %d instances applied at once: all Ready in %s on one node, %s spread over %d nodes (%s)\n",
		n, concurrent, secs(oneAll), secs(spreadAll), n, perNode)
	return nil
}

// instancesPerNode counts the template's instances by the node their pod runs on.
func (b *bench) instancesPerNode(ctx context.Context, template string) (string, error) {
	pods := &corev1.PodList{}
	if err := b.c.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels{myaasv1.LabelTemplate: template, myaasv1.LabelRole: myaasv1.RoleInstance}); err != nil {
		return "", err
	}
	count := map[string]int{}
	for _, p := range pods.Items {
		count[p.Spec.NodeName]++
	}
	var parts []string
	for node, c := range count {
		parts = append(parts, fmt.Sprintf("%s: %d", node, c))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", "), nil
}
