package builder

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func template(mutate func(*myaasv1.DatabaseTemplate)) *myaasv1.DatabaseTemplate {
	t := &myaasv1.DatabaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "dev", Name: "shop", UID: "tmpl-uid"},
		Spec: myaasv1.DatabaseTemplateSpec{
			Engine:  myaasv1.EngineSpec{Type: myaasv1.EngineMariaDB},
			Source:  myaasv1.DumpSource{PersistentVolumeClaim: &myaasv1.PVCDumpSource{ClaimName: "dumps", Path: "nightly/*.sql.gz"}},
			Storage: myaasv1.TemplateStorage{Size: resource.MustParse("20Gi"), StorageClassName: ptr.To("zfs")},
		},
	}
	if mutate != nil {
		mutate(t)
	}
	return t
}

func TestImportJob(t *testing.T) {
	cases := []struct {
		name       string
		mutate     func(*myaasv1.DatabaseTemplate)
		wantImage  string
		wantArgs   []string
		wantEnv    map[string]string // value, or "secret:<name>/<key>"
		wantMounts []string
		deadline   *int64
	}{
		{
			name:      "PVC source with the default image",
			wantImage: "mariadb:11.4",
			wantArgs: []string{"--engine=mariadb", "--source-dir=/source", "--source-glob=nightly/*.sql.gz", "--datadir=/var/lib/myaas/data", "--progress-addr=:8090",
				"--keep-agent=/var/lib/myaas/.myaas/myaas"},
			wantMounts: []string{"/var/lib/myaas", "/run/myaas", "/opt/myaas/bin", "/source"},
		},
		{
			name: "HTTP source with auth, MySQL version, server options, timeout",
			mutate: func(d *myaasv1.DatabaseTemplate) {
				d.Spec.Engine = myaasv1.EngineSpec{Type: myaasv1.EngineMySQL, Version: "8.0", Config: map[string]string{"max_allowed_packet": "1G", "innodb_log_file_size": "1G"}}
				d.Spec.Source = myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: "https://dumps/x.sql.zst", SecretRef: &corev1.LocalObjectReference{Name: "dump-auth"}}}
				d.Spec.Import.Timeout = &metav1.Duration{Duration: 2 * time.Hour}
				d.Spec.Import.KeepAccounts = []string{"reporting", "etl@10.%"}
				d.Spec.Source.Format = myaasv1.SourceFormatMariaDBBackup
			},
			wantImage:  "mysql:8.0",
			wantEnv:    map[string]string{"MYAAS_IMAGE": "mysql:8.0"},
			wantArgs:   []string{"--source-format=mariadb-backup", "--keep-account=reporting", "--keep-account=etl@10.%", "--engine=mysql", "--source-url=https://dumps/x.sql.zst", "--source-auth-dir=/etc/myaas/source-auth", "--server-option=innodb_log_file_size=1G", "--server-option=max_allowed_packet=1G"},
			wantMounts: []string{"/etc/myaas/source-auth"},
			deadline:   ptr.To[int64](7200),
		},
		{
			name: "HTTP source with auth over plain http, allowed by the template",
			mutate: func(d *myaasv1.DatabaseTemplate) {
				d.Spec.Source = myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: "http://dumps.internal/x.sql", SecretRef: &corev1.LocalObjectReference{Name: "dump-auth"}, Insecure: true}}
			},
			wantImage:  "mariadb:11.4",
			wantArgs:   []string{"--source-url=http://dumps.internal/x.sql", "--source-auth-dir=/etc/myaas/source-auth", "--source-insecure=true"},
			wantMounts: []string{"/etc/myaas/source-auth"},
		},
		{
			name: "S3 prefix with credentials and post-import SQL from both places",
			mutate: func(d *myaasv1.DatabaseTemplate) {
				d.Spec.Engine.Image = "registry.local/mariadb:11.4-custom"
				d.Spec.Source = myaasv1.DumpSource{S3: &myaasv1.S3DumpSource{Endpoint: "minio:9000", Bucket: "dumps", Prefix: "shop/", Insecure: true, Region: "eu",
					CredentialsSecretRef: &corev1.LocalObjectReference{Name: "s3"}}}
				d.Spec.PostImportSQL = &myaasv1.PostImportSQL{
					Statements:   []string{"UPDATE users SET email = 'x';", "  ", "DELETE FROM sessions"},
					ConfigMapRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "masking"}, Key: "mask.sql"},
				}
			},
			wantImage: "registry.local/mariadb:11.4-custom",
			wantArgs:  []string{"--s3-endpoint=minio:9000", "--s3-bucket=dumps", "--s3-prefix=shop/", "--s3-region=eu", "--s3-insecure=true"},
			wantEnv: map[string]string{
				"AWS_ACCESS_KEY_ID":     "secret:s3/accessKeyID",
				"AWS_SECRET_ACCESS_KEY": "secret:s3/secretAccessKey",
				"MYAAS_POST_IMPORT_SQL": "UPDATE users SET email = 'x';\nDELETE FROM sessions;\n",
			},
			wantMounts: []string{"/etc/myaas/post-import"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := template(tc.mutate)
			job, err := ImportJob(tmpl, 3, 1, "myaas:v1")
			if err != nil {
				t.Fatal(err)
			}
			if job.Name != "shop-import-r3" || job.Namespace != "dev" || job.Labels[myaasv1.LabelRevision] != "3" {
				t.Fatalf("metadata %+v", job.ObjectMeta)
			}
			if ref := metav1.GetControllerOf(job); ref == nil || ref.UID != "tmpl-uid" || ref.Kind != "DatabaseTemplate" {
				t.Fatalf("owner %+v", job.OwnerReferences)
			}
			if *job.Spec.BackoffLimit != 0 {
				t.Fatal("an import must not retry by itself")
			}
			if !ptrEqual(job.Spec.ActiveDeadlineSeconds, tc.deadline) {
				t.Fatalf("deadline %v, want %v", job.Spec.ActiveDeadlineSeconds, tc.deadline)
			}
			pod := job.Spec.Template.Spec
			if pod.RestartPolicy != corev1.RestartPolicyNever || *pod.SecurityContext.RunAsUser != 999 || *pod.SecurityContext.FSGroup != 999 {
				t.Fatalf("pod policy %+v", pod.SecurityContext)
			}
			if init := pod.InitContainers[0]; init.Image != "myaas:v1" || !slices.Equal(init.Command, []string{"/myaas", "install", "/opt/myaas/bin/myaas"}) {
				t.Fatalf("install container %+v", init)
			}
			c := pod.Containers[0]
			if c.Image != tc.wantImage || c.Command[0] != "/opt/myaas/bin/myaas" || c.Args[0] != "agent" || c.Args[1] != "import" {
				t.Fatalf("container image %s command %v args %v", c.Image, c.Command, c.Args)
			}
			for _, a := range tc.wantArgs {
				if !slices.Contains(c.Args, a) {
					t.Errorf("missing arg %s in %v", a, c.Args)
				}
			}
			for name, want := range tc.wantEnv {
				if got := envValue(c.Env, name); got != want {
					t.Errorf("env %s = %q, want %q", name, got, want)
				}
			}
			if envValue(c.Env, "MYAAS_MEMORY_LIMIT") != "resource:limits.memory" {
				t.Error("memory limit not passed to the agent")
			}
			if envValue(c.Env, "MYAAS_CPU_LIMIT") != "resource:limits.cpu" {
				t.Error("CPU limit not passed to the agent: parallel restores are sized from it")
			}
			if envValue(c.Env, "MYAAS_VOLUME_BYTES") != "21474836480" {
				t.Errorf("volume size %q not passed to the agent: its redo log must fit", envValue(c.Env, "MYAAS_VOLUME_BYTES"))
			}
			var mounts []string
			for _, m := range c.VolumeMounts {
				mounts = append(mounts, m.MountPath)
			}
			for _, m := range tc.wantMounts {
				if !slices.Contains(mounts, m) {
					t.Errorf("missing mount %s in %v", m, mounts)
				}
			}
			if pod.Volumes[0].PersistentVolumeClaim.ClaimName != "shop-r3" {
				t.Fatalf("data volume %+v", pod.Volumes[0])
			}
		})
	}
}

func TestImportJobRejectsUnusableSpecs(t *testing.T) {
	for name, mutate := range map[string]func(*myaasv1.DatabaseTemplate){
		"unknown engine": func(d *myaasv1.DatabaseTemplate) { d.Spec.Engine.Type = "oracle" },
		"no source":      func(d *myaasv1.DatabaseTemplate) { d.Spec.Source = myaasv1.DumpSource{} },
	} {
		_, err := ImportJob(template(mutate), 1, 1, "x")
		if err == nil || !strings.Contains(err.Error(), "spec.") {
			t.Errorf("%s: error %v should name the field", name, err)
		}
	}
}

func TestTemplatePVCAndSnapshot(t *testing.T) {
	tmpl := template(func(d *myaasv1.DatabaseTemplate) { d.Spec.Storage.SnapshotClassName = ptr.To("zfs-snap") })
	pvc := TemplatePVC(tmpl, 7)
	if pvc.Name != "shop-r7" || *pvc.Spec.StorageClassName != "zfs" || pvc.Spec.Resources.Requests.Storage().String() != "20Gi" ||
		pvc.Labels[myaasv1.LabelRole] != myaasv1.RoleTemplateData || metav1.GetControllerOf(pvc) == nil {
		t.Fatalf("pvc %+v", pvc)
	}
	snap := TemplateSnapshot(tmpl, 7)
	if snap.Name != "shop-r7" || *snap.Spec.Source.PersistentVolumeClaimName != "shop-r7" || *snap.Spec.VolumeSnapshotClassName != "zfs-snap" ||
		metav1.GetControllerOf(snap) == nil {
		t.Fatalf("snapshot %+v", snap)
	}
	if snap := TemplateSnapshot(template(nil), 1); snap.Spec.VolumeSnapshotClassName != nil {
		t.Fatal("no class named: the driver's default class must be used")
	}
}

func TestRefreshCronJob(t *testing.T) {
	cases := []struct {
		name    string
		refresh myaasv1.RefreshSpec
	}{
		{"scheduled", myaasv1.RefreshSpec{Schedule: "0 3 * * *"}},
		{"suspended with time zone", myaasv1.RefreshSpec{Schedule: "@daily", Suspend: true, TimeZone: ptr.To("Europe/Madrid")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cj := RefreshCronJob(template(func(d *myaasv1.DatabaseTemplate) { d.Spec.Refresh = &tc.refresh }), "myaas:v1")
			if cj.Name != "shop-refresh" || cj.Spec.Schedule != tc.refresh.Schedule || *cj.Spec.Suspend != tc.refresh.Suspend ||
				!ptrEqual(cj.Spec.TimeZone, tc.refresh.TimeZone) {
				t.Fatalf("cronjob %+v", cj.Spec)
			}
			// Jobs made from the CronJob, by schedule or by `kubectl create job --from`, carry the
			// labels the operator looks for.
			l := cj.Spec.JobTemplate.Labels
			if l[myaasv1.LabelTemplate] != "shop" || l[myaasv1.LabelRole] != myaasv1.RoleRefreshRequest {
				t.Fatalf("job template labels %v", l)
			}
			c := cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0]
			if c.Image != "myaas:v1" || !slices.Equal(c.Command, []string{"/myaas", "refresh-request", "--template=dev/shop"}) {
				t.Fatalf("container %+v", c)
			}
		})
	}
}

func envValue(env []corev1.EnvVar, name string) string {
	for _, e := range env {
		if e.Name != name {
			continue
		}
		switch {
		case e.ValueFrom == nil:
			return e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			return "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom.ResourceFieldRef != nil:
			return "resource:" + e.ValueFrom.ResourceFieldRef.Resource
		}
	}
	return ""
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
