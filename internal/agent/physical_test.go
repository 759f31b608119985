package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
	"github.com/myaas/myaas/internal/mariadbtest"
	"github.com/myaas/myaas/internal/testdeps"
)

// backupTools are mariadb-backup and mbstream, or the test ends as a missing MariaDB does.
func backupTools(t *testing.T) (backup, stream string) {
	t.Helper()
	backup, err1 := exec.LookPath("mariadb-backup")
	stream, err2 := exec.LookPath("mbstream")
	if err1 != nil || err2 != nil {
		testdeps.Missing(t, testdeps.MariaDB, "mariadb-backup or mbstream not found: run hack/install-mariadb.sh")
	}
	return backup, stream
}

// productionBackup takes a real mariadb-backup xbstream of sourceServer's databases, on a server
// that looks like production: root has a password, and applications have accounts.
func productionBackup(t *testing.T) (stream []byte, checksums map[string]string, foreignAccounts int) {
	t.Helper()
	backup, _ := backupTools(t)
	src, checksums := sourceServer(t)
	src.Exec(t,
		"CREATE USER 'app'@'%' IDENTIFIED BY 'production-secret'",
		"GRANT ALL ON shop.* TO 'app'@'%'",
		"CREATE USER 'reporting'@'%' IDENTIFIED BY 'report-secret'",
		"CREATE USER 'root'@'%' IDENTIFIED BY 'remote-root'",
	)
	// Those the import must drop: the roots on other hosts mariadb-install-db made, root@% and app.
	db := src.Root(t)
	defer db.Close()
	if err := db.QueryRow(`SELECT COUNT(*) FROM mysql.user WHERE CONCAT(User, '@', Host)
		NOT IN ('root@localhost', 'mariadb.sys@localhost', 'mysql@localhost', 'PUBLIC@', 'reporting@%')`).Scan(&foreignAccounts); err != nil {
		t.Fatal(err)
	}
	src.Exec(t, "ALTER USER 'root'@'localhost' IDENTIFIED BY 'root-secret'")
	cmd := exec.Command(backup, "--no-defaults", "--backup", "--stream=xbstream", "--socket="+src.Socket,
		"--user=root", "--password=root-secret", "--target-dir="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mariadb-backup --backup: %v\n%s", err, tail(stderr.Bytes(), 2000))
	}
	if !bytes.HasPrefix(out, []byte(xbstreamMagic)) {
		t.Fatalf("mariadb-backup wrote no xbstream: %q", out[:min(len(out), 32)])
	}
	return out, checksums, foreignAccounts
}

// extracted is the backup's stream extracted into a directory, as mbstream -x leaves it.
func extracted(t *testing.T, stream []byte) string {
	t.Helper()
	_, mbstream := backupTools(t)
	dir := filepath.Join(t.TempDir(), "backup")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mbstream, "-x", "-C", dir)
	cmd.Stdin = bytes.NewReader(stream)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mbstream -x: %v\n%s", err, out)
	}
	return dir
}

func tarOf(t *testing.T, dir, prefix string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name = filepath.Join(prefix, rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A physical backup becomes a template holding the same data as its source server, whatever
// shape it arrives in, with the template's masking applied and the production accounts gone.
func TestPhysicalBackupRoundTrip(t *testing.T) {
	stream, want, foreign := productionBackup(t)
	pvc := func(name string, data []byte) func(t *testing.T) sourceConfig {
		return func(t *testing.T) sourceConfig { return sourceConfig{dir: writeSource(t, name, data), glob: name} }
	}
	served := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(gz(t, stream))
	}))
	defer served.Close()
	cases := []struct {
		name     string
		source   func(t *testing.T) sourceConfig
		prepared bool
	}{
		{"xbstream", pvc("nightly.xb", stream), false},
		{"gzip-compressed xbstream without an extension", pvc("nightly", gz(t, stream)), false},
		{"tarball of the backup's directory", pvc("backup.tar.zst", zst(t, tarOf(t, extracted(t, stream), "backup-2026-11-26"))), false},
		{"prepared directory", func(t *testing.T) sourceConfig {
			dir := extracted(t, stream)
			backup, _ := backupTools(t)
			if out, err := exec.Command(backup, "--prepare", "--target-dir="+dir).CombinedOutput(); err != nil {
				t.Fatalf("prepare: %v\n%s", err, out)
			}
			return sourceConfig{dir: filepath.Dir(dir), glob: filepath.Base(dir)}
		}, true},
		{"over HTTP, named as a backup", func(*testing.T) sourceConfig { return sourceConfig{url: served.URL + "/nightly.xb.gz"} }, false},
		{"over HTTP, unnamed, with the format given", func(*testing.T) sourceConfig {
			return sourceConfig{url: served.URL + "/latest", format: agentapi.SourceFormatMariaDBBackup}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(agentapi.EnvPostImportSQL, "UPDATE shop.customers SET name = 'masked' WHERE id = 1")
			var serverLog bytes.Buffer
			datadir, rep, err := runImportInto(t, importOptions{
				source:       tc.source(t),
				keepAccounts: multiFlag{"reporting"},
				serverLog:    &serverLog,
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Outcome != agentapi.OutcomeSucceeded || rep.Files != 1 || rep.BytesRead <= 0 || rep.DatadirBytes <= 0 {
				t.Fatalf("report %+v", rep)
			}
			// Every account but root@localhost came with the backup; reporting is kept as the
			// template asks.
			if rep.AccountsDropped != foreign {
				t.Errorf("%d accounts dropped, want %d", rep.AccountsDropped, foreign)
			}
			checkpoints, err := os.ReadFile(filepath.Join(datadir, "xtrabackup_checkpoints"))
			if err != nil || !strings.Contains(string(checkpoints), "backup_type = log-applied") {
				t.Fatalf("the datadir was not prepared: %q %v", checkpoints, err)
			}
			if tc.prepared && strings.Contains(serverLog.String(), "crash recovery") {
				t.Error("the server ran crash recovery on a prepared backup")
			}

			db := checkMaskedCopy(t, datadir, want)
			rows, err := db.Query("SELECT CONCAT(User, '@', Host) FROM mysql.user WHERE User NOT IN ('mariadb.sys', 'PUBLIC', 'mysql') ORDER BY 1")
			if err != nil {
				t.Fatal(err)
			}
			var accounts []string
			for rows.Next() {
				var a string
				_ = rows.Scan(&a)
				accounts = append(accounts, a)
			}
			if fmt.Sprint(accounts) != "[reporting@% root@localhost]" {
				t.Errorf("accounts left in the template: %v, want reporting@%% and root@localhost", accounts)
			}
			if !accountsDropped(datadir) {
				t.Error("the datadir does not record that the accounts were dropped")
			}
		})
	}
}

// Each broken backup fails with a reason and a message that says what is wrong with it.
func TestPhysicalBackupFailures(t *testing.T) {
	stream, _, _ := productionBackup(t)
	serverVersion, err := serverBinaryVersion(context.Background(), mustMySQLFamily(t))
	if err != nil {
		t.Fatal(err)
	}
	// The stream ends with its checkpoints and info files: cut right before them, every chunk
	// left is whole and mbstream succeeds.
	beforeCheckpoints := bytes.LastIndex(stream, []byte(xbstreamMagic+"\x00P\x16\x00\x00\x00xtrabackup_checkpoints"))
	if beforeCheckpoints < 0 {
		t.Fatal("no xtrabackup_checkpoints chunk in the stream")
	}
	newer := func(t *testing.T) []byte {
		dir := extracted(t, stream)
		info := filepath.Join(dir, "xtrabackup_info")
		b, err := os.ReadFile(info)
		if err != nil {
			t.Fatal(err)
		}
		b = regexp.MustCompile(`(?m)^server_version = .*$`).ReplaceAll(b, []byte("server_version = 99.1.2-MariaDB"))
		if err := os.WriteFile(info, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return tarOf(t, dir, "")
	}
	cases := []struct {
		name   string
		source func(t *testing.T) (dir, glob string)
		format string
		reason string
		want   []string
	}{
		{"truncated xbstream", func(t *testing.T) (string, string) {
			return writeSource(t, "nightly.xb", stream[:len(stream)/2]), "nightly.xb"
		}, "", agentapi.ReasonInvalidBackup, []string{"nightly.xb: mbstream -x failed after ", "truncated or corrupt"}},
		{"xbstream cut between chunks", func(t *testing.T) (string, string) {
			return writeSource(t, "nightly.xb.gz", gz(t, stream[:beforeCheckpoints])), "nightly.xb.gz"
		}, "", agentapi.ReasonInvalidBackup, []string{"nightly.xb.gz is incomplete", "xtrabackup_checkpoints"}},
		{"backup from a newer server", func(t *testing.T) (string, string) {
			return writeSource(t, "backup.tar", newer(t)), "backup.tar"
		}, "", agentapi.ReasonBackupFromNewerServer, []string{"backup.tar comes from a newer server", "99.1.2-MariaDB", "server is " + serverVersion}},
		{"a backup directory beside a dump", func(t *testing.T) (string, string) {
			dir := extracted(t, stream)
			if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "a.sql"), []byte("CREATE DATABASE x;\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return filepath.Dir(dir), "*"
		}, "", agentapi.ReasonInvalidBackup, []string{"backup is a physical backup's directory", "matches 2 files and directories"}},
		{"SQL named a backup", func(t *testing.T) (string, string) {
			return writeSource(t, "dump.sql", []byte("CREATE DATABASE x;\n")), "dump.sql"
		}, agentapi.SourceFormatMariaDBBackup, agentapi.ReasonInvalidBackup, []string{"spec.source.format is mariadb-backup but dump.sql is neither"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, glob := tc.source(t)
			datadir, _, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: glob, format: tc.format}})
			checkFailure(t, err, tc.reason, tc.want...)
			if _, err := os.Stat(filepath.Join(datadir, agentapi.AccountsDroppedFile)); err == nil {
				t.Error("a failed import went as far as dropping accounts")
			}
		})
	}

	// An image without the backup tool: the message names the image and the tool it lacks.
	t.Run("image without mariadb-backup", func(t *testing.T) {
		bin := t.TempDir()
		for _, tool := range []string{"mariadbd", "mariadb-install-db", "mariadb"} {
			p, err := engineBinary(tool)
			if err != nil {
				t.Skip(err)
			}
			if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("PATH", bin)
		t.Setenv(agentapi.EnvImage, "registry.example/mariadb:10.11-slim")
		_, _, err := runImportInto(t, importOptions{source: sourceConfig{dir: writeSource(t, "nightly.xb", stream), glob: "nightly.xb"}})
		checkFailure(t, err, agentapi.ReasonBackupToolMissing, "image registry.example/mariadb:10.11-slim has no mariadb-backup or mariabackup", "Debian's mariadb-backup package")
	})
}

func checkFailure(t *testing.T, err error, reason string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("import succeeded")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message %q lacks %q", err, w)
		}
	}
	if r := failureReport(context.Background(), err); r.Outcome != agentapi.OutcomeFailed || r.Reason != reason {
		t.Errorf("report %s/%s, want Failed/%s", r.Outcome, r.Reason, reason)
	}
}

func engineBinary(name string) (string, error) {
	for _, dir := range append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/usr/bin") {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func mustMySQLFamily(t *testing.T) engine.MySQLFamily {
	t.Helper()
	mariadbtest.Binaries(t)
	return engine.MariaDB{}
}
