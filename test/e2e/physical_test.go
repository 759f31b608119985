//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/test/e2e/fixture"
)

const mariadbImage = "localhost/myaas/mariadb:10.11"

// backupScript loads the shop dump into a server of its own and streams a real mariadb-backup of
// it, gzip-compressed, into the backups volume, as a production backup job would.
const backupScript = `set -euo pipefail
mariadb-install-db --no-defaults --datadir=/tmp/src --auth-root-authentication-method=normal --skip-test-db >/dev/null
mariadbd --no-defaults --datadir=/tmp/src --socket=/tmp/src.sock --skip-networking --innodb-use-native-aio=0 \
  --innodb-buffer-pool-size=64M --log-error=/tmp/src.err &
for _ in $(seq 1 120); do mariadb-admin --no-defaults --socket=/tmp/src.sock -uroot ping >/dev/null 2>&1 && break; sleep 0.5; done
gunzip -c /dumps/shop.sql.gz | mariadb --no-defaults --socket=/tmp/src.sock -uroot
mariadb --no-defaults --socket=/tmp/src.sock -uroot -e "CREATE USER 'shop_app'@'%' IDENTIFIED BY 'production'"
mariadb-backup --no-defaults --backup --stream=xbstream --socket=/tmp/src.sock --user=root --target-dir=/tmp/backup 2>/tmp/backup.log |
  gzip -1 >/backups/shop.xb.gz.part || { tail -20 /tmp/backup.log; exit 1; }
mv /backups/shop.xb.gz.part /backups/shop.xb.gz
mariadb-admin --no-defaults --socket=/tmp/src.sock -uroot shutdown
ls -l /backups`

// A template whose source is a mariadb-backup stream served over HTTP: the import recognises the
// backup by its content, prepares it, masks it, and an instance of the revision serves the data.
func TestPhysicalBackupOverHTTP(t *testing.T) {
	ns := newNamespace(t)
	backups := backupPVC(t, ns)

	dep, svc := fixture.DumpServer(ns, shopDump.Rows, 0)
	pod := &dep.Spec.Template.Spec
	pod.Containers[0].Command = append(pod.Containers[0].Command, "--files=/backups")
	pod.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "backups", MountPath: "/backups", ReadOnly: true}}
	pod.Volumes = []corev1.Volume{{Name: "backups", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: backups, ReadOnly: true}}}}
	for _, o := range []client.Object{dep, svc} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitDeploymentReady(t, dep, 120*time.Second)

	url := fmt.Sprintf("http://dumpserver.%s.svc.cluster.local:8080/files/shop.xb.gz", ns)
	newTemplate(t, ns, "shop-physical", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.PostImportSQL = &myaasv1.PostImportSQL{Statements: []string{"UPDATE shop.customers SET email = 'masked@example.invalid'"}}
	})
	waitForRevision(t, ns, "shop-physical", 1, 300*time.Second)
	tmpl := getTemplate(t, ns, "shop-physical")
	if rev := tmpl.Status.Revisions; len(rev) != 1 || rev[0].DumpBytes <= 0 {
		t.Fatalf("revisions %+v: the revision must record the bytes of the backup it read", rev)
	}

	newInstance(t, ns, "physical-clone", "shop-physical")
	waitReady(t, ns, "physical-clone")
	db := connect(t, ns, "physical-clone")
	want := shopDump.Expect()
	for query, n := range map[string]int64{
		"SELECT COUNT(*) FROM shop.orders":                                            int64(want.Orders),
		"SELECT SUM(total_cents) FROM shop.orders":                                    want.OrderTotalCents,
		"SELECT COUNT(*) FROM shop.customers":                                         int64(want.Customers),
		"SELECT COUNT(*) FROM shop.customers WHERE email <> 'masked@example.invalid'": 0,
	} {
		if got := queryInt(t, db, query); got != n {
			t.Errorf("%s: %d, want %d", query, got, n)
		}
	}
}

// backupPVC makes a volume holding shop.xb.gz, a mariadb-backup stream of the shop dump, written
// by a Job in the engine's own image.
func backupPVC(t *testing.T, ns string) string {
	t.Helper()
	return volumeWrittenByJob(t, ns, "backups", "512Mi", corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr[int64](999), RunAsGroup: ptr[int64](999), FSGroup: ptr[int64](999)},
		InitContainers: []corev1.Container{{
			Name: "dump", Image: fixture.DumpServerImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command:      []string{"/dumpserver", "write", "--dir=/dumps", "--rows=" + strconv.Itoa(shopDump.Rows), "--seed=1"},
			VolumeMounts: []corev1.VolumeMount{{Name: "dumps", MountPath: "/dumps"}},
		}},
		Containers: []corev1.Container{{
			Name: "backup", Image: mariadbImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"bash", "-c", backupScript},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "dumps", MountPath: "/dumps", ReadOnly: true},
				{Name: "backups", MountPath: "/backups"},
			},
		}},
		Volumes: []corev1.Volume{{Name: "dumps", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}, "backups")
}
