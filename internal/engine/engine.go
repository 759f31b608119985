// Package engine holds what differs between database engines, so that the controllers and the agent
// stay engine-agnostic: adding an engine (PostgreSQL, say) means adding one adapter here.
package engine

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
)

// Engine is one database server family: what the controllers, the builders and the agent ask
// of every engine alike.
type Engine interface {
	// Name is the value users write in spec.engine.type.
	Name() string
	// DefaultVersion is used when the template names no version.
	DefaultVersion() string
	// DefaultImage is the official image for a version, used when the template names no image.
	DefaultImage(version string) string
	// Port is the TCP port the server listens on, and PortName the name of that port in the
	// instance's pod and Service.
	Port() int32
	PortName() string
	// Socket is the server's socket in the pod's run directory: the pod's own logins (its probe,
	// its agent) use it, so that the server tells them from clients, which come over TCP.
	Socket(runDir string) string

	// BindingType is the Service Binding type of the instance's credentials Secret, and
	// ConnectionDetails the Secret's engine-specific keys (uri, jdbc-uri, dsn, type) for a client
	// at host:port. RequireVerifiedTLS rewrites those keys to ask for TLS with the server's name
	// verified.
	BindingType() string
	ConnectionDetails(c Connection) map[string]string
	RequireVerifiedTLS(details map[string]string) error

	// Login logs in as a client would and runs a query: the readiness check.
	Login(ctx context.Context, l Login) error
	// ClientSessions counts the sessions other than the caller's own, the server's own processes
	// and the pod's own (its probe and agent, which come through the local socket): the idle check.
	ClientSessions(ctx context.Context, l Login) (int, error)
	// ChangeOwnPassword logs in as l and gives that user the password, which needs no privilege:
	// a claimed warm pool member's server takes its instance's password at once this way.
	ChangeOwnPassword(ctx context.Context, l Login, password string) error

	// ValidateUser refuses an application user the engine cannot give an instance: a name it
	// keeps for itself, or an extra privilege it does not have (spec.username, spec.extraPrivileges).
	ValidateUser(username string, extraPrivileges []string) error
}

// MySQLFamily is what the agent asks of MariaDB and MySQL, which share a protocol, a client and
// the shape of a datadir.
type MySQLFamily interface {
	Engine
	// ServerBinaries and ClientBinaries are the names to look for, newest first.
	ServerBinaries() []string
	ClientBinaries() []string
	// BackupBinaries and StreamBinaries are the physical backup tool (it prepares a backup) and
	// its stream extractor, newest names first.
	BackupBinaries() []string
	StreamBinaries() []string
	// InitCommand initialises an empty datadir.
	InitCommand(datadir string, runAsRoot bool) (name string, args []string, err error)
	// BulkLoadOptions are server options for the import: fast, not durable until the clean shutdown.
	// logBytes bounds the redo log, which must fit in the template volume beside the data.
	BulkLoadOptions(bufferPool, logBytes int64) []string
	// ServingOptions are server options for an instance. scratchDir, relative to the datadir, is
	// the pod's own directory for what the server recreates at every start; filesDir, absolute,
	// the only one the server reads and writes files in for clients (secure_file_priv).
	ServingOptions(bufferPool int64, serverID uint32, scratchDir, filesDir string) []string
	// TLSOptions make an instance's server speak TLS with the certificate, key and CA in those
	// files; requireSecure refuses TCP clients that do not use it.
	TLSOptions(t TLSFiles, requireSecure bool) []string
	// ReloadTLSSQL has the running server read its certificate files again.
	ReloadTLSSQL() string
	// BeforeLoadSQL and AfterLoadSQL run around the load (MySQL disables its redo log).
	BeforeLoadSQL() []string
	AfterLoadSQL() []string
	// CredentialSQL sets the instance's users; it runs at every start and must be idempotent.
	CredentialSQL(c Credentials, g Grants) []string
	// PrepareClone gives a cloned datadir its own identity before the server starts, and returns
	// the server options that keep the clone as it is (a server that rewrites files at start
	// makes every clone pay for private copies of them).
	PrepareClone(datadir string) ([]string, error)
}

// Credentials of one instance: the application user's, from the user's Secret, and root's and
// the operator's admin account's, from the operator's own Secret.
type Credentials struct {
	Username      string
	Password      string
	Database      string
	RootPassword  string
	AdminUsername string
	AdminPassword string
}

// TLSFiles are the paths of a server's certificate, its key and the CA that issued it.
type TLSFiles struct {
	Cert, Key, CA string
}

// Lookup returns the engine called name.
func Lookup(name string) (Engine, error) {
	switch name {
	case "mariadb":
		return MariaDB{}, nil
	case "mysql":
		return MySQL{}, nil
	case "postgresql":
		return PostgreSQL{}, nil
	}
	return nil, fmt.Errorf("unknown engine %q: valid engines are mariadb, mysql, postgresql", name)
}

// FindBinary returns the first of names found on PATH or in the sbin directories server packages use.
func FindBinary(names []string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"} {
			p := filepath.Join(dir, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("none of %v found in the image", names)
}

// LookupMySQLFamily returns the engine called name when it is MariaDB or MySQL.
func LookupMySQLFamily(name string) (MySQLFamily, error) {
	eng, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	m, ok := eng.(MySQLFamily)
	if !ok {
		return nil, fmt.Errorf("engine %q is not MariaDB or MySQL", name)
	}
	return m, nil
}

// commonOptions are shared by both engines' import and serving configurations. Native AIO
// misbehaves on copy-on-write file systems, which is where every datadir here lives.
func commonOptions(bufferPool int64) []string {
	return []string{
		"--skip-log-bin",
		"--innodb-use-native-aio=0",
		fmt.Sprintf("--innodb-buffer-pool-size=%d", bufferPool),
		"--character-set-server=utf8mb4",
		"--max-allowed-packet=1073741824",
		"--skip-name-resolve",
	}
}

// quote escapes a value for a single-quoted SQL string literal.
func quote(s string) string {
	out := make([]byte, 0, len(s)+2)
	out = append(out, '\'')
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\'', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// ident quotes an identifier.
func ident(s string) string {
	out := []byte{'`'}
	for i := 0; i < len(s); i++ {
		if s[i] == '`' {
			out = append(out, '`')
		}
		out = append(out, s[i])
	}
	return string(append(out, '`'))
}

// tlsOptions are the same on both engines. The local socket, which the pod's own probe and agent
// use, counts as secure transport for both, so requiring TLS never locks them out.
func tlsOptions(t TLSFiles, requireSecure bool) []string {
	opts := []string{"--ssl-cert=" + t.Cert, "--ssl-key=" + t.Key, "--ssl-ca=" + t.CA}
	if requireSecure {
		opts = append(opts, "--require-secure-transport=ON")
	}
	return opts
}

// temporaryTablespace keeps InnoDB's temporary tablespace, written in full at every start, out of
// the cloned volume: in it, each clone would own a private 12 MB copy.
func temporaryTablespace(scratchDir string) string {
	return "--innodb-temp-data-file-path=" + path.Join(scratchDir, "ibtmp1") + ":12M:autoextend"
}
