//go:build e2e

package e2e

import (
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// A nightly dump of production carries production's accounts. A developer's clone accepts none
// of their passwords (unless the template keeps one on purpose), root has no login from outside
// the pod, and the application user is a developer on its databases, not an administrator of
// the server.
func TestAccountsOfTheDumpAreDroppedAndTheAppUserIsNoAdmin(t *testing.T) {
	ns := newNamespace(t)
	url := startDumpServer(t, ns, 0) + "/accounts/shop.sql.gz"
	newTemplate(t, ns, "prod", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url}})
	newTemplate(t, ns, "prod-reporting", myaasv1.DumpSource{HTTP: &myaasv1.HTTPDumpSource{URL: url}}, func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Import.KeepAccounts = []string{"reporting"}
	})
	waitForRevision(t, ns, "prod", 1, 300*time.Second)
	waitForRevision(t, ns, "prod-reporting", 1, 300*time.Second)
	newInstance(t, ns, "dev", "prod")
	newInstance(t, ns, "dev-reporting", "prod-reporting")
	waitReady(t, ns, "dev")
	waitReady(t, ns, "dev-reporting")

	addr, keptAddr := podAddr(t, ns, "dev"), podAddr(t, ns, "dev-reporting")
	refusedLogin := func(addr, user, password, why string) {
		t.Helper()
		err := open(t, addr, user, password, "").PingContext(ctx)
		var merr *mysql.MySQLError
		if !errors.As(err, &merr) || merr.Number != 1045 {
			t.Errorf("%s: login as %s gives %v, want access denied", why, user, err)
		}
	}
	if out := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=prod,reason=ImportSucceeded"); !strings.Contains(out, "dropped 2 accounts the dump created") {
		t.Errorf("the import's event does not tell the accounts dropped:\n%s", out)
	}
	if out := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=prod-reporting,reason=ImportSucceeded"); !strings.Contains(out, "dropped 1 account the dump created") {
		t.Errorf("the import that keeps reporting drops only prod_admin:\n%s", out)
	}
	refusedLogin(addr, "prod_admin", "prod-secret", "the dump's prod_admin on the clone")
	refusedLogin(addr, "reporting", "report-secret", "the dump's reporting account on the clone")
	refusedLogin(keptAddr, "prod_admin", "prod-secret", "the dump's prod_admin beside a kept account")
	if got := queryInt(t, open(t, keptAddr, "reporting", "report-secret", "shop"), "SELECT COUNT(*) FROM orders"); got != int64(shopDump.Expect().Orders) {
		t.Errorf("the kept reporting account reads %d orders", got)
	}

	// Root's password is the operator's, and root has no login over TCP.
	if creds := secretData(t, ns, "dev-credentials"); creds["root-password"] != "" {
		t.Error("the application's Secret holds root's password")
	}
	admin := secretData(t, ns, "dev-admin")
	refusedLogin(addr, "root", admin["root-password"], "root over TCP")
	refusedLogin(addr, "root", "", "root without a password over TCP")

	app := connect(t, ns, "dev")
	app.SetMaxOpenConns(1)
	var loaded sql.NullString
	if err := app.QueryRowContext(ctx, "SELECT LOAD_FILE('/etc/passwd')").Scan(&loaded); err == nil && loaded.Valid {
		t.Error("the application user reads the pod's /etc/passwd")
	}
	for _, stmt := range []string{
		"SELECT id INTO OUTFILE '/tmp/orders.txt' FROM shop.orders",
		"SHUTDOWN",
		"GRANT SELECT ON shop.* TO 'app'@'%'",
		"CREATE USER 'mallory'@'%' IDENTIFIED BY 'mallory'",
		"INSERT INTO mysql.user (Host, User) VALUES ('%', 'mallory')",
		"SELECT COUNT(*) FROM mysql.global_priv",
	} {
		if _, err := app.ExecContext(ctx, stmt); err == nil {
			t.Errorf("the application user may run %s", stmt)
		}
	}
	// What a developer does to the schema works, in its own database and in the dump's.
	for _, stmt := range []string{
		"CREATE TABLE app.notes (id INT PRIMARY KEY, body TEXT)",
		"INSERT INTO app.notes VALUES (1, 'x')",
		"CREATE TABLE shop.coupons (code VARCHAR(20) PRIMARY KEY, cents INT)",
		"ALTER TABLE shop.orders ADD COLUMN coupon VARCHAR(20)",
		"INSERT INTO shop.coupons VALUES ('WELCOME', 500)",
		"CREATE VIEW shop.big_orders AS SELECT id FROM shop.orders WHERE total_cents > 90000",
		"CREATE PROCEDURE shop.coupon_count() SELECT COUNT(*) FROM shop.coupons",
		"CALL shop.coupon_count()",
		"CREATE TRIGGER shop.coupon_upper BEFORE INSERT ON shop.coupons FOR EACH ROW SET NEW.code = UPPER(NEW.code)",
		"CREATE EVENT shop.purge ON SCHEDULE EVERY 1 DAY DO DELETE FROM shop.coupons WHERE cents = 0",
		"CALL shop.order_count(@n)",
	} {
		if _, err := app.ExecContext(ctx, stmt); err != nil {
			t.Errorf("the application user may not run %s: %v", stmt, err)
		}
	}
	if got := queryInt(t, app, "SELECT 1"); got != 1 {
		t.Fatal("the server is gone after the refused SHUTDOWN")
	}
	if d := getInstance(t, ns, "dev"); d.Status.Phase != myaasv1.InstanceReady {
		t.Errorf("phase %s after the checks", d.Status.Phase)
	}
}
