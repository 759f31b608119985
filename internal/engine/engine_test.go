package engine

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	for _, name := range []string{"mariadb", "mysql"} {
		e, err := Lookup(name)
		if err != nil || e.Name() != name {
			t.Errorf("Lookup(%q) = %v, %v", name, e, err)
		}
	}
	if _, err := Lookup("postgres"); err == nil || !strings.Contains(err.Error(), "valid engines are mariadb, mysql") {
		t.Fatalf("unknown engine: %v", err)
	}
}

func TestServerOptions(t *testing.T) {
	for _, tc := range []struct {
		engine      MySQLFamily
		bulk        []string // options a fast, snapshot-safe import needs
		serving     []string
		bulkLogFlag string
	}{
		{
			engine:      MariaDB{},
			bulk:        []string{"--skip-log-bin", "--innodb-doublewrite=0", "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=1073741824", "--innodb-use-native-aio=0"},
			serving:     []string{"--server-id=7", "--innodb-temp-data-file-path=../../run/ibtmp1:12M:autoextend", "--innodb-buffer-pool-load-at-startup=OFF", "--skip-log-bin"},
			bulkLogFlag: "--innodb-log-file-size=268435456",
		},
		{
			engine:      MySQL{},
			bulk:        []string{"--skip-log-bin", "--innodb-doublewrite=OFF", "--innodb-flush-log-at-trx-commit=0"},
			serving:     []string{"--server-id=7", "--innodb-temp-data-file-path=../../run/ibtmp1:12M:autoextend"},
			bulkLogFlag: "--innodb-redo-log-capacity=268435456",
		},
	} {
		t.Run(tc.engine.Name(), func(t *testing.T) {
			bulk := tc.engine.BulkLoadOptions(1<<30, 256<<20)
			for _, want := range append(tc.bulk, tc.bulkLogFlag) {
				if !slices.Contains(bulk, want) {
					t.Errorf("bulk options %v lack %s", bulk, want)
				}
			}
			serving := tc.engine.ServingOptions(512<<20, 7, "../../run", "/run/files")
			for _, want := range tc.serving {
				if !slices.Contains(serving, want) {
					t.Errorf("serving options %v lack %s", serving, want)
				}
			}
			if slices.Contains(serving, "--innodb-doublewrite=0") || slices.Contains(serving, "--innodb-flush-log-at-trx-commit=0") {
				t.Errorf("serving options %v keep the import's relaxed durability", serving)
			}
		})
	}
}

func TestPrepareClone(t *testing.T) {
	for _, tc := range []struct {
		engine   MySQLFamily
		files    map[string]int // name → size in the template's datadir
		removed  []string
		wantOpts []string
	}{
		{
			engine:   MariaDB{},
			files:    map[string]int{".my-healthcheck.cnf": 10, "mysqld.pid": 3, "ib_logfile0": 4096, "auto.cnf": 5},
			removed:  []string{".my-healthcheck.cnf", "mysqld.pid"},
			wantOpts: []string{"--innodb-log-file-size=4096"},
		},
		{
			engine:  MySQL{},
			files:   map[string]int{"auto.cnf": 5, "mysql.sock": 0},
			removed: []string{"auto.cnf", "mysql.sock"},
		},
	} {
		t.Run(tc.engine.Name(), func(t *testing.T) {
			dir := t.TempDir()
			for name, size := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			opts, err := tc.engine.PrepareClone(dir)
			if err != nil || !slices.Equal(opts, tc.wantOpts) {
				t.Fatalf("options %v, want %v (%v)", opts, tc.wantOpts, err)
			}
			for name := range tc.files {
				_, err := os.Stat(filepath.Join(dir, name))
				if gone := os.IsNotExist(err); gone != slices.Contains(tc.removed, name) {
					t.Errorf("%s: removed %v, want %v", name, gone, slices.Contains(tc.removed, name))
				}
			}
			// A pod restart prepares the same clone again.
			if _, err := tc.engine.PrepareClone(dir); err != nil {
				t.Fatalf("second start: %v", err)
			}
		})
	}
}

func TestCredentialSQLQuotesWhatTheSecretHolds(t *testing.T) {
	sql := strings.Join(credentialSQL(Credentials{Username: "o'neil", Password: `p'w\x`, Database: "a`b", RootPassword: "r"}, Grants{}), ";\n")
	for _, want := range []string{"'o\\'neil'@'%'", `IDENTIFIED BY 'p\'w\\x'`, "CREATE DATABASE IF NOT EXISTS `a``b`", "ALTER USER 'root'@'localhost' IDENTIFIED BY 'r'"} {
		if !strings.Contains(sql, want) {
			t.Errorf("credential SQL lacks %s:\n%s", want, sql)
		}
	}
}

func TestTLSOptions(t *testing.T) {
	files := TLSFiles{Cert: "/tls/tls.crt", Key: "/tls/tls.key", CA: "/tls/ca.crt"}
	for _, eng := range []MySQLFamily{MariaDB{}, MySQL{}} {
		for _, tc := range []struct {
			require bool
			want    []string
		}{
			{false, []string{"--ssl-cert=/tls/tls.crt", "--ssl-key=/tls/tls.key", "--ssl-ca=/tls/ca.crt"}},
			{true, []string{"--ssl-cert=/tls/tls.crt", "--ssl-key=/tls/tls.key", "--ssl-ca=/tls/ca.crt", "--require-secure-transport=ON"}},
		} {
			if got := eng.TLSOptions(files, tc.require); !slices.Equal(got, tc.want) {
				t.Errorf("%s require=%v: %v, want %v", eng.Name(), tc.require, got, tc.want)
			}
		}
	}
}
