package builder

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// restrictedViolations lists what keeps a pod from the Pod Security Standards' restricted
// profile (https://kubernetes.io/docs/concepts/security/pod-security-standards/), as the
// PodSecurity admission plugin checks it, and whether the pod mounts a service account token.
func restrictedViolations(spec *corev1.PodSpec) []string {
	var out []string
	bad := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		bad("service account token mounted")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		bad("host namespaces")
	}
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	for _, v := range spec.Volumes {
		s := v.VolumeSource
		if s.ConfigMap == nil && s.CSI == nil && s.DownwardAPI == nil && s.EmptyDir == nil && s.Ephemeral == nil &&
			s.PersistentVolumeClaim == nil && s.Projected == nil && s.Secret == nil {
			bad("volume %s of a type restricted does not allow", v.Name)
		}
	}
	containers := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range containers {
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil {
			nonRoot = psc.RunAsNonRoot
		}
		uid := sc.RunAsUser
		if uid == nil {
			uid = psc.RunAsUser
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		switch {
		case nonRoot == nil || !*nonRoot:
			bad("%s: runAsNonRoot not true", c.Name)
		case uid == nil || *uid == 0:
			// A numeric user lets the kubelet check runAsNonRoot whatever the image says.
			bad("%s: no numeric non-zero runAsUser", c.Name)
		case seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost):
			bad("%s: seccompProfile not RuntimeDefault", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			bad("%s: allowPrivilegeEscalation not false", c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			bad("%s: privileged", c.Name)
		case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL":
			bad("%s: capabilities not dropping ALL", c.Name)
		case len(sc.Capabilities.Add) > 1 || (len(sc.Capabilities.Add) == 1 && sc.Capabilities.Add[0] != "NET_BIND_SERVICE"):
			bad("%s: capabilities added", c.Name)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				bad("%s: hostPort", c.Name)
			}
		}
	}
	return out
}

func TestPodsMeetTheRestrictedProfile(t *testing.T) {
	mustJob := func(d *myaasv1.DatabaseTemplate) *corev1.PodSpec {
		job, err := ImportJob(d, 1, 1, "myaas:v1")
		if err != nil {
			t.Fatal(err)
		}
		return &job.Spec.Template.Spec
	}
	statefulSet := func(agentInVolume bool) *corev1.PodSpec {
		sts := InstanceStatefulSet(instance(nil), StatefulSetParams{
			Engine: mustEngine(t, "mariadb"), Image: "mariadb:11.4", AgentImage: "myaas:v1",
			Revision: 1, SnapshotName: "shop-r1", RestoreSize: resource.MustParse("1Gi"), AgentInVolume: agentInVolume,
		})
		return &sts.Spec.Template.Spec
	}
	cases := []struct {
		name    string
		spec    *corev1.PodSpec
		wantUID int64
	}{
		{name: "import from a PVC", spec: mustJob(template(nil)), wantUID: databaseUID},
		{name: "import over HTTP with credentials and post-import SQL from a ConfigMap", spec: mustJob(template(func(d *myaasv1.DatabaseTemplate) {
			d.Spec.Source = myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: "https://dumps/x.sql", SecretRef: &corev1.LocalObjectReference{Name: "auth"}}}
			d.Spec.PostImportSQL = &myaasv1.PostImportSQL{ConfigMapRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sql"}, Key: "k"}}
		})), wantUID: databaseUID},
		{name: "import from S3", spec: mustJob(template(func(d *myaasv1.DatabaseTemplate) {
			d.Spec.Source = myaasv1.DumpSource{S3: &myaasv1.S3DumpSource{Endpoint: "http://s3", Bucket: "b", Key: "k", CredentialsSecretRef: &corev1.LocalObjectReference{Name: "s3"}}}
		})), wantUID: databaseUID},
		{name: "instance with the agent copied in", spec: statefulSet(false), wantUID: databaseUID},
		{name: "instance running the agent from its clone", spec: statefulSet(true), wantUID: databaseUID},
		{name: "refresh request", spec: &RefreshCronJob(template(func(d *myaasv1.DatabaseTemplate) {
			d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "0 3 * * *"}
		}), "myaas:v1").Spec.JobTemplate.Spec.Template.Spec, wantUID: managerUID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if v := restrictedViolations(tc.spec); len(v) > 0 {
				t.Fatalf("not restricted: %v", v)
			}
			if got := tc.spec.SecurityContext.RunAsUser; !ptrEqual(got, ptr.To(tc.wantUID)) {
				t.Fatalf("runAsUser %v, want %d (the image's own user, which owns its files)", got, tc.wantUID)
			}
			// The data volume is the mysql user's, and a clone keeps its owner: the kubelet
			// changes ownership only when the volume's root does not match.
			if tc.wantUID == databaseUID {
				psc := tc.spec.SecurityContext
				if !ptrEqual(psc.FSGroup, ptr.To[int64](databaseUID)) || !ptrEqual(psc.FSGroupChangePolicy, ptr.To(corev1.FSGroupChangeOnRootMismatch)) {
					t.Fatalf("fsGroup %v policy %v", psc.FSGroup, psc.FSGroupChangePolicy)
				}
			}
		})
	}
}

// The checker itself must catch what it is there to catch.
func TestRestrictedViolationsFindsWhatRestrictedRefuses(t *testing.T) {
	ok := func() *corev1.PodSpec {
		return &corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext:              databasePodSecurityContext(),
			Containers:                   []corev1.Container{{Name: "c", SecurityContext: containerSecurityContext()}},
		}
	}
	if v := restrictedViolations(ok()); len(v) > 0 {
		t.Fatalf("a restricted pod reported: %v", v)
	}
	for name, mutate := range map[string]func(*corev1.PodSpec){
		"token":        func(s *corev1.PodSpec) { s.AutomountServiceAccountToken = nil },
		"root":         func(s *corev1.PodSpec) { s.SecurityContext.RunAsNonRoot = nil },
		"no uid":       func(s *corev1.PodSpec) { s.SecurityContext.RunAsUser = nil },
		"no seccomp":   func(s *corev1.PodSpec) { s.SecurityContext.SeccompProfile = nil },
		"escalation":   func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil },
		"capabilities": func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Capabilities = nil },
		"added cap": func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"SYS_ADMIN"}
		},
		"hostPath": func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		},
		"init container": func(s *corev1.PodSpec) { s.InitContainers = []corev1.Container{{Name: "i"}} },
		"host network":   func(s *corev1.PodSpec) { s.HostNetwork = true },
		"container port": func(s *corev1.PodSpec) { s.Containers[0].Ports = []corev1.ContainerPort{{HostPort: 3306}} },
	} {
		s := ok()
		mutate(s)
		if v := restrictedViolations(s); len(v) == 0 {
			t.Errorf("%s: not reported", name)
		}
	}
}
