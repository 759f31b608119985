//go:build e2e

package e2e

import (
	"bytes"
	"compress/gzip"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// An S3 source with a prefix: the objects under it load in name order, with the keys from the
// credentials Secret, from a real S3 server the import pod finds through cluster DNS.
func TestS3Import(t *testing.T) {
	ns := newNamespace(t)
	endpoint := startS3Server(t, ns)

	var dump bytes.Buffer
	zw := gzip.NewWriter(&dump)
	if err := shopDump.Write(zw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	s3Upload(t, ns, "backups", map[string][]byte{
		"nightly/01-shop.sql.gz": dump.Bytes(),
		// Needs the database the first object creates: proves both loaded, in name order.
		"nightly/02-origin.sql": []byte("USE `shop`;\nCREATE TABLE `origin` (`source` varchar(10));\nINSERT INTO `origin` VALUES ('s3');\n"),
		// Beside the prefix, not under it: loading it would fail the import.
		"nightly.sql": []byte("this is not SQL;\n"),
	})

	// The server checks keys, so the import below can only succeed with the Secret's.
	anonymous := s3ClientWith(t, ns, credentials.NewStaticV4("", "", ""))
	for obj := range anonymous.ListObjects(ctx, "backups", minio.ListObjectsOptions{Prefix: "nightly/"}) {
		if obj.Err == nil {
			t.Fatalf("anonymous listing returned %s: the S3 server does not check credentials", obj.Key)
		}
		if minio.ToErrorResponse(obj.Err).Code != "AccessDenied" {
			t.Fatalf("anonymous listing: %v, want AccessDenied", obj.Err)
		}
	}

	newTemplate(t, ns, "shop-s3", myaasv1.DumpSource{S3: &myaasv1.S3DumpSource{
		Endpoint:             endpoint,
		Bucket:               "backups",
		Prefix:               "nightly/",
		Insecure:             true,
		CredentialsSecretRef: &corev1.LocalObjectReference{Name: s3CredentialsSecret},
	}})
	waitForRevision(t, ns, "shop-s3", 1, 300*time.Second)

	newInstance(t, ns, "s3-clone", "shop-s3")
	waitReady(t, ns, "s3-clone")
	db := connect(t, ns, "s3-clone")
	want := shopDump.Expect()
	if got := queryInt(t, db, "SELECT COUNT(*) FROM shop.orders"); got != int64(want.Orders) {
		t.Fatalf("orders %d, want %d", got, want.Orders)
	}
	if got := queryInt(t, db, "SELECT SUM(total_cents) FROM shop.orders"); got != want.OrderTotalCents {
		t.Fatalf("order total %d, want %d", got, want.OrderTotalCents)
	}
	if got := queryInt(t, db, "SELECT COUNT(*) FROM shop.origin WHERE source = 's3'"); got != 1 {
		t.Fatal("the second object under the prefix was not loaded after the first")
	}
}
