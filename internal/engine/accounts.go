package engine

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/myaas/myaas/internal/agentapi"
)

// DeveloperPrivileges are what the application user holds on its databases: everything a
// developer does to a schema of their own, and nothing that reaches the server, its files or
// other accounts (FILE, SHUTDOWN, SUPER, PROCESS, RELOAD, GRANT OPTION, CREATE USER stay out).
var DeveloperPrivileges = []string{
	"SELECT", "INSERT", "UPDATE", "DELETE",
	"CREATE", "DROP", "ALTER", "INDEX", "REFERENCES",
	"CREATE TEMPORARY TABLES", "LOCK TABLES",
	"CREATE VIEW", "SHOW VIEW",
	"CREATE ROUTINE", "ALTER ROUTINE", "EXECUTE",
	"EVENT", "TRIGGER",
}

// ExtraPrivileges are the privilege names an instance's spec.extraPrivileges may grant on *.*, the
// static privileges both engines know.
var ExtraPrivileges = []string{
	"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "RELOAD", "SHUTDOWN", "PROCESS",
	"FILE", "REFERENCES", "INDEX", "ALTER", "SHOW DATABASES", "SUPER", "CREATE TEMPORARY TABLES",
	"LOCK TABLES", "EXECUTE", "REPLICATION SLAVE", "REPLICATION CLIENT", "CREATE VIEW", "SHOW VIEW",
	"CREATE ROUTINE", "ALTER ROUTINE", "CREATE USER", "EVENT", "TRIGGER", "CREATE TABLESPACE",
	"GRANT OPTION",
}

// AdminPrivileges are the operator's own account's: PROCESS shows every session, which is how
// the idle check tells whether a client is connected.
var AdminPrivileges = []string{"PROCESS"}

// Grants widen the application user beyond its own database.
type Grants struct {
	// Databases besides Credentials.Database that the user gets DeveloperPrivileges on: the ones
	// the template's dump created.
	Databases []string
	// Extra privileges on *.*, names from ExtraPrivileges.
	Extra []string
}

// ValidatePrivileges names the first entry that is not a known privilege of MariaDB and MySQL.
func ValidatePrivileges(privs []string) error {
	return validatePrivileges(privs, ExtraPrivileges, "")
}

// validatePrivileges names the first entry of privs not in valid; engine, unless empty, says
// whose privileges valid are.
func validatePrivileges(privs, valid []string, engine string) error {
	on := ""
	if engine != "" {
		on = " on " + engine
	}
	for i, p := range privs {
		if !slices.Contains(valid, p) {
			return fmt.Errorf("extraPrivileges[%d] %q is not a privilege this operator grants%s: valid values are %s", i, p, on, strings.Join(valid, ", "))
		}
	}
	return nil
}

// AllExtraPrivileges are the values spec.extraPrivileges takes in the API: every engine's.
func AllExtraPrivileges() []string {
	return append(slices.Clone(ExtraPrivileges), PostgresExtraPrivileges...)
}

// reservedUsers are the names the MySQL family keeps: root, and the operator's admin account.
var reservedUsers = []string{"root", agentapi.AdminUsername}

func (mysqlFamily) ValidateUser(username string, extraPrivileges []string) error {
	if slices.Contains(reservedUsers, username) {
		return fmt.Errorf("username %q is kept for the server and the operator", username)
	}
	return ValidatePrivileges(extraPrivileges)
}

// remoteRootAccounts are the root logins over TCP that older initialisations created and an
// older version of this operator gave a password: root is for the pod's own socket only.
var remoteRootAccounts = []string{"'root'@'%'", "'root'@'127.0.0.1'", "'root'@'::1'"}

// credentialSQL is the same on both engines: the application user with DeveloperPrivileges on its
// database and on the dump's databases, the operator's admin account with AdminPrivileges, and
// root reachable only through the pod's socket. Privileges are revoked and granted anew at every
// start, so an instance cloned with an older, wider grant loses it.
func credentialSQL(c Credentials, g Grants) []string {
	user := quote(c.Username) + "@'%'"
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS " + ident(c.Database),
		"DROP USER IF EXISTS " + strings.Join(remoteRootAccounts, ", "),
		"CREATE USER IF NOT EXISTS " + user + " IDENTIFIED BY " + quote(c.Password),
		"ALTER USER " + user + " IDENTIFIED BY " + quote(c.Password),
		"REVOKE ALL PRIVILEGES, GRANT OPTION FROM " + user,
	}
	devPrivs := strings.Join(DeveloperPrivileges, ", ")
	for _, db := range appDatabases(c.Database, g.Databases) {
		stmts = append(stmts, "GRANT "+devPrivs+" ON "+grantIdent(db)+".* TO "+user)
	}
	if len(g.Extra) > 0 {
		stmts = append(stmts, globalGrant(g.Extra, user))
	}
	if c.AdminUsername != "" {
		admin := quote(c.AdminUsername) + "@'%'"
		stmts = append(stmts,
			"CREATE USER IF NOT EXISTS "+admin+" IDENTIFIED BY "+quote(c.AdminPassword),
			"ALTER USER "+admin+" IDENTIFIED BY "+quote(c.AdminPassword),
			"REVOKE ALL PRIVILEGES, GRANT OPTION FROM "+admin,
			"GRANT "+strings.Join(AdminPrivileges, ", ")+" ON *.* TO "+admin,
		)
	}
	return append(stmts,
		"ALTER USER 'root'@'localhost' IDENTIFIED BY "+quote(c.RootPassword),
		"FLUSH PRIVILEGES",
	)
}

// appDatabases is the user's own database first, then the others once each, in order.
func appDatabases(own string, others []string) []string {
	dbs := []string{own}
	for _, db := range others {
		if !slices.Contains(dbs, db) {
			dbs = append(dbs, db)
		}
	}
	return dbs
}

// globalGrant grants privileges on *.*; GRANT OPTION is written as the clause both engines take.
func globalGrant(privs []string, user string) string {
	var names []string
	withGrant := ""
	for _, p := range privs {
		if p == "GRANT OPTION" {
			withGrant = " WITH GRANT OPTION"
			continue
		}
		if !slices.Contains(names, p) {
			names = append(names, p)
		}
	}
	if len(names) == 0 {
		names = []string{"USAGE"}
	}
	return "GRANT " + strings.Join(names, ", ") + " ON *.* TO " + user + withGrant
}

// grantIdent quotes a database name for GRANT … ON db.*, where _ and % are wildcards: escaped,
// the grant is for that database alone.
func grantIdent(db string) string {
	return ident(strings.NewReplacer(`\`, `\\`, "_", `\_`, "%", `\%`).Replace(db))
}

// secureFilePriv confines LOAD DATA INFILE, SELECT … INTO OUTFILE and LOAD_FILE to the pod's own
// directory, outside the datadir, for accounts that are given FILE.
func secureFilePriv(filesDir string) string {
	return "--secure-file-priv=" + path.Clean(filesDir)
}

// Account is one row of mysql.user. MariaDB's roles are the rows whose Host is empty.
type Account struct {
	User, Host string
}

func (a Account) String() string { return quote(a.User) + "@" + quote(a.Host) }

// systemAccounts are the accounts the engines create for themselves, never dropped: both
// engines' root@localhost, MariaDB's mariadb.sys, its unix-socket mysql account and PUBLIC role,
// MySQL's mysql.sys, mysql.session and mysql.infoschema.
var systemAccounts = []Account{
	{User: "root", Host: "localhost"},
	{User: "mariadb.sys", Host: "localhost"},
	{User: "mysql", Host: "localhost"},
	{User: "PUBLIC", Host: ""},
	{User: "mysql.sys", Host: "localhost"},
	{User: "mysql.session", Host: "localhost"},
	{User: "mysql.infoschema", Host: "localhost"},
}

// IsSystemAccount tells the engines' own accounts from those a dump brought.
func IsSystemAccount(a Account) bool {
	for _, s := range systemAccounts {
		if s.User == a.User && s.Host == a.Host {
			return true
		}
	}
	return false
}

// MatchAccount tells whether an account is named by a pattern: "user" (on any host) or
// "user@host", host as the account has it (a literal "%" matches the account 'user'@'%' only).
func MatchAccount(pattern string, a Account) bool {
	user, host, hasHost := pattern, "", false
	if i := strings.LastIndex(pattern, "@"); i >= 0 {
		user, host, hasHost = pattern[:i], pattern[i+1:], true
	}
	return user == a.User && (!hasHost || host == a.Host)
}

// DropAccountSQL are the statements that drop an account, to be tried in order until one
// succeeds: a row with an empty host is a role on MariaDB and an account on MySQL.
func DropAccountSQL(a Account) []string {
	if a.Host == "" {
		return []string{"DROP ROLE " + quote(a.User), "DROP USER " + a.String()}
	}
	return []string{"DROP USER " + a.String()}
}
