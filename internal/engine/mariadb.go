package engine

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// MariaDB is MariaDB 10.6+ and 11.x.
type MariaDB struct{ mysqlFamily }

func (MariaDB) Name() string                       { return "mariadb" }
func (MariaDB) DefaultVersion() string             { return "11.4" }
func (MariaDB) DefaultImage(version string) string { return "mariadb:" + version }
func (MariaDB) Port() int32                        { return 3306 }
func (MariaDB) ServerBinaries() []string           { return []string{"mariadbd", "mysqld"} }
func (MariaDB) ClientBinaries() []string           { return []string{"mariadb", "mysql"} }
func (MariaDB) BackupBinaries() []string           { return []string{"mariadb-backup", "mariabackup"} }
func (MariaDB) StreamBinaries() []string           { return []string{"mbstream"} }

// The JDBC scheme picks MariaDB's Connector/J, which spells a verified TLS connection its own way.
func (MariaDB) ConnectionDetails(c Connection) map[string]string {
	return mysqlConnectionDetails(c, "mariadb")
}

func (MariaDB) RequireVerifiedTLS(d map[string]string) error {
	return mysqlRequireVerifiedTLS(d, url.Values{"sslMode": {"verify-full"}})
}

// InitCommand uses mariadb-install-db; root gets no password here and a real one on every clone.
func (MariaDB) InitCommand(datadir string, runAsRoot bool) (string, []string, error) {
	bin, err := FindBinary([]string{"mariadb-install-db", "mysql_install_db"})
	if err != nil {
		return "", nil, err
	}
	args := []string{"--no-defaults", "--datadir=" + datadir, "--auth-root-authentication-method=normal", "--skip-test-db"}
	if runAsRoot {
		args = append(args, "--user=root")
	}
	return bin, args, nil
}

// BulkLoadOptions relax durability while loading: the import either finishes with a clean,
// slow shutdown (innodb_fast_shutdown=0, set before SHUTDOWN) or is thrown away.
func (MariaDB) BulkLoadOptions(bufferPool, logBytes int64) []string {
	return append(commonOptions(bufferPool),
		"--skip-networking",
		"--innodb-flush-log-at-trx-commit=0",
		"--innodb-doublewrite=0",
		fmt.Sprintf("--innodb-log-file-size=%d", logBytes),
		"--innodb-log-buffer-size=67108864",
		"--innodb-autoinc-lock-mode=2",
		"--sync-binlog=0",
		"--skip-innodb-adaptive-hash-index",
	)
}

func (MariaDB) ServingOptions(bufferPool int64, serverID uint32, scratchDir, filesDir string) []string {
	return append(commonOptions(bufferPool),
		temporaryTablespace(scratchDir),
		secureFilePriv(filesDir),
		fmt.Sprintf("--server-id=%d", serverID),
		"--innodb-flush-log-at-trx-commit=2",
		// Warming the buffer pool from the template's page list reads data no client asked for
		// yet, competing with every other clone starting on the same disk.
		"--innodb-buffer-pool-load-at-startup=OFF",
	)
}

// MariaDB has no switch for its redo log; the relaxed flushing above is the fast path.
func (MariaDB) BeforeLoadSQL() []string { return nil }
func (MariaDB) AfterLoadSQL() []string  { return nil }

// ChangeOwnPassword implements Engine: SET PASSWORD for oneself needs no privilege.
func (m MariaDB) ChangeOwnPassword(ctx context.Context, l Login, password string) error {
	return m.changeOwnPassword(ctx, l, "SET PASSWORD = PASSWORD(?)", password)
}

// ReloadTLSSQL implements MySQLFamily.
func (MariaDB) ReloadTLSSQL() string { return "FLUSH SSL" }

func (MariaDB) TLSOptions(t TLSFiles, requireSecure bool) []string {
	return tlsOptions(t, requireSecure)
}

func (MariaDB) CredentialSQL(c Credentials, g Grants) []string { return credentialSQL(c, g) }

// PrepareClone drops files that would make clones share an identity or state: the image's
// healthcheck credentials and stale pid/socket files. The redo log keeps the size the import gave
// it: with any other size MariaDB writes a new log file at start, a private copy in every clone.
func (MariaDB) PrepareClone(datadir string) ([]string, error) {
	for _, f := range []string{".my-healthcheck.cnf", "mysqld.pid", "mysql.sock"} {
		if err := os.Remove(filepath.Join(datadir, f)); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("prepare clone: %w", err)
		}
	}
	st, err := os.Stat(filepath.Join(datadir, "ib_logfile0"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prepare clone: %w", err)
	}
	return []string{fmt.Sprintf("--innodb-log-file-size=%d", st.Size())}, nil
}
