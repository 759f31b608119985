package engine

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestCredentialSQLGrants(t *testing.T) {
	creds := Credentials{Username: "app", Password: "pw", Database: "app", RootPassword: "rootpw", AdminUsername: "myaas_admin", AdminPassword: "adminpw"}
	devGrant := "GRANT " + strings.Join(DeveloperPrivileges, ", ") + " ON "
	for _, tc := range []struct {
		name    string
		creds   Credentials
		grants  Grants
		want    []string
		notWant []string
	}{{
		name:  "own database only",
		creds: creds,
		want: []string{
			"DROP USER IF EXISTS 'root'@'%', 'root'@'127.0.0.1', 'root'@'::1'",
			"REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app'@'%'",
			devGrant + "`app`.* TO 'app'@'%'",
			"CREATE USER IF NOT EXISTS 'myaas_admin'@'%' IDENTIFIED BY 'adminpw'",
			"REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'myaas_admin'@'%'",
			"GRANT PROCESS ON *.* TO 'myaas_admin'@'%'",
			"ALTER USER 'root'@'localhost' IDENTIFIED BY 'rootpw'",
		},
		notWant: []string{"ON *.* TO 'app'", "'root'@'%' IDENTIFIED", "WITH GRANT OPTION", "ALL PRIVILEGES ON"},
	}, {
		name:   "the dump's databases, wildcards escaped, each once",
		creds:  creds,
		grants: Grants{Databases: []string{"shop_eu", "app", "50%off", "shop_eu"}},
		want: []string{
			devGrant + "`app`.* TO 'app'@'%'",
			devGrant + "`shop\\_eu`.* TO 'app'@'%'",
			devGrant + "`50\\%off`.* TO 'app'@'%'",
		},
	}, {
		name:   "extra privileges on *.*",
		creds:  creds,
		grants: Grants{Extra: []string{"PROCESS", "SHOW DATABASES", "PROCESS"}},
		want:   []string{"GRANT PROCESS, SHOW DATABASES ON *.* TO 'app'@'%'"},
	}, {
		name:   "grant option alone",
		creds:  creds,
		grants: Grants{Extra: []string{"GRANT OPTION"}},
		want:   []string{"GRANT USAGE ON *.* TO 'app'@'%' WITH GRANT OPTION"},
	}, {
		name:    "no admin account when none is given",
		creds:   Credentials{Username: "app", Password: "pw", Database: "app", RootPassword: "r"},
		notWant: []string{"myaas_admin", "PROCESS"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, eng := range []MySQLFamily{MariaDB{}, MySQL{}} {
				stmts := eng.CredentialSQL(tc.creds, tc.grants)
				for _, w := range tc.want {
					if !slices.Contains(stmts, w) {
						t.Errorf("%s: missing %q in\n%s", eng.Name(), w, strings.Join(stmts, "\n"))
					}
				}
				all := strings.Join(stmts, "\n")
				for _, nw := range tc.notWant {
					if strings.Contains(all, nw) {
						t.Errorf("%s: unexpected %q in\n%s", eng.Name(), nw, all)
					}
				}
				// Privileges are revoked before they are granted, or a restart would keep old ones.
				if r, g := slices.Index(stmts, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app'@'%'"), slices.IndexFunc(stmts, func(s string) bool {
					return strings.HasPrefix(s, "GRANT ") && strings.HasSuffix(s, "TO 'app'@'%'")
				}); r < 0 || g < r {
					t.Errorf("%s: revoke at %d, first grant at %d", eng.Name(), r, g)
				}
			}
		})
	}
}

func TestDeveloperPrivilegesLeaveOutTheServer(t *testing.T) {
	for _, p := range []string{"FILE", "SHUTDOWN", "SUPER", "PROCESS", "RELOAD", "GRANT OPTION", "CREATE USER", "ALL PRIVILEGES"} {
		if slices.Contains(DeveloperPrivileges, p) {
			t.Errorf("the application user gets %s", p)
		}
	}
}

func TestValidatePrivileges(t *testing.T) {
	for _, tc := range []struct {
		privs   []string
		wantErr string
	}{
		{privs: nil},
		{privs: []string{"PROCESS", "SHOW DATABASES", "GRANT OPTION"}},
		{privs: []string{"PROCESS", "process"}, wantErr: `extraPrivileges[1] "process" is not a privilege`},
		{privs: []string{"ALL PRIVILEGES"}, wantErr: `extraPrivileges[0] "ALL PRIVILEGES"`},
		{privs: []string{"SELECT; DROP USER x"}, wantErr: `extraPrivileges[0]`},
	} {
		err := ValidatePrivileges(tc.privs)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%v: error %v, want %q", tc.privs, err, tc.wantErr)
		}
	}
}

func TestSecureFilePrivIsServed(t *testing.T) {
	for _, eng := range []MySQLFamily{MariaDB{}, MySQL{}} {
		opts := eng.ServingOptions(1<<27, 7, "../run", "/run/myaas/files")
		if !slices.Contains(opts, "--secure-file-priv=/run/myaas/files") {
			t.Errorf("%s: serving options %v lack secure-file-priv", eng.Name(), opts)
		}
	}
}

func TestAccounts(t *testing.T) {
	for _, tc := range []struct {
		account Account
		system  bool
		keep    []string
		kept    bool
		drop    []string
	}{
		{account: Account{"root", "localhost"}, system: true},
		{account: Account{"mariadb.sys", "localhost"}, system: true},
		{account: Account{"mysql.session", "localhost"}, system: true},
		{account: Account{"PUBLIC", ""}, system: true},
		{account: Account{"root", "%"}, drop: []string{"DROP USER 'root'@'%'"}},
		{account: Account{"prod_admin", "%"}, keep: []string{"reporting"}, drop: []string{"DROP USER 'prod_admin'@'%'"}},
		{account: Account{"reporting", "10.%"}, keep: []string{"reporting"}, kept: true},
		{account: Account{"reporting", "10.%"}, keep: []string{"reporting@%"}},
		{account: Account{"reporting", "%"}, keep: []string{"reporting@%"}, kept: true},
		{account: Account{"a@b", "%"}, keep: []string{"a@b@%"}, kept: true},
		{account: Account{"dev_role", ""}, drop: []string{"DROP ROLE 'dev_role'", "DROP USER 'dev_role'@''"}},
	} {
		if got := IsSystemAccount(tc.account); got != tc.system {
			t.Errorf("%v: system %v, want %v", tc.account, got, tc.system)
		}
		kept := slices.ContainsFunc(tc.keep, func(p string) bool { return MatchAccount(p, tc.account) })
		if kept != tc.kept {
			t.Errorf("%v with keep %v: kept %v, want %v", tc.account, tc.keep, kept, tc.kept)
		}
		if tc.drop != nil && !slices.Equal(DropAccountSQL(tc.account), tc.drop) {
			t.Errorf("%v: drop with %v, want %v", tc.account, DropAccountSQL(tc.account), tc.drop)
		}
	}
}

// The API refuses what no engine's agent would take: spec.extraPrivileges' enum is every engine's
// privileges; the operator refuses the others' for a template's engine (ValidateUser).
func TestExtraPrivilegesAreTheAPIsEnum(t *testing.T) {
	crd, err := os.ReadFile("../../config/crd/bases/myaas.io_databaseinstances.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(crd), "extraPrivileges:")
	_, rest, ok2 := strings.Cut(rest, "enum:\n")
	if !ok || !ok2 {
		t.Fatal("no enum for spec.extraPrivileges in the CRD")
	}
	var enum []string
	for _, line := range strings.Split(rest, "\n") {
		item, isItem := strings.CutPrefix(strings.TrimSpace(line), "- ")
		if !isItem {
			break
		}
		enum = append(enum, item)
	}
	if !slices.Equal(enum, AllExtraPrivileges()) {
		t.Fatalf("the CRD's enum %v differs from the engines' privileges %v", enum, AllExtraPrivileges())
	}
}

func TestValidateUser(t *testing.T) {
	for _, tc := range []struct {
		engine   Engine
		username string
		privs    []string
		wantErr  string
	}{
		{engine: MariaDB{}, username: "app", privs: []string{"PROCESS", "SHOW DATABASES"}},
		{engine: MySQL{}, username: "postgres"},
		{engine: MariaDB{}, username: "root", wantErr: `username "root" is kept`},
		{engine: MariaDB{}, username: "app", privs: []string{"CREATEDB"}, wantErr: `extraPrivileges[0] "CREATEDB" is not a privilege this operator grants: valid values are SELECT`},
		{engine: PostgreSQL{}, username: "app", privs: []string{"CREATEDB", "pg_read_all_data"}},
		{engine: PostgreSQL{}, username: "root"},
		{engine: PostgreSQL{}, username: "postgres", wantErr: `username "postgres" is kept`},
		{engine: PostgreSQL{}, username: "myaas_admin", wantErr: `username "myaas_admin" is kept`},
		{engine: PostgreSQL{}, username: "myaas_owner", wantErr: `username "myaas_owner" is kept`},
		{engine: PostgreSQL{}, username: "pg_app", wantErr: "names starting with pg_"},
		{engine: PostgreSQL{}, username: "app", privs: []string{"CREATEDB", "PROCESS"}, wantErr: `extraPrivileges[1] "PROCESS" is not a privilege this operator grants on PostgreSQL: valid values are CREATEDB`},
	} {
		err := tc.engine.ValidateUser(tc.username, tc.privs)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s %q %v: error %v, want %q", tc.engine.Name(), tc.username, tc.privs, err, tc.wantErr)
		}
	}
}
