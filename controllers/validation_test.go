package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func validTemplate(ns, name string) *myaasv1.DatabaseTemplate {
	return &myaasv1.DatabaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: myaasv1.DatabaseTemplateSpec{
			Engine:  myaasv1.EngineSpec{Type: myaasv1.EngineMariaDB},
			Source:  myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: "https://dumps.example.com/shop.sql.gz"}},
			Storage: myaasv1.TemplateStorage{Size: resource.MustParse("1Gi")},
		},
	}
}

// TestAPIRejectsBadInputAtApplyTime checks the messages `kubectl apply` prints for bad input: each
// names the field that is wrong.
func TestAPIRejectsBadInputAtApplyTime(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	cases := []struct {
		name   string
		mutate func(*myaasv1.DatabaseTemplate)
		want   string
	}{
		{"no source", func(d *myaasv1.DatabaseTemplate) { d.Spec.Source = myaasv1.DumpSource{} },
			"exactly one of source.persistentVolumeClaim, source.http or source.s3 must be set"},
		{"two sources", func(d *myaasv1.DatabaseTemplate) {
			d.Spec.Source.PersistentVolumeClaim = &myaasv1.PVCDumpSource{ClaimName: "dumps", Path: "a.sql"}
		}, "exactly one of source.persistentVolumeClaim, source.http or source.s3 must be set"},
		{"bad cron", func(d *myaasv1.DatabaseTemplate) { d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "every night"} },
			"spec.refresh.schedule"},
		{"zero size", func(d *myaasv1.DatabaseTemplate) { d.Spec.Storage.Size = resource.MustParse("0") },
			"storage.size must be greater than zero"},
		{"negative size", func(d *myaasv1.DatabaseTemplate) { d.Spec.Storage.Size = resource.MustParse("-1Gi") },
			"storage.size must be greater than zero"},
		{"unknown engine", func(d *myaasv1.DatabaseTemplate) { d.Spec.Engine.Type = "oracle" },
			`spec.engine.type: Unsupported value: "oracle"`},
		{"URL without scheme", func(d *myaasv1.DatabaseTemplate) { d.Spec.Source.HTTP.URL = "dumps.example.com/x.sql" },
			"spec.source.http.url"},
		{"credentials in the URL", func(d *myaasv1.DatabaseTemplate) {
			d.Spec.Source.HTTP.URL = "https://backup:s3cret@dumps.example.com/shop.sql.gz"
		}, "source.http.url must not carry credentials (user:password@): put them in a Secret named by source.http.secretRef"},
		{"credentials over plain http", func(d *myaasv1.DatabaseTemplate) {
			d.Spec.Source.HTTP = &myaasv1.HTTPDumpSource{URL: "http://dumps.example.com/shop.sql.gz", SecretRef: &corev1.LocalObjectReference{Name: "dump-auth"}}
		}, "over a plain http:// URL they travel in clear text; use https:// or set source.http.insecure: true"},
		{"absolute PVC path", func(d *myaasv1.DatabaseTemplate) {
			d.Spec.Source = myaasv1.DumpSource{PersistentVolumeClaim: &myaasv1.PVCDumpSource{ClaimName: "dumps", Path: "/etc/passwd"}}
		}, "path must be relative to the volume root"},
		{"s3 key and prefix", func(d *myaasv1.DatabaseTemplate) {
			d.Spec.Source = myaasv1.DumpSource{S3: &myaasv1.S3DumpSource{Endpoint: "s3.local", Bucket: "b", Key: "k", Prefix: "p"}}
		}, "exactly one of s3.key or s3.prefix must be set"},
		{"no revisions retained", func(d *myaasv1.DatabaseTemplate) { d.Spec.RetainRevisions = -1 },
			"spec.retainRevisions"},
		{"physical backup on PostgreSQL", func(d *myaasv1.DatabaseTemplate) {
			d.Spec.Engine.Type = myaasv1.EnginePostgreSQL
			d.Spec.Source.Format = myaasv1.SourceFormatMariaDBBackup
		}, "source.format mariadb-backup needs engine.type mariadb (or mysql, with XtraBackup)"},
		{"unknown source format", func(d *myaasv1.DatabaseTemplate) { d.Spec.Source.Format = "xtrabackup" },
			`spec.source.format: Unsupported value: "xtrabackup"`},
		{"root kept from the dump", func(d *myaasv1.DatabaseTemplate) { d.Spec.Import.KeepAccounts = []string{"reporting", "root@%"} },
			"keepAccounts must not name root"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := validTemplate(ns, "bad-"+strings.ReplaceAll(tc.name, " ", "-"))
			tc.mutate(d)
			err := k8s.Create(bg, d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("case %d: error %v, want it to contain %q", i, err, tc.want)
			}
		})
	}

	// What the rules above must not catch: an '@' in the path, credentials over http when allowed.
	allowed := validTemplate(ns, "plain-http-allowed")
	allowed.Spec.Source.HTTP = &myaasv1.HTTPDumpSource{URL: "http://dumps.internal/team@shop/x.sql",
		SecretRef: &corev1.LocalObjectReference{Name: "dump-auth"}, Insecure: true}
	if err := k8s.Create(bg, allowed); err != nil {
		t.Fatalf("a valid source was refused: %v", err)
	}
	backup := validTemplate(ns, "physical-backup")
	backup.Spec.Source.Format = myaasv1.SourceFormatMariaDBBackup
	if err := k8s.Create(bg, backup); err != nil {
		t.Fatalf("a mariadb-backup source was refused: %v", err)
	}

	// Immutable fields.
	d := validTemplate(ns, "shop")
	if err := k8s.Create(bg, d); err != nil {
		t.Fatal(err)
	}
	d.Spec.Engine.Type = myaasv1.EngineMySQL
	expectRejected(t, k8s.Update(bg, d), "engine.type is immutable")

	inst := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dev"},
		Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: "shop"}},
	}
	if err := k8s.Create(bg, inst); err != nil {
		t.Fatal(err)
	}
	if inst.Spec.Database != "app" || inst.Spec.Username != "app" || inst.Spec.ServiceType != "ClusterIP" {
		t.Fatalf("defaults not applied: %+v", inst.Spec)
	}
	inst.Spec.TemplateRef.Name = "other"
	expectRejected(t, k8s.Update(bg, inst), "templateRef is immutable")

	for _, tc := range []struct {
		name   string
		mutate func(*myaasv1.DatabaseInstance)
		want   string
	}{
		{"ttl and expiresAt", func(i *myaasv1.DatabaseInstance) {
			i.Spec.TTL = &metav1.Duration{Duration: 3600e9}
			i.Spec.ExpiresAt = ptr.To(metav1.Now())
		}, "set at most one of ttl and expiresAt"},
		{"root user", func(i *myaasv1.DatabaseInstance) { i.Spec.Username = "root" }, "username must not be root"},
		{"operator's user", func(i *myaasv1.DatabaseInstance) { i.Spec.Username = "myaas_admin" }, "username must not be myaas_admin"},
		{"unknown privilege", func(i *myaasv1.DatabaseInstance) {
			i.Spec.ExtraPrivileges = []myaasv1.Privilege{"PROCESS", "ALL PRIVILEGES"}
		}, `spec.extraPrivileges[1]: Unsupported value: "ALL PRIVILEGES"`},
		{"bad database name", func(i *myaasv1.DatabaseInstance) { i.Spec.Database = "shop; DROP" }, "spec.database"},
		{"no template", func(i *myaasv1.DatabaseInstance) { i.Spec.TemplateRef.Name = "" }, "spec.templateRef.name"},
	} {
		i := &myaasv1.DatabaseInstance{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad-" + strings.ReplaceAll(tc.name, " ", "-")},
			Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: "shop"}},
		}
		tc.mutate(i)
		if err := k8s.Create(bg, i); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}

	// Nothing already good was touched by the rejected updates.
	var stored myaasv1.DatabaseTemplate
	if err := k8s.Get(bg, client.ObjectKeyFromObject(d), &stored); err != nil || stored.Spec.Engine.Type != myaasv1.EngineMariaDB {
		t.Fatalf("stored template changed: %v %v", err, stored.Spec.Engine.Type)
	}
}

func expectRejected(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want it to contain %q", err, want)
	}
}
