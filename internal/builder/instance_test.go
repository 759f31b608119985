package builder

import (
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

func instance(mutate func(*myaasv1.DatabaseInstance)) *myaasv1.DatabaseInstance {
	i := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: "feature-x", UID: "0123456789abcdef"},
		Spec: myaasv1.DatabaseInstanceSpec{
			TemplateRef: myaasv1.TemplateReference{Name: "shop"},
			Database:    "shop", Username: "app",
		},
	}
	if mutate != nil {
		mutate(i)
	}
	return i
}

func mustEngine(t *testing.T, name string) engine.Engine {
	t.Helper()
	e, err := engine.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCredentialsSecret(t *testing.T) {
	for _, eng := range []string{"mariadb", "mysql"} {
		t.Run(eng, func(t *testing.T) {
			s := CredentialsSecret(instance(nil), mustEngine(t, eng), Passwords{Password: "pw/with?odd&chars"})
			d := s.StringData
			if s.Name != "feature-x-credentials" || s.Type != "servicebinding.io/mysql" || metav1.GetControllerOf(s) == nil {
				t.Fatalf("secret meta %+v type %s", s.ObjectMeta, s.Type)
			}
			if d["host"] != "feature-x.ci.svc" || d["port"] != "3306" || d["username"] != "app" || d["password"] != "pw/with?odd&chars" ||
				d["database"] != "shop" || d["type"] != "mysql" || d["provider"] != "myaas" {
				t.Fatalf("binding keys %v", d)
			}
			// Root and the operator's account log in with passwords the application never sees.
			for k, v := range d {
				if strings.Contains(k, "root") || strings.Contains(k, "admin") || strings.Contains(v, "myaas_admin") {
					t.Errorf("the user's Secret holds %s=%s", k, v)
				}
			}
			// Every URI form must round-trip to the same credentials.
			u, err := url.Parse(d["uri"])
			if err != nil {
				t.Fatal(err)
			}
			if pw, _ := u.User.Password(); u.Scheme != "mysql" || u.User.Username() != "app" || pw != "pw/with?odd&chars" || u.Host != "feature-x.ci.svc:3306" || u.Path != "/shop" {
				t.Fatalf("uri %s", d["uri"])
			}
			cfg, err := mysql.ParseDSN(d["dsn"])
			if err != nil {
				t.Fatal(err)
			}
			if cfg.User != "app" || cfg.Passwd != "pw/with?odd&chars" || cfg.Addr != "feature-x.ci.svc:3306" || cfg.DBName != "shop" || cfg.Net != "tcp" {
				t.Fatalf("dsn %+v", cfg)
			}
			jdbc, err := url.Parse(strings.TrimPrefix(d["jdbc-uri"], "jdbc:"))
			if err != nil {
				t.Fatal(err)
			}
			if jdbc.Scheme != eng || jdbc.Host != "feature-x.ci.svc:3306" || jdbc.Query().Get("password") != "pw/with?odd&chars" || jdbc.Query().Get("user") != "app" {
				t.Fatalf("jdbc-uri %s", d["jdbc-uri"])
			}
		})
	}
}

func TestAdminSecret(t *testing.T) {
	s := AdminSecret(instance(nil), AdminPasswords{Password: "adminpw", RootPassword: "rootpw"})
	if s.Name != "feature-x-admin" || s.Namespace != "ci" || s.Type != corev1.SecretTypeOpaque {
		t.Fatalf("admin Secret %s/%s type %s", s.Namespace, s.Name, s.Type)
	}
	if owner := metav1.GetControllerOf(s); owner == nil || owner.UID != "0123456789abcdef" || owner.Kind != "DatabaseInstance" {
		t.Fatalf("owner %+v: deleting the instance must delete its admin Secret", owner)
	}
	if s.Labels[myaasv1.LabelInstance] != "feature-x" || s.Labels["app.kubernetes.io/managed-by"] != "myaas" {
		t.Fatalf("labels %v", s.Labels)
	}
	want := map[string]string{"username": "myaas_admin", "password": "adminpw", "root-password": "rootpw"}
	if !reflect.DeepEqual(s.StringData, want) {
		t.Fatalf("data %v, want %v", s.StringData, want)
	}
	if s.Name == CredentialsSecretName("feature-x") {
		t.Fatal("the admin Secret is the user's")
	}
}

func TestInstanceService(t *testing.T) {
	for _, tc := range []struct {
		svcType corev1.ServiceType
		want    corev1.ServiceType
	}{{"", corev1.ServiceTypeClusterIP}, {corev1.ServiceTypeNodePort, corev1.ServiceTypeNodePort}} {
		svc := InstanceService(instance(func(i *myaasv1.DatabaseInstance) { i.Spec.ServiceType = tc.svcType }), mustEngine(t, "mariadb"))
		if svc.Spec.Type != tc.want || svc.Spec.Selector[myaasv1.LabelInstance] != "feature-x" || svc.Spec.Ports[0].Port != 3306 ||
			svc.Spec.Ports[0].TargetPort.StrVal != "mysql" || svc.Kind != "Service" {
			t.Fatalf("service %+v", svc)
		}
	}
}

func TestInstanceStatefulSet(t *testing.T) {
	affinity := &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "openebs.io/nodeid", Operator: "In", Values: []string{"n1"}}}}},
	}}
	cases := []struct {
		name         string
		mutate       func(*myaasv1.DatabaseInstance)
		affinity     *corev1.NodeAffinity
		wantReplicas int32
		wantClaim    string
		wantArgs     []string
	}{
		{name: "fresh instance pinned to the snapshot's node", affinity: affinity, wantReplicas: 1, wantClaim: "data-01234567"},
		{name: "extra privileges", mutate: func(i *myaasv1.DatabaseInstance) {
			i.Spec.ExtraPrivileges = []myaasv1.Privilege{"PROCESS", "SHOW DATABASES"}
		}, wantReplicas: 1, wantClaim: "data-01234567", wantArgs: []string{"--extra-privilege=PROCESS", "--extra-privilege=SHOW DATABASES"}},
		{name: "suspended", mutate: func(i *myaasv1.DatabaseInstance) { i.Spec.Suspend = true }, wantReplicas: 0, wantClaim: "data-01234567"},
		{name: "after two resets", mutate: func(i *myaasv1.DatabaseInstance) { i.Status.Resets = 2 }, wantReplicas: 1, wantClaim: "data-01234567-2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst := instance(tc.mutate)
			sts := InstanceStatefulSet(inst, StatefulSetParams{
				Engine: mustEngine(t, "mariadb"), Image: "mariadb:11.4", AgentImage: "myaas:v1",
				ServerConfig: map[string]string{"max_connections": "50"},
				Revision:     4, SnapshotName: "shop-r4", RestoreSize: resource.MustParse("20Gi"),
				StorageClassName: ptr.To("zfs"), NodeAffinity: tc.affinity,
			})
			if *sts.Spec.Replicas != tc.wantReplicas || sts.Kind != "StatefulSet" || metav1.GetControllerOf(sts) == nil {
				t.Fatalf("replicas %d", *sts.Spec.Replicas)
			}
			if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p != nil {
				t.Fatalf("retention %+v: the operator owns the clone PVC, the StatefulSet controller must not write it", p)
			}
			claim := sts.Spec.VolumeClaimTemplates[0]
			pvc := InstanceClaim(inst, StatefulSetParams{
				Engine: mustEngine(t, "mariadb"), Revision: 4, SnapshotName: "shop-r4", RestoreSize: resource.MustParse("20Gi"),
				StorageClassName: ptr.To("zfs"), NodeAffinity: tc.affinity,
			})
			// The StatefulSet controller names its claim <template>-<set>-<ordinal>: it must find ours.
			if pvc.Name != claim.Name+"-"+sts.Name+"-0" || pvc.Namespace != inst.Namespace {
				t.Fatalf("PVC %s/%s is not the one the StatefulSet uses (%s-%s-0)", pvc.Namespace, pvc.Name, claim.Name, sts.Name)
			}
			if owner := metav1.GetControllerOf(pvc); owner == nil || owner.UID != inst.UID || owner.Kind != "DatabaseInstance" {
				t.Fatalf("PVC owner %+v: deleting the instance must delete its clone", owner)
			}
			if !reflect.DeepEqual(pvc.Spec, claim.Spec) || !reflect.DeepEqual(mergeLabels(claim.Labels, selectorLabels(inst)), pvc.Labels) {
				t.Fatalf("PVC %+v differs from the claim template %+v", pvc, claim)
			}
			if claim.Name != tc.wantClaim || claim.Spec.DataSource.Name != "shop-r4" || *claim.Spec.DataSource.APIGroup != "snapshot.storage.k8s.io" ||
				claim.Spec.Resources.Requests.Storage().String() != "20Gi" || *claim.Spec.StorageClassName != "zfs" ||
				claim.Labels[myaasv1.LabelRevision] != "4" || claim.Labels[myaasv1.LabelRole] != myaasv1.RoleInstanceData {
				t.Fatalf("claim %+v", claim)
			}
			pod := sts.Spec.Template.Spec
			if (pod.Affinity != nil) != (tc.affinity != nil) {
				t.Fatalf("affinity %+v", pod.Affinity)
			}
			c := pod.Containers[0]
			args := strings.Join(c.Args, " ")
			if !strings.HasPrefix(args, "agent start --engine=mariadb") || !strings.Contains(args, fmt.Sprintf("--server-id=%d", ServerID(inst.UID))) ||
				!strings.Contains(args, "--server-option=max_connections=50") || !strings.Contains(args, "--credentials-dir=/etc/myaas/credentials") ||
				!strings.Contains(args, "--admin-credentials-dir=/etc/myaas/admin") {
				t.Fatalf("args %s", args)
			}
			for _, a := range tc.wantArgs {
				if !slices.Contains(c.Args, a) {
					t.Errorf("missing arg %q in %v", a, c.Args)
				}
			}
			if tc.wantArgs == nil && strings.Contains(args, "--extra-privilege") {
				t.Errorf("extra privileges nobody asked for: %s", args)
			}
			// The agent reads root's password from the admin Secret, mounted apart from the user's.
			var adminSecret string
			for _, v := range pod.Volumes {
				if v.Name == volumeAdminCreds && v.Secret != nil {
					adminSecret = v.Secret.SecretName
				}
			}
			if adminSecret != "feature-x-admin" || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
				return m.Name == volumeAdminCreds && m.MountPath == agentapi.AdminCredentialsDir && m.ReadOnly
			}) {
				t.Fatalf("admin Secret %q mounts %+v", adminSecret, c.VolumeMounts)
			}
			// The agent answers the probe over HTTP on a port of its own, which the kubelet reaches.
			if get := c.ReadinessProbe.HTTPGet; get == nil || get.Path != agentapi.ReadinessPath || get.Port.StrVal != agentapi.ReadinessPortName ||
				!slices.Contains(c.Args, agentapi.Flag(agentapi.FlagReadinessPort, strconv.Itoa(agentapi.ReadinessPort))) {
				t.Fatalf("probe %+v, args %v", c.ReadinessProbe, c.Args)
			}
			if c.VolumeMounts[0].Name != tc.wantClaim || c.VolumeMounts[0].MountPath != "/var/lib/myaas" {
				t.Fatalf("data mount %+v", c.VolumeMounts[0])
			}
			if sel := sts.Spec.Selector.MatchLabels; len(sel) != 1 || sel[myaasv1.LabelInstance] != "feature-x" {
				t.Fatalf("selector %v must stay minimal and fixed", sel)
			}
		})
	}
}

func TestNamesAndServerID(t *testing.T) {
	if a, b := ServerID("uid-a"), ServerID("uid-b"); a == b || a == 0 || a != ServerID("uid-a") {
		t.Fatalf("server ids %d %d", a, b)
	}
	if got := InstancePVCName("x", types.UID("abcdef0123"), 0); got != "data-abcdef01-x-0" {
		t.Fatal(got)
	}
	if TemplatePVCName("t", 2) != "t-r2" || ImportJobName("t", 2, 1) != "t-import-r2" || ImportJobName("t", 2, 3) != "t-import-r2-a3" || SnapshotName("t", 2) != "t-r2" || RefreshCronJobName("t") != "t-refresh" {
		t.Fatal("names changed: existing objects would no longer be found after an upgrade")
	}
}

func TestInstanceStatefulSetRunsTheAgentFromTheCloneWhenItIsTheSame(t *testing.T) {
	for _, tc := range []struct {
		name          string
		agentInVolume bool
		wantAgent     string
		wantInit      int
	}{
		{name: "revision imported by another agent image: copy the current one in", wantAgent: "/opt/myaas/bin/myaas", wantInit: 1},
		{name: "revision imported by this agent image: run it from the clone", agentInVolume: true, wantAgent: "/var/lib/myaas/.myaas/myaas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sts := InstanceStatefulSet(instance(nil), StatefulSetParams{
				Engine: mustEngine(t, "mariadb"), Image: "mariadb:11.4", AgentImage: "myaas:v1",
				Revision: 1, SnapshotName: "shop-r1", RestoreSize: resource.MustParse("1Gi"), AgentInVolume: tc.agentInVolume,
			})
			pod := sts.Spec.Template.Spec
			c := pod.Containers[0]
			if len(pod.InitContainers) != tc.wantInit || c.Command[0] != tc.wantAgent {
				t.Fatalf("init containers %d, command %v", len(pod.InitContainers), c.Command)
			}
			for _, v := range pod.Volumes {
				if v.Name == volumeBin && tc.wantInit == 0 {
					t.Fatal("an agent volume nobody fills")
				}
			}
			for _, m := range c.VolumeMounts {
				if m.MountPath == agentapi.DataMountPath && !strings.HasPrefix(tc.wantAgent, m.MountPath) && tc.agentInVolume {
					t.Fatalf("the agent %s is not in the data volume %s", tc.wantAgent, m.MountPath)
				}
			}
		})
	}
}

func TestInstanceBufferPoolFollowsItsOwnMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		resources corev1.ResourceRequirements
		want      []corev1.EnvVar
	}{
		{name: "no limit: the agent's default, not the node's memory"},
		{name: "limit", resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
			want: []corev1.EnvVar{{Name: "MYAAS_MEMORY_LIMIT", Value: "1073741824"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sts := InstanceStatefulSet(instance(func(i *myaasv1.DatabaseInstance) { i.Spec.Resources = tc.resources }), StatefulSetParams{
				Engine: mustEngine(t, "mariadb"), Image: "mariadb:11.4", AgentImage: "myaas:v1", Revision: 1, SnapshotName: "shop-r1",
				RestoreSize: resource.MustParse("1Gi"),
			})
			if got := sts.Spec.Template.Spec.Containers[0].Env; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("env %+v, want %+v", got, tc.want)
			}
		})
	}
}
