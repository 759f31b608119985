package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// poolTemplate is the small dump's template with a warm pool, measured beside the cold path.
const poolTemplate = "pool"

// runPool is the warm pool's rows: claims one after the other (the pool full again before each,
// as a pool sized for its load is), then concurrent claims against a pool of that many, and what
// the idle pool costs in memory. Each time is also given as a multiple of the floor.
func (b *bench) runPool(ctx context.Context, rows, runs, concurrent int, floor time.Duration) error {
	err := b.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: poolTemplate}, &myaasv1.DatabaseTemplate{})
	if apierrors.IsNotFound(err) {
		err = b.template(ctx, mariadb, poolTemplate, rows, "2Gi")
	}
	if err != nil {
		return err
	}
	const sequentialPool = 3
	if err := b.sizePool(ctx, sequentialPool); err != nil {
		return err
	}
	var times []time.Duration
	claimedSeq := 0
	for i := range runs {
		if err := b.waitPoolFull(ctx, sequentialPool); err != nil {
			return err
		}
		d, inst, err := b.provision(ctx, fmt.Sprintf("%s-seq-%02d", poolTemplate, i), poolTemplate)
		if err != nil {
			return err
		}
		times = append(times, d)
		if fromPool(inst) {
			claimedSeq++
		}
	}
	slices.Sort(times)
	p50 := percentile(times, 50)
	fmt.Printf("warm pool of %d (refilled before each claim), %d sequential claims: p50 %s  p95 %s  (min %s, max %s); %d of %d from the pool; p50/floor %.1fx\n",
		sequentialPool, runs, secs(p50), secs(percentile(times, 95)), secs(times[0]), secs(times[len(times)-1]), claimedSeq, runs, float64(p50)/float64(floor))

	if err := b.sizePool(ctx, int32(concurrent)); err != nil {
		return err
	}
	if err := b.waitPoolFull(ctx, int32(concurrent)); err != nil {
		return err
	}
	rss, usage, err := b.poolMemory(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("an idle warm pool of %d: memory %s resident (%s each), %s with page cache (cgroup memory of its pods)\n",
		concurrent, mib(rss), mib(rss/int64(concurrent)), mib(usage))
	all, err := b.concurrent(ctx, poolTemplate, concurrent)
	if err != nil {
		return err
	}
	claimed := 0
	for i := range concurrent {
		d := &myaasv1.DatabaseInstance{}
		if err := b.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: fmt.Sprintf("%s-par-%02d", poolTemplate, i)}, d); err != nil {
			return err
		}
		if fromPool(d) {
			claimed++
		}
	}
	fmt.Printf("%d claims at once against a warm pool of %d: all Ready in %s (%d from the pool); /floor %.1fx\n",
		concurrent, concurrent, secs(all), claimed, float64(all)/float64(floor))
	return b.sizePool(ctx, 0)
}

func (b *bench) sizePool(ctx context.Context, size int32) error {
	t := &myaasv1.DatabaseTemplate{}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: poolTemplate}, t); err != nil {
		return err
	}
	t.Spec.WarmPool = &myaasv1.WarmPoolSpec{Size: size}
	return b.c.Update(ctx, t)
}

func (b *bench) waitPoolFull(ctx context.Context, size int32) error {
	return poll(ctx, 10*time.Minute, fmt.Sprintf("warm pool of %d ready", size), func() (bool, error) {
		t := &myaasv1.DatabaseTemplate{}
		if err := b.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: poolTemplate}, t); err != nil {
			return false, err
		}
		p := t.Status.WarmPool
		return p != nil && p.Size == size && p.Ready == size && p.Starting == 0, nil
	})
}

// fromPool: the instance claimed a member of the warm pool.
func fromPool(d *myaasv1.DatabaseInstance) bool {
	return d.Status.Provisioning != nil && d.Status.Provisioning.Path == myaasv1.ProvisionedFromPool
}

// poolMemory sums the memory cgroups of the pool's unclaimed members' pods: resident (rss) and
// with page cache (usage). The kubelet runs pods under /sys/fs/cgroup/memory/kubepods (cgroup v1).
func (b *bench) poolMemory(ctx context.Context) (rss, usage int64, err error) {
	members := &myaasv1.DatabaseInstanceList{}
	if err := b.c.List(ctx, members, client.InNamespace(namespace),
		client.MatchingLabels{myaasv1.LabelPool: poolTemplate, myaasv1.LabelPoolState: myaasv1.PoolAvailable}); err != nil {
		return 0, 0, err
	}
	for _, m := range members.Items {
		pod := &corev1.Pod{}
		if err := b.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: m.Name + "-0"}, pod); err != nil {
			return 0, 0, err
		}
		dirs, _ := filepath.Glob("/sys/fs/cgroup/memory/kubepods*/pod" + string(pod.UID))
		more, _ := filepath.Glob("/sys/fs/cgroup/memory/kubepods*/*/pod" + string(pod.UID))
		dirs = append(dirs, more...)
		if len(dirs) == 0 {
			return 0, 0, fmt.Errorf("no memory cgroup for pod %s (uid %s)", pod.Name, pod.UID)
		}
		u, err := readInt(filepath.Join(dirs[0], "memory.usage_in_bytes"))
		if err != nil {
			return 0, 0, err
		}
		stat, err := os.ReadFile(filepath.Join(dirs[0], "memory.stat"))
		if err != nil {
			return 0, 0, err
		}
		for line := range strings.Lines(string(stat)) {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "total_rss" {
				r, _ := strconv.ParseInt(f[1], 10, 64)
				rss += r
			}
		}
		usage += u
	}
	return rss, usage, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
