package agent

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
)

// A dump from production brings its accounts along; a clone must accept none of their passwords.
const dumpWithAccounts = `CREATE DATABASE app;
CREATE TABLE app.t (id INT PRIMARY KEY);
INSERT INTO app.t VALUES (1);
CREATE DATABASE shop_eu;
CREATE TABLE shop_eu.orders (id INT PRIMARY KEY);
CREATE USER 'prod_admin'@'%' IDENTIFIED BY 'prod-secret';
GRANT ALL PRIVILEGES ON *.* TO 'prod_admin'@'%' WITH GRANT OPTION;
CREATE USER 'root'@'%' IDENTIFIED BY 'prod-root';
CREATE USER 'reporting'@'10.%' IDENTIFIED BY 'rep-secret';
GRANT SELECT ON shop_eu.* TO 'reporting'@'10.%';
CREATE ROLE dev_role;
`

func importWithAccounts(t *testing.T, keep ...string) (string, agentapi.Report) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "d.sql"), []byte(dumpWithAccounts), 0o644); err != nil {
		t.Fatal(err)
	}
	template, report, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "d.sql"}, keepAccounts: keep})
	if err != nil {
		t.Fatal(err)
	}
	return template, report
}

func accountsOf(t *testing.T, db *sql.DB) []string {
	t.Helper()
	accounts, err := listAccounts(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range accounts {
		names = append(names, a.User+"@"+a.Host)
	}
	return names
}

func TestImportDropsTheDumpsAccounts(t *testing.T) {
	for _, tc := range []struct {
		name        string
		keep        []string
		wantKept    []string
		wantDropped int
	}{
		{name: "every one", wantDropped: 4},
		{name: "but those kept", keep: []string{"reporting", "root", "nobody@%"}, wantKept: []string{"reporting@10.%"}, wantDropped: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			template, report := importWithAccounts(t, tc.keep...)
			if report.AccountsDropped != tc.wantDropped {
				t.Errorf("report counts %d accounts dropped, want %d (the initialisation's own do not count)", report.AccountsDropped, tc.wantDropped)
			}
			srv := serveDatadir(t, copyDir(t, template))
			db := srv.Root(t)
			defer db.Close()
			have := accountsOf(t, db)
			for _, gone := range []string{"prod_admin@%", "root@%", "dev_role@", "root@127.0.0.1", "root@::1"} {
				if slices.Contains(have, gone) {
					t.Errorf("the template keeps %s: %v", gone, have)
				}
			}
			for _, kept := range append(tc.wantKept, "root@localhost", "mariadb.sys@localhost") {
				if !slices.Contains(have, kept) {
					t.Errorf("the template lost %s: %v", kept, have)
				}
			}
			if len(have) != len(tc.wantKept)+2 {
				t.Errorf("accounts %v, want root@localhost, mariadb.sys@localhost and %v", have, tc.wantKept)
			}
		})
	}
}

// The application user is a developer on its databases and nothing more on the server: no file
// access, no shutdown, no grants, no accounts, no system tables; root has no TCP login.
func TestAppUserIsADeveloperNotAnAdmin(t *testing.T) {
	template, _ := importWithAccounts(t)
	// An instance cloned by an older version: root over TCP and the user with ALL on *.*.
	datadir := copyDir(t, template)
	t.Run("older clone", func(t *testing.T) {
		serveDatadir(t, datadir).Exec(t,
			"CREATE USER 'root'@'%' IDENTIFIED BY 'root-alice'", "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION",
			"CREATE USER 'alice'@'%' IDENTIFIED BY 'old'", "GRANT ALL PRIVILEGES ON *.* TO 'alice'@'%'")
	})
	creds := map[string]string{"username": "alice", "password": "pw-alice", "database": "app", "root-password": "root-alice"}
	addr, _ := startClone(t, datadir, creds)

	if err := login(addr, "root", "root-alice", ""); err == nil {
		t.Error("root logs in over TCP")
	}
	if err := login(addr, "prod_admin", "prod-secret", ""); err == nil {
		t.Error("the dump's prod_admin logs in to the clone")
	}
	db := open(t, addr, "alice", "pw-alice", "app")
	db.SetMaxOpenConns(1) // one session: the temporary table below must be seen by the next statement

	var loaded sql.NullString
	if err := db.QueryRow("SELECT LOAD_FILE('/etc/passwd')").Scan(&loaded); err == nil && loaded.Valid {
		t.Error("the application user reads /etc/passwd with LOAD_FILE")
	}
	outfile := filepath.Join(t.TempDir(), "out.txt")
	refused := []string{
		fmt.Sprintf("SELECT id INTO OUTFILE '%s' FROM app.t", outfile),
		"SHUTDOWN",
		"GRANT SELECT ON app.* TO 'alice'@'%'",
		"CREATE USER 'mallory'@'%' IDENTIFIED BY 'x'",
		"INSERT INTO mysql.user (Host, User) VALUES ('%', 'mallory')",
		"UPDATE mysql.global_priv SET Priv = '{}' WHERE User = 'root'",
		"SELECT COUNT(*) FROM mysql.global_priv",
		"SET GLOBAL max_connections = 1",
		"KILL 1",
		"CREATE DATABASE other",
	}
	for _, stmt := range refused {
		if _, err := db.Exec(stmt); err == nil {
			t.Errorf("the application user may run %s", stmt)
		}
	}
	if _, err := os.Stat(outfile); err == nil {
		t.Error("INTO OUTFILE wrote outside the pod's files directory")
	}

	allowed := []string{
		"CREATE TABLE app.mine (id INT PRIMARY KEY, v INT, KEY (v))",
		"INSERT INTO app.mine VALUES (1, 1)",
		"ALTER TABLE app.mine ADD COLUMN w INT",
		"CREATE INDEX w ON app.mine (w)",
		"CREATE TABLE app.child (id INT PRIMARY KEY, m INT, FOREIGN KEY (m) REFERENCES app.mine (id))",
		"CREATE PROCEDURE app.p() SELECT COUNT(*) FROM app.mine",
		"CALL app.p()",
		"CREATE FUNCTION app.f() RETURNS INT DETERMINISTIC RETURN 42",
		"CREATE TRIGGER app.tr BEFORE INSERT ON app.mine FOR EACH ROW SET NEW.v = NEW.v + 1",
		"CREATE VIEW app.v AS SELECT id FROM app.mine",
		"CREATE EVENT app.e ON SCHEDULE EVERY 1 DAY DO DELETE FROM app.mine WHERE id < 0",
		"CREATE TEMPORARY TABLE app.tmp (id INT)",
		"LOCK TABLES app.mine WRITE",
		"UNLOCK TABLES",
		"DROP VIEW app.v",
		"DROP TABLE app.child",
		// The databases the dump created are the user's too.
		"INSERT INTO shop_eu.orders VALUES (7)",
		"CREATE TABLE shop_eu.refunds (id INT)",
	}
	for _, stmt := range allowed {
		if _, err := db.Exec(stmt); err != nil {
			t.Errorf("the application user may not run %s: %v", stmt, err)
		}
	}

	// The operator's admin account sees every session and nothing of the data.
	admin := open(t, addr, agentapi.AdminUsername, "admin-root-alice", "")
	var others int
	if err := admin.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'alice'").Scan(&others); err != nil || others == 0 {
		t.Errorf("the admin account sees %d sessions of alice (%v)", others, err)
	}
	if _, err := admin.Exec("SELECT * FROM app.t"); err == nil {
		t.Error("the admin account reads the data")
	}

	var priv string
	if err := db.QueryRow("SELECT @@secure_file_priv").Scan(&priv); err != nil || strings.HasPrefix(priv, datadir) || !strings.HasSuffix(strings.TrimSuffix(priv, "/"), "/run/files") {
		t.Errorf("secure_file_priv %q (%v): want the pod's files directory", priv, err)
	}
}

func TestExtraPrivilegesWidenTheUser(t *testing.T) {
	template, _ := importWithAccounts(t)
	creds := map[string]string{"username": "alice", "password": "pw-alice", "database": "app", "root-password": "root-alice"}
	addr, _ := startClone(t, copyDir(t, template), creds, "PROCESS", "SHOW DATABASES")
	db := open(t, addr, "alice", "pw-alice", "app")
	var grant string
	if err := db.QueryRow("SHOW GRANTS").Scan(&grant); err != nil || !strings.Contains(grant, "PROCESS") || !strings.Contains(grant, "SHOW DATABASES") {
		t.Fatalf("grant on *.* %q (%v)", grant, err)
	}
	if _, err := db.Exec("SHUTDOWN"); err == nil {
		t.Error("extra privileges gave more than asked")
	}

	cred, admin := credentialDirs(t, creds)
	_, _, err := startCommand(startOptions{engine: "mariadb", datadir: copyDir(t, template), runDir: t.TempDir(), credentialsDir: cred, adminDir: admin,
		extraPrivileges: multiFlag{"PROCESS", "ALL"}})
	if err == nil || !strings.Contains(err.Error(), `extraPrivileges[1] "ALL"`) {
		t.Fatalf("an unknown privilege: %v", err)
	}
}

func TestDatadirDatabases(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"mysql", "performance_schema", "sys", "#innodb_temp", "app", "shop@002deu", "lost+found", "bad@0G"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ibdata1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := datadirDatabases(dir)
	if err != nil || !slices.Equal(got, []string{"app", "shop-eu"}) {
		t.Fatalf("databases %v (%v)", got, err)
	}
}

// A revision imported by an older version still holds the dump's accounts: its instances drop
// them at start, once, keeping their own users.
func TestOlderRevisionLosesTheDumpsAccountsAtStart(t *testing.T) {
	template, _ := importWithAccounts(t)
	datadir := copyDir(t, template)
	if !accountsDropped(datadir) {
		t.Fatal("the import did not record that it dropped the dump's accounts")
	}
	t.Run("as an older import left it", func(t *testing.T) {
		serveDatadir(t, datadir).Exec(t, "CREATE USER 'prod_admin'@'%' IDENTIFIED BY 'prod-secret'", "GRANT ALL PRIVILEGES ON *.* TO 'prod_admin'@'%'")
		if err := os.Remove(filepath.Join(datadir, agentapi.AccountsDroppedFile)); err != nil {
			t.Fatal(err)
		}
	})
	creds := map[string]string{"username": "alice", "password": "pw-alice", "database": "app", "root-password": "root-alice"}
	credDir, adminDir := credentialDirs(t, creds)
	addr, _, _ := agentStart(t, datadir, credDir, adminDir)
	deadline := time.Now().Add(60 * time.Second)
	for login(addr, "prod_admin", "prod-secret", "") == nil || !accountsDropped(datadir) {
		if time.Now().After(deadline) {
			t.Fatal("the older revision's prod_admin still logs in")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := login(addr, "alice", "pw-alice", "app"); err != nil {
		t.Fatalf("the instance's own user was dropped with them: %v", err)
	}
	if err := login(addr, agentapi.AdminUsername, "admin-root-alice", ""); err != nil {
		t.Fatalf("the operator's account was dropped with them: %v", err)
	}
}
