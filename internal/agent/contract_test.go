package agent

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/builder"
	"github.com/myaas/myaas/internal/engine"
)

// The pods the operator builds must be understood by this agent: every argument the builders put
// into the import Job and the instance StatefulSet goes through the agent's own flag parsers.

func contractTemplate(source myaasv1.DumpSource) *myaasv1.DatabaseTemplate {
	return &myaasv1.DatabaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "dev", UID: "u1"},
		Spec: myaasv1.DatabaseTemplateSpec{
			Engine:        myaasv1.EngineSpec{Type: myaasv1.EngineMariaDB, Config: map[string]string{"max_connections": "500"}},
			Source:        source,
			PostImportSQL: &myaasv1.PostImportSQL{ConfigMapRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "mask"}, Key: "mask.sql"}},
			Storage:       myaasv1.TemplateStorage{Size: resource.MustParse("1Gi")},
		},
	}
}

func TestImportJobArgsParseInTheAgent(t *testing.T) {
	cases := []struct {
		name   string
		source myaasv1.DumpSource
		check  func(t *testing.T, o importOptions)
	}{
		{"pvc", myaasv1.DumpSource{PersistentVolumeClaim: &myaasv1.PVCDumpSource{ClaimName: "dumps", Path: "nightly/*.sql.gz"}}, func(t *testing.T, o importOptions) {
			if o.source.dir != agentapi.SourceDir || o.source.glob != "nightly/*.sql.gz" {
				t.Errorf("source %+v", o.source)
			}
		}},
		{"http", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: "https://dumps.example/shop.sql.gz", SecretRef: &corev1.LocalObjectReference{Name: "auth"}}}, func(t *testing.T, o importOptions) {
			if o.source.url != "https://dumps.example/shop.sql.gz" || o.source.authDir != agentapi.SourceAuthDir {
				t.Errorf("source %+v", o.source)
			}
		}},
		{"s3", myaasv1.DumpSource{S3: &myaasv1.S3DumpSource{Endpoint: "s3.local:8333", Bucket: "dumps", Prefix: "shop/", Region: "eu", Insecure: true}}, func(t *testing.T, o importOptions) {
			s := o.source
			if s.s3Endpoint != "s3.local:8333" || s.bucket != "dumps" || s.s3Prefix != "shop/" || s.s3Region != "eu" || !s.s3Insecure {
				t.Errorf("source %+v", s)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			job, err := builder.ImportJob(contractTemplate(tc.source), 3, 1, "manager:dev")
			if err != nil {
				t.Fatal(err)
			}
			c := job.Spec.Template.Spec.Containers[0]
			if c.Command[0] != agentapi.AgentBinary || c.Args[0] != "agent" || c.Args[1] != agentapi.CommandImport {
				t.Fatalf("command %v %v", c.Command, c.Args[:2])
			}
			o, err := parseImportFlags(c.Args[2:])
			if err != nil {
				t.Fatalf("the agent rejects the Job's args %v: %v", c.Args, err)
			}
			if o.engine != "mariadb" || o.datadir != agentapi.DataDir || o.runDir != agentapi.RunDir ||
				o.keepAgent != agentapi.AgentInVolume || o.terminationLog != agentapi.TerminationLog ||
				o.progressAddr != fmt.Sprintf(":%d", agentapi.ProgressPort) || o.postImportFile != agentapi.PostImportFile {
				t.Errorf("parsed %+v", o)
			}
			if !slices.Equal(o.serverOptions, multiFlag{"max_connections=500"}) {
				t.Errorf("server options %v", o.serverOptions)
			}
			tc.check(t, o)
			// Every path the agent reads lies on a mount of the pod.
			for _, p := range []string{o.datadir, o.runDir, o.postImportFile, o.keepAgent, c.Command[0]} {
				if !mounted(c.VolumeMounts, p) {
					t.Errorf("%s is on no volume of the import pod", p)
				}
			}
		})
	}
}

func TestInstanceArgsParseInTheAgent(t *testing.T) {
	inst := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "dev", UID: "5f1c"},
		Spec: myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: "shop"}, Username: "app", Database: "app",
			RequireSecureTransport: true},
	}
	for _, inVolume := range []bool{false, true} {
		t.Run(fmt.Sprintf("agentInVolume=%v", inVolume), func(t *testing.T) {
			sts := builder.InstanceStatefulSet(inst, builder.StatefulSetParams{
				Engine: engine.MariaDB{}, Image: "mariadb:11.4", AgentImage: "manager:dev", Revision: 1,
				SnapshotName: "shop-r1", RestoreSize: resource.MustParse("1Gi"), AgentInVolume: inVolume,
				ServerConfig: map[string]string{"max_connections": "500"},
			})
			pod := sts.Spec.Template.Spec
			c := pod.Containers[0]
			if c.Args[0] != "agent" || c.Args[1] != agentapi.CommandStart {
				t.Fatalf("args %v", c.Args)
			}
			o, err := parseStartFlags(c.Args[2:])
			if err != nil {
				t.Fatalf("the agent rejects the StatefulSet's args %v: %v", c.Args, err)
			}
			if o.engine != "mariadb" || o.datadir != agentapi.DataDir || o.runDir != agentapi.RunDir ||
				o.credentialsDir != agentapi.CredentialsDir || o.adminDir != agentapi.AdminCredentialsDir || o.port != 3306 || o.serverID != uint(builder.ServerID(inst.UID)) {
				t.Errorf("parsed %+v", o)
			}
			// The kubelet's probe reaches the port the agent serves it on, by the container port's name.
			get := c.ReadinessProbe.HTTPGet
			if get == nil || get.Path != agentapi.ReadinessPath {
				t.Fatalf("readiness probe %+v, want a GET of %s", c.ReadinessProbe, agentapi.ReadinessPath)
			}
			if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
				return p.Name == get.Port.StrVal && int(p.ContainerPort) == o.readinessPort
			}) {
				t.Errorf("probe port %q is not the agent's --%s=%d among %+v", get.Port.StrVal, agentapi.FlagReadinessPort, o.readinessPort, c.Ports)
			}
			if o.tlsDir != agentapi.TLSDir || !o.requireSecureTransport {
				t.Errorf("TLS parsed as dir %q, require %v", o.tlsDir, o.requireSecureTransport)
			}
			for _, p := range []string{o.datadir, o.runDir, o.credentialsDir + "/" + agentapi.SecretKeyPassword, o.tlsDir + "/" + agentapi.TLSCertKey, o.adminDir + "/" + agentapi.AdminKeyRootPassword, c.Command[0]} {
				if !mounted(c.VolumeMounts, p) {
					t.Errorf("%s is on no volume of the instance pod", p)
				}
			}
		})
	}
}

// mounted says whether path lies under one of the container's mounts.
func mounted(mounts []corev1.VolumeMount, path string) bool {
	for _, m := range mounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}
