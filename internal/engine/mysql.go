package engine

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// MySQL is MySQL 8.0 and 8.4.
type MySQL struct{ mysqlFamily }

func (MySQL) Name() string                       { return "mysql" }
func (MySQL) DefaultVersion() string             { return "8.4" }
func (MySQL) DefaultImage(version string) string { return "mysql:" + version }
func (MySQL) Port() int32                        { return 3306 }
func (MySQL) ServerBinaries() []string           { return []string{"mysqld"} }
func (MySQL) ClientBinaries() []string           { return []string{"mysql"} }
func (MySQL) BackupBinaries() []string           { return []string{"xtrabackup"} }
func (MySQL) StreamBinaries() []string           { return []string{"xbstream"} }

// The JDBC scheme picks MySQL's Connector/J, which spells a verified TLS connection its own way.
func (MySQL) ConnectionDetails(c Connection) map[string]string {
	return mysqlConnectionDetails(c, "mysql")
}

func (MySQL) RequireVerifiedTLS(d map[string]string) error {
	return mysqlRequireVerifiedTLS(d, url.Values{"sslMode": {"VERIFY_IDENTITY"}})
}

func (MySQL) InitCommand(datadir string, runAsRoot bool) (string, []string, error) {
	bin, err := FindBinary([]string{"mysqld"})
	if err != nil {
		return "", nil, err
	}
	args := []string{"--no-defaults", "--initialize-insecure", "--datadir=" + datadir}
	if runAsRoot {
		args = append(args, "--user=root")
	}
	return bin, args, nil
}

func (MySQL) BulkLoadOptions(bufferPool, logBytes int64) []string {
	return append(commonOptions(bufferPool),
		"--skip-networking",
		"--innodb-flush-log-at-trx-commit=0",
		"--innodb-doublewrite=OFF",
		fmt.Sprintf("--innodb-redo-log-capacity=%d", logBytes),
		"--innodb-autoinc-lock-mode=2",
		"--sync-binlog=0",
	)
}

func (MySQL) ServingOptions(bufferPool int64, serverID uint32, scratchDir, filesDir string) []string {
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

// BeforeLoadSQL disables the redo log (MySQL 8.0.21+); AfterLoadSQL turns it back on before the
// clean shutdown, so the snapshot is crash-safe for every clone.
func (MySQL) BeforeLoadSQL() []string { return []string{"ALTER INSTANCE DISABLE INNODB REDO_LOG"} }
func (MySQL) AfterLoadSQL() []string  { return []string{"ALTER INSTANCE ENABLE INNODB REDO_LOG"} }

// ChangeOwnPassword implements Engine: ALTER USER USER() needs no privilege.
func (m MySQL) ChangeOwnPassword(ctx context.Context, l Login, password string) error {
	return m.changeOwnPassword(ctx, l, "ALTER USER USER() IDENTIFIED BY ?", password)
}

// ReloadTLSSQL implements MySQLFamily.
func (MySQL) ReloadTLSSQL() string { return "ALTER INSTANCE RELOAD TLS" }

func (MySQL) TLSOptions(t TLSFiles, requireSecure bool) []string { return tlsOptions(t, requireSecure) }

func (MySQL) CredentialSQL(c Credentials, g Grants) []string { return credentialSQL(c, g) }

// PrepareClone removes auto.cnf so that each clone gets its own server_uuid.
func (MySQL) PrepareClone(datadir string) ([]string, error) {
	for _, f := range []string{"auto.cnf", "mysqld.pid", "mysql.sock"} {
		if err := os.Remove(filepath.Join(datadir, f)); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("prepare clone: %w", err)
		}
	}
	return nil, nil
}
