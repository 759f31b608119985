package engine

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/myaas/myaas/internal/agentapi"
)

// PostgresMaintenanceDB is the database initdb creates for administration: the agent applies
// credentials in it, and the operator's admin role logs in to it, as it owns nothing anywhere.
const PostgresMaintenanceDB = "postgres"

// What an import leaves in a PostgreSQL template so that a clone starts without work that grows
// with the dump or writes megabytes:
//   - PostgresTemplateOwner, a role without login, owns every database and object of the dump
//     (OwnershipSQL and DatabaseOwnerSQL in each database): a clone makes its application role a
//     member, one statement, instead of changing the owner of every object.
//   - PostgresSpareDatabase, an empty database: a clone whose instance names a database the dump
//     has not renames it, where CREATE DATABASE would copy template1 and wait for the disk.
//
// A clone of a template without them does both itself, slower.
const (
	PostgresTemplateOwner = "myaas_owner"
	PostgresSpareDatabase = "myaas_spare"
)

// TemplateOwnerSQL makes PostgresTemplateOwner; idempotent.
func (PostgreSQL) TemplateOwnerSQL() string {
	return `DO $myaas$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ` + pgLiteral(PostgresTemplateOwner) + `) THEN
    CREATE ROLE ` + pgIdent(PostgresTemplateOwner) + ` NOLOGIN;
  END IF;
END
$myaas$`
}

// SpareDatabaseSQL makes PostgresSpareDatabase, owned by postgres until a clone claims it.
func (PostgreSQL) SpareDatabaseSQL() string {
	return "CREATE DATABASE " + pgIdent(PostgresSpareDatabase) + " TEMPLATE template0"
}

// PostgresServing is what a clone's server is started with besides its datadir.
type PostgresServing struct {
	Port int
	// RunDir is the pod's own directory: the socket, the hba file and nothing of the clone.
	RunDir  string
	HBAFile string
	// MemoryLimit of the container in bytes; 0 when unknown.
	MemoryLimit int64
	// TLS, unless nil, are the certificate Secret's files.
	TLS *TLSFiles
}

// ServingSettings are `postgres -c` settings for a clone. Command-line settings win over the
// clone's postgresql.conf, so whatever the template left there, a clone is durable: the import
// ran with fsync and full_page_writes off, and a clone that inherited them could be corrupted
// by a node crash.
func (PostgreSQL) ServingSettings(s PostgresServing) []string {
	sharedBuffers, cache, maintenance := postgresMemory(s.MemoryLimit)
	settings := []string{
		"listen_addresses=*",
		"port=" + strconv.Itoa(s.Port),
		"unix_socket_directories=" + s.RunDir,
		// The hba file is the pod's, not the clone's: every clone shares the template's copy,
		// and this one names the instance's own roles.
		"hba_file=" + s.HBAFile,
		"password_encryption=scram-sha-256",
		"fsync=on",
		"full_page_writes=on",
		"synchronous_commit=on",
		"autovacuum=on",
		"logging_collector=off",
		"log_destination=stderr",
		"shared_buffers=" + kib(sharedBuffers),
		"effective_cache_size=" + kib(cache),
		"maintenance_work_mem=" + kib(maintenance),
	}
	if t := s.TLS; t != nil {
		// The kubelet mounts the key root-owned with mode 0440 (group: the pod's fsGroup), which
		// the server accepts for a key owned by root (no group write, nothing for others).
		settings = append(settings, "ssl=on", "ssl_cert_file="+t.Cert, "ssl_key_file="+t.Key, "ssl_ca_file="+t.CA)
	}
	return settings
}

// postgresMemory sizes the server from the container's limit as PostgreSQL's documentation
// advises: a quarter for shared_buffers, three quarters expected in caches (the kernel's page
// cache counts), and a sixteenth for index builds and VACUUM. 128 MiB of shared_buffers, the
// server's default, when the limit is unknown or is the node's memory (not ours to take).
func postgresMemory(limit int64) (sharedBuffers, cache, maintenance int64) {
	if limit <= 0 || limit > 64<<30 {
		return 128 << 20, 512 << 20, 64 << 20
	}
	return max(limit/4, 16<<20), max(limit*3/4, 64<<20), min(max(limit/16, 16<<20), 1<<30)
}

func kib(bytes int64) string { return strconv.FormatInt(bytes>>10, 10) + "kB" }

// PostgresHBA is who may log in to a clone.
type PostgresHBA struct {
	// AppUser and AdminUser are the only roles that log in over TCP, with a password.
	AppUser, AdminUser string
	// RequireTLS lets them in over TLS only.
	RequireTLS bool
	// Closed lets in nobody but the superuser on the socket: the file a clone starts with, until
	// its roles have the Secret's passwords.
	Closed bool
}

// HBA is the content of the clone's pg_hba.conf. The first line that matches decides, with no
// fall-through, so each role is let in where it is named and everything else meets a reject:
// the roles the dump brought, postgres over TCP, any role without the Secret's password.
func (PostgreSQL) HBA(h PostgresHBA) string {
	lines := []string{
		"# Written by myaas at every start. The first matching line decides.",
		// The socket is in the pod's own run directory, which no client reaches: the agent
		// manages roles through it.
		"local all " + PostgresSuperuser + " trust",
	}
	if !h.Closed {
		host := "host"
		if h.RequireTLS {
			host = "hostssl"
		}
		app, admin := hbaName(h.AppUser), hbaName(h.AdminUser)
		lines = append(lines,
			// The readiness probe logs in on the socket with the Secret's password.
			"local all "+app+" scram-sha-256",
			host+" all "+app+" all scram-sha-256",
			host+" "+PostgresMaintenanceDB+" "+admin+" all scram-sha-256",
		)
	}
	lines = append(lines, "local all all reject", "host all all all reject")
	return strings.Join(lines, "\n") + "\n"
}

// hbaName quotes a role name so that pg_hba.conf takes it literally, never as a keyword
// (all, sameuser) or a group (+name).
func hbaName(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// PostgresExtraPrivileges are what spec.extraPrivileges may give the application role on
// PostgreSQL: role attributes, and predefined roles it is made a member of. CREATEROLE and
// SUPERUSER are not among them: a CREATEROLE role of PostgreSQL 15 and earlier can grant itself
// pg_execute_server_program and run programs in the pod, which holds the admin Secret.
var PostgresExtraPrivileges = []string{
	"CREATEDB", "REPLICATION", "BYPASSRLS",
	"pg_monitor", "pg_read_all_data", "pg_write_all_data", "pg_read_all_settings", "pg_read_all_stats", "pg_signal_backend",
}

var postgresRoleAttributes = []string{"CREATEDB", "REPLICATION", "BYPASSRLS"}

// PostgresAdminRole is all the operator's admin role is a member of: the idle check needs every
// session's client address, which pg_stat_activity shows to it. pg_monitor would add reading
// every setting (file paths among them) and functions that take locks, which it does not need.
const PostgresAdminRole = "pg_read_all_stats"

// ValidateUser refuses the roles the server and the operator keep (postgres, the admin role, the
// template's owner), names PostgreSQL reserves (pg_*), and privileges other than
// PostgresExtraPrivileges: MySQL's names mean nothing to PostgreSQL.
func (PostgreSQL) ValidateUser(username string, extraPrivileges []string) error {
	if slices.Contains([]string{PostgresSuperuser, agentapi.AdminUsername, PostgresTemplateOwner}, username) {
		return fmt.Errorf("username %q is kept for the server and the operator on PostgreSQL", username)
	}
	if strings.HasPrefix(username, "pg_") {
		return fmt.Errorf("username %q: PostgreSQL keeps names starting with pg_ for its own roles", username)
	}
	return validatePrivileges(extraPrivileges, PostgresExtraPrivileges, "PostgreSQL")
}

// SCRAMVerifier is the form PostgreSQL stores a scram-sha-256 password in (RFC 5802, RFC 7677),
// which ALTER ROLE … PASSWORD takes as it is: the password itself never reaches the server, so
// no statement log or error message can show it. The server would first normalise a password
// with SASLprep, which leaves ASCII unchanged; ok is false for any other password, which the
// server must hash itself.
func SCRAMVerifier(password string, salt []byte, iterations int) (verifier string, ok bool) {
	for i := 0; i < len(password); i++ {
		if password[i] >= 0x80 {
			return "", false
		}
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", false
	}
	mac := func(msg string) []byte {
		h := hmac.New(sha256.New, salted)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	storedKey := sha256.Sum256(mac("Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(mac("Server Key"))), true
}

// scramIterations is PostgreSQL's default (scram_iterations).
const scramIterations = 4096

// PostgresRoles is what the agent sets on a clone's roles at every start and whenever the
// Secrets change.
type PostgresRoles struct {
	Credentials
	// Extra are spec.extraPrivileges, names from PostgresExtraPrivileges.
	Extra []string
	// Salt returns a fresh random salt for each password.
	Salt func() []byte
}

// RoleSQL gives the application role and the operator's admin role the Secrets' passwords and
// exactly their privileges, and every other role no login: the roles the dump brought and
// postgres itself, which logs in only through the pod's socket. It is idempotent and runs as
// postgres in the maintenance database; a role the clone already has is altered, not made anew,
// so what it owns stays its.
func (PostgreSQL) RoleSQL(r PostgresRoles) []string {
	var attrs, memberships []string
	for _, p := range r.Extra {
		if slices.Contains(postgresRoleAttributes, p) {
			attrs = append(attrs, p)
		} else if !slices.Contains(memberships, p) {
			memberships = append(memberships, p)
		}
	}
	// The template's owner when the import left one: kept by the revocation, granted below.
	memberships = append(memberships, PostgresTemplateOwner)
	stmts := append(loginRoleSQL(r.Username, r.Password, attrs, memberships, r.Salt),
		loginRoleSQL(r.AdminUsername, r.AdminPassword, nil, []string{PostgresAdminRole}, r.Salt)...)
	keep := []string{PostgresSuperuser, r.Username, r.AdminUsername}
	quoted := make([]string, len(keep))
	for i, k := range keep {
		quoted[i] = pgLiteral(k)
	}
	return append(stmts, `DO $myaas$
DECLARE r name;
BEGIN
  FOR r IN SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname NOT IN (`+strings.Join(quoted, ", ")+`) LOOP
    EXECUTE format('ALTER ROLE %I NOLOGIN PASSWORD NULL', r);
  END LOOP;
END
$myaas$`,
		// Only the socket lets postgres in; a password the dump's globals gave it must not work
		// should a later pg_hba let TCP in.
		"ALTER ROLE "+pgIdent(PostgresSuperuser)+" PASSWORD NULL",
	)
}

// pgPassword is password as a literal for ALTER ROLE … PASSWORD: its SCRAM verifier, so that the
// password itself never reaches the server (the password as it is, should it not encode).
func pgPassword(password string, salt []byte) string {
	if v, ok := SCRAMVerifier(password, salt, scramIterations); ok {
		return pgLiteral(v)
	}
	return pgLiteral(password)
}

// loginRoleSQL makes a role that logs in with password and holds exactly attrs and the
// membership of roles: a role of that name the dump brought loses whatever else it had.
func loginRoleSQL(role, password string, attrs, roles []string, salt func() []byte) []string {
	id := pgIdent(role)
	secret := pgPassword(password, salt())
	options := []string{"LOGIN", "NOSUPERUSER", "INHERIT", "NOCREATEROLE", "CONNECTION LIMIT -1", "VALID UNTIL 'infinity'"}
	for _, a := range postgresRoleAttributes {
		if slices.Contains(attrs, a) {
			options = append(options, a)
		} else {
			options = append(options, "NO"+a)
		}
	}
	quoted := make([]string, len(roles))
	for i, m := range roles {
		quoted[i] = pgLiteral(m)
	}
	keep := "ARRAY[" + strings.Join(quoted, ", ") + "]::name[]"
	stmts := []string{
		`DO $myaas$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ` + pgLiteral(role) + `) THEN
    CREATE ROLE ` + id + `;
  END IF;
END
$myaas$`,
		"ALTER ROLE " + id + " WITH " + strings.Join(options, " ") + " PASSWORD " + secret,
		`DO $myaas$
DECLARE g name;
BEGIN
  FOR g IN SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
      WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = ` + pgLiteral(role) + `)
      AND r.rolname <> ALL (` + keep + `) LOOP
    EXECUTE format('REVOKE %I FROM %I', g, ` + pgLiteral(role) + `);
  END LOOP;
END
$myaas$`,
	}
	for _, m := range roles {
		if m == PostgresTemplateOwner {
			stmts = append(stmts, `DO $myaas$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = `+pgLiteral(m)+`) THEN
    GRANT `+pgIdent(m)+` TO `+id+`;
  END IF;
END
$myaas$`)
			continue
		}
		stmts = append(stmts, "GRANT "+pgIdent(m)+" TO "+id)
	}
	return stmts
}

// DatabaseStateSQL takes the instance's database as $1 and tells whether it exists, whether
// the template has a spare database and whether it has PostgresTemplateOwner. CREATE DATABASE
// cannot run in a transaction, hence in no DO block: the agent asks first, then creates.
const DatabaseStateSQL = `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1),
  EXISTS (SELECT FROM pg_database WHERE datname = '` + PostgresSpareDatabase + `'),
  EXISTS (SELECT FROM pg_roles WHERE rolname = '` + PostgresTemplateOwner + `')`

// ClaimSpareDatabaseSQL gives the template's spare database the instance's name: no copy, no
// wait for the disk. Nobody is connected to it, as RENAME requires.
func (PostgreSQL) ClaimSpareDatabaseSQL(database string) string {
	return "ALTER DATABASE " + pgIdent(PostgresSpareDatabase) + " RENAME TO " + pgIdent(database)
}

// CreateDatabaseSQL creates the instance's database when the template has none of that name.
func (PostgreSQL) CreateDatabaseSQL(database, owner string) string {
	return "CREATE DATABASE " + pgIdent(database) + " OWNER " + pgIdent(owner)
}

// AppDatabasesSQL lists the databases the application role gets: every one but the templates,
// the maintenance database and an unclaimed spare.
const AppDatabasesSQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datname NOT IN ('" +
	PostgresMaintenanceDB + "', '" + PostgresSpareDatabase + "') ORDER BY datname"

// DatabaseOwnerSQL makes a role own a database: it may then create schemas in it, and owns
// the public schema of PostgreSQL 15 and later (owned by pg_database_owner). The application
// role owns its own database, and those of the dump unless PostgresTemplateOwner, of which it is
// a member, does.
func (PostgreSQL) DatabaseOwnerSQL(database, owner string) string {
	return "ALTER DATABASE " + pgIdent(database) + " OWNER TO " + pgIdent(owner)
}

// OwnershipSQL, run in one database, gives owner ownership of everything the dump put in its
// schemas: PostgresTemplateOwner at import, or the application role on a clone of a template
// without it. Grants would not do: ALTER TABLE, DROP, CREATE INDEX, TRUNCATE without grants and
// migrations in general need the owner, and a developer's clone is theirs to change. Membership
// in the roles that own the objects as the dump left them would not do either: postgres owns the
// system catalogs, and a dump's role may be a superuser a member could SET ROLE to; the template
// owner is made for this and holds no attribute. Objects of extensions stay their owner's, as do
// sequences owned by a column (they follow their table). Run again, it pays only the queries.
func (PostgreSQL) OwnershipSQL(owner string) string {
	return `DO $myaas$
DECLARE
  target oid := (SELECT oid FROM pg_roles WHERE rolname = ` + pgLiteral(owner) + `);
  stmt text;
BEGIN
  FOR stmt IN
    WITH user_ns AS (
      SELECT oid, nspname, nspowner FROM pg_namespace
      WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_toast%'
        AND nspname NOT LIKE 'pg\_temp\_%'
    ), ext AS (
      SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
    )
    SELECT format('ALTER SCHEMA %I OWNER TO %I', n.nspname, ` + pgLiteral(owner) + `) FROM user_ns n
      WHERE n.nspowner <> target AND n.nspowner::regrole::text <> 'pg_database_owner'
        AND NOT EXISTS (SELECT FROM ext WHERE classid = 'pg_namespace'::regclass AND objid = n.oid)
    UNION ALL
    SELECT format('ALTER %s %s OWNER TO %I',
        CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
          WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid::regclass, ` + pgLiteral(owner) + `)
      FROM pg_class c JOIN user_ns n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner <> target
        AND NOT EXISTS (SELECT FROM ext WHERE classid = 'pg_class'::regclass AND objid = c.oid)
        AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND c.relkind = 'S')
    UNION ALL
    SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, ` + pgLiteral(owner) + `)
      FROM pg_proc p JOIN user_ns n ON n.oid = p.pronamespace
      WHERE p.proowner <> target
        AND NOT EXISTS (SELECT FROM ext WHERE classid = 'pg_proc'::regclass AND objid = p.oid)
    UNION ALL
    SELECT format('ALTER %s %s OWNER TO %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
        t.oid::regtype, ` + pgLiteral(owner) + `)
      FROM pg_type t JOIN user_ns n ON n.oid = t.typnamespace
      WHERE t.typtype IN ('e', 'd', 'r') AND t.typowner <> target
        AND NOT EXISTS (SELECT FROM ext WHERE classid = 'pg_type'::regclass AND objid = t.oid)
    UNION ALL
    SELECT format('ALTER TYPE %s OWNER TO %I', t.oid::regtype, ` + pgLiteral(owner) + `)
      FROM pg_type t JOIN user_ns n ON n.oid = t.typnamespace JOIN pg_class c ON c.oid = t.typrelid
      WHERE t.typtype = 'c' AND c.relkind = 'c' AND t.typowner <> target
        AND NOT EXISTS (SELECT FROM ext WHERE classid = 'pg_type'::regclass AND objid = t.oid)
  LOOP
    EXECUTE stmt;
  END LOOP;
END
$myaas$`
}

// pgIdent quotes an identifier.
func pgIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// pgLiteral writes a string literal; standard_conforming_strings, on since PostgreSQL 9.1, leaves
// backslashes as they are.
func pgLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// PrepareTemplate leaves in a freshly imported datadir what lets its clones start fast (see
// PostgresTemplateOwner and PostgresSpareDatabase). The import runs it as postgres on the
// server's socket, after the load and the post-import SQL and before the clean shutdown.
func (p PostgreSQL) PrepareTemplate(ctx context.Context, socket string) error {
	conn, err := p.SuperuserSession(ctx, socket, PostgresMaintenanceDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, p.TemplateOwnerSQL()); err != nil {
		return fmt.Errorf("create role %s: %w", PostgresTemplateOwner, err)
	}
	if err := p.GiveDumpTo(ctx, socket, PostgresTemplateOwner); err != nil {
		return err
	}
	var spare bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", PostgresSpareDatabase).Scan(&spare); err != nil {
		return err
	}
	if !spare {
		if _, err := conn.Exec(ctx, p.SpareDatabaseSQL()); err != nil {
			return fmt.Errorf("create the spare database: %w", err)
		}
	}
	return nil
}

// GiveDumpTo makes owner own the dump's databases and everything in their schemas and in the
// maintenance database's (OwnershipSQL), logging in as postgres on the server's socket.
func (p PostgreSQL) GiveDumpTo(ctx context.Context, socket, owner string) error {
	conn, err := p.SuperuserSession(ctx, socket, PostgresMaintenanceDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, AppDatabasesSQL)
	if err != nil {
		return fmt.Errorf("list the databases: %w", err)
	}
	databases, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list the databases: %w", err)
	}
	for _, db := range databases {
		if _, err := conn.Exec(ctx, p.DatabaseOwnerSQL(db, owner)); err != nil {
			return fmt.Errorf("give database %s to %s: %w", db, owner, err)
		}
	}
	for _, db := range append([]string{PostgresMaintenanceDB}, databases...) {
		dbConn, err := p.SuperuserSession(ctx, socket, db)
		if err != nil {
			return err
		}
		_, err = dbConn.Exec(ctx, p.OwnershipSQL(owner))
		dbConn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("give the objects of database %s to %s: %w", db, owner, err)
		}
	}
	return nil
}

// SuperuserSession logs in as postgres on the server's socket, which the pod's hba file trusts:
// the agent needs no password of its own.
func (p PostgreSQL) SuperuserSession(ctx context.Context, socket, database string) (*pgx.Conn, error) {
	return p.connect(ctx, Login{Addr: socket, Username: PostgresSuperuser, Database: database, Timeout: time.Hour})
}
