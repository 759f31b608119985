//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// A template's warm pool: instances claim running, verified members, each with its own
// credentials and Service, isolated from each other and from the pool; a refresh rolls the pool
// while claimed instances keep serving; deleting the template removes the pool.
func TestWarmPool(t *testing.T) { forEachEngine(t, testWarmPool) }

func testWarmPool(t *testing.T, e engineCase) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0)
	newTemplate(t, ns, "shop", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: e.dump(url, "shop.sql.gz")}}, e.onEngine, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *"}
		d.Spec.WarmPool = &myaasv1.WarmPoolSpec{Size: 2, Database: e.database}
	})
	waitForRevision(t, ns, "shop", 1, 300*time.Second)
	waitForPool(t, ns, 2, 1)
	temporary := map[string]map[string]string{}
	for _, m := range poolMembers(t, ns) {
		temporary[m.Name] = secretData(t, ns, m.Name+"-credentials")
	}

	newInstance(t, ns, "alice", "shop", e.withDumpDatabase)
	newInstance(t, ns, "bob", "shop", e.withDumpDatabase)
	waitReady(t, ns, "alice")
	waitReady(t, ns, "bob")
	members := map[string]string{}
	for _, name := range []string{"alice", "bob"} {
		p := getInstance(t, ns, name).Status.Provisioning
		if p == nil || p.Path != myaasv1.ProvisionedFromPool || temporary[p.PoolMember] == nil {
			t.Fatalf("%s: provisioning %+v, want a claim of a member of the pool", name, p)
		}
		members[name] = p.PoolMember
	}
	if members["alice"] == members["bob"] {
		t.Fatalf("alice and bob were both given %s", members["alice"])
	}
	if out := kubectl(t, "-n", ns, "get", "dbi", "-l", myaasv1.LabelPool+"=shop"); !strings.Contains(out, members["alice"]) {
		t.Errorf("kubectl get dbi -l %s=shop does not list the claimed member:\n%s", myaasv1.LabelPool, out)
	}

	// Its own Service leads to its member's pod (the operator's login that made it Ready went
	// through it); its own Secret logs in to the template's data. The pool's temporary password
	// of its member no longer logs in.
	if got, want := serviceEndpoints(t, ns, "alice"), podIP(t, ns, members["alice"]); len(got) != 1 || got[0] != want {
		t.Fatalf("Service alice has endpoints %v, want the pod of %s (%s)", got, members["alice"], want)
	}
	aliceCreds := secretData(t, ns, "alice-credentials")
	e.checkCredentials(t, ns, "alice", aliceCreds)
	alice := e.connect(t, ns, "alice")
	want := shopDump.Expect()
	if got := queryInt(t, alice, "SELECT COUNT(*) FROM shop.orders"); got != int64(want.Orders) {
		t.Fatalf("alice: orders %d, want %d", got, want.Orders)
	}
	old := temporary[members["alice"]]
	if old["password"] == aliceCreds["password"] {
		t.Fatal("alice was given the pool's temporary password")
	}
	if err := e.open(t, podAddr(t, ns, "alice"), old["username"], old["password"], old["database"]).PingContext(ctx); err == nil {
		t.Fatal("the pool's temporary credentials still log in to alice's server")
	}

	// A write in one claimed instance is seen neither in another nor in the pool.
	if _, err := alice.ExecContext(ctx, "CREATE TABLE shop.alice_only (id int)"); err != nil {
		t.Fatal(err)
	}
	bob := e.connect(t, ns, "bob")
	const aliceTable = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'shop' AND table_name = 'alice_only'"
	if n := queryInt(t, bob, aliceTable); n != 0 {
		t.Fatal("bob sees alice's table")
	}
	waitForPool(t, ns, 2, 1)
	for _, m := range poolMembers(t, ns) {
		if n := queryInt(t, e.connect(t, ns, m.Name), aliceTable); n != 0 {
			t.Fatalf("pool member %s sees alice's table", m.Name)
		}
	}

	// A refresh rolls the pool; the claimed instances keep their revision and keep serving.
	kubectl(t, "-n", ns, "create", "job", "--from=cronjob/shop-refresh", "refresh-now")
	waitForRevision(t, ns, "shop", 2, 300*time.Second)
	waitForPool(t, ns, 2, 2)
	if n := queryInt(t, alice, aliceTable); n != 1 {
		t.Fatal("alice lost her table in the roll")
	}
	if got := getInstance(t, ns, "alice"); got.Status.Revision != 1 || got.Status.Phase != myaasv1.InstanceReady {
		t.Fatalf("alice after the roll: revision %d, phase %s", got.Status.Revision, got.Status.Phase)
	}
	newInstance(t, ns, "carol", "shop", e.withDumpDatabase)
	waitReady(t, ns, "carol")
	if got := getInstance(t, ns, "carol"); got.Status.Revision != 2 || got.Status.Provisioning.Path != myaasv1.ProvisionedFromPool {
		t.Fatalf("carol: revision %d, provisioning %+v; want a claim of revision 2", got.Status.Revision, got.Status.Provisioning)
	}

	// Deleting the template removes its pool; the claimed instances are the users' own.
	if err := k8s.Delete(ctx, getTemplate(t, ns, "shop")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 120*time.Second, "the pool removed with its template", func() error {
		if left := poolMembers(t, ns); len(left) > 0 {
			return fmt.Errorf("%d unclaimed members left", len(left))
		}
		return nil
	})
	if n := queryInt(t, alice, "SELECT COUNT(*) FROM shop.orders"); n != int64(want.Orders) {
		t.Fatal("alice stopped serving when the pool went")
	}
}

// poolMembers are the unclaimed members of template shop's pool.
func poolMembers(t *testing.T, ns string) []myaasv1.DatabaseInstance {
	t.Helper()
	list := &myaasv1.DatabaseInstanceList{}
	if err := k8s.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{myaasv1.LabelPool: "shop", myaasv1.LabelPoolState: myaasv1.PoolAvailable}); err != nil {
		t.Fatal(err)
	}
	var live []myaasv1.DatabaseInstance
	for _, m := range list.Items {
		if m.DeletionTimestamp.IsZero() {
			live = append(live, m)
		}
	}
	return live
}

func waitForPool(t *testing.T, ns string, ready, revision int32) {
	t.Helper()
	eventually(t, 300*time.Second, fmt.Sprintf("a warm pool of %d ready members of revision %d", ready, revision), func() error {
		p := getTemplate(t, ns, "shop").Status.WarmPool
		if p == nil || p.Ready != ready || p.Revision != revision || p.Starting != 0 || len(poolMembers(t, ns)) != int(ready) {
			return fmt.Errorf("warm pool status %+v", p)
		}
		return nil
	})
}

// serviceEndpoints are the addresses the Service's EndpointSlices lead to.
func serviceEndpoints(t *testing.T, ns, service string) []string {
	t.Helper()
	slices := &discoveryv1.EndpointSliceList{}
	if err := k8s.List(ctx, slices, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			addrs = append(addrs, ep.Addresses...)
		}
	}
	return addrs
}

func podIP(t *testing.T, ns, instance string) string {
	t.Helper()
	pod := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: instance + "-0"}, pod); err != nil {
		t.Fatal(err)
	}
	return pod.Status.PodIP
}
