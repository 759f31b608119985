package engine

import (
	"slices"
	"strings"
	"testing"
)

func TestPostgresServingSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    PostgresServing
		want []string
		not  []string
	}{
		{
			name: "1 GiB limit, TLS",
			s:    PostgresServing{Port: 5432, RunDir: "/run/myaas", HBAFile: "/run/myaas/pg_hba.conf", MemoryLimit: 1 << 30, TLS: &TLSFiles{Cert: "/tls/tls.crt", Key: "/tls/tls.key", CA: "/tls/ca.crt"}},
			want: []string{
				"listen_addresses=*", "port=5432", "unix_socket_directories=/run/myaas", "hba_file=/run/myaas/pg_hba.conf",
				"fsync=on", "full_page_writes=on", "autovacuum=on",
				"shared_buffers=262144kB", "effective_cache_size=786432kB", "maintenance_work_mem=65536kB",
				"ssl=on", "ssl_cert_file=/tls/tls.crt", "ssl_key_file=/tls/tls.key", "ssl_ca_file=/tls/ca.crt",
			},
		},
		{
			name: "unknown limit, no TLS",
			s:    PostgresServing{Port: 15432, RunDir: "/r", HBAFile: "/r/hba"},
			want: []string{"port=15432", "shared_buffers=131072kB", "fsync=on"},
			not:  []string{"ssl=on"},
		},
		{
			name: "node's memory reported as the limit",
			s:    PostgresServing{Port: 5432, RunDir: "/r", HBAFile: "/r/hba", MemoryLimit: 256 << 30},
			want: []string{"shared_buffers=131072kB"},
		},
		{
			name: "small limit",
			s:    PostgresServing{Port: 5432, RunDir: "/r", HBAFile: "/r/hba", MemoryLimit: 32 << 20},
			want: []string{"shared_buffers=16384kB", "maintenance_work_mem=16384kB"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PostgreSQL{}.ServingSettings(tc.s)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("settings %v lack %s", got, w)
				}
			}
			for _, n := range append(tc.not, "fsync=off", "full_page_writes=off", "autovacuum=off") {
				if slices.Contains(got, n) {
					t.Errorf("settings %v have %s", got, n)
				}
			}
		})
	}
}

func TestPostgresHBA(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    PostgresHBA
		want string
	}{
		{
			name: "closed while the roles get their passwords",
			h:    PostgresHBA{AppUser: "alice", AdminUser: "myaas_admin", Closed: true},
			want: "local all postgres trust\nlocal all all reject\nhost all all all reject\n",
		},
		{
			name: "open",
			h:    PostgresHBA{AppUser: "alice", AdminUser: "myaas_admin"},
			want: "local all postgres trust\n" +
				"local all \"alice\" scram-sha-256\n" +
				"host all \"alice\" all scram-sha-256\n" +
				"host postgres \"myaas_admin\" all scram-sha-256\n" +
				"local all all reject\nhost all all all reject\n",
		},
		{
			name: "TLS required; a name that is a keyword is taken literally",
			h:    PostgresHBA{AppUser: "all", AdminUser: "myaas_admin", RequireTLS: true},
			want: "local all postgres trust\n" +
				"local all \"all\" scram-sha-256\n" +
				"hostssl all \"all\" all scram-sha-256\n" +
				"hostssl postgres \"myaas_admin\" all scram-sha-256\n" +
				"local all all reject\nhost all all all reject\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PostgreSQL{}.HBA(tc.h)
			_, body, _ := strings.Cut(got, "\n") // the comment line
			if body != tc.want {
				t.Errorf("hba file\n%s\nwant\n%s", body, tc.want)
			}
		})
	}
}

// The verifier of RFC 5802/7677's scheme as PostgreSQL stores it, computed independently (with
// Python's hashlib) for this salt.
func TestSCRAMVerifier(t *testing.T) {
	got, ok := SCRAMVerifier("pencil", []byte("0123456789abcdef"), 4096)
	want := "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$nQpbZ77WudtqufPwikHXGRt6g2QJ4zns8bZLw273DRM=:jn2amWP1q1h+jgjy0YTO14S6/F02SV7taipOeB7ef20="
	if !ok || got != want {
		t.Fatalf("verifier %q (%v), want %q", got, ok, want)
	}
	if _, ok := SCRAMVerifier("pässword", []byte("0123456789abcdef"), 4096); ok {
		t.Fatal("a non-ASCII password, which SASLprep may change, was hashed here")
	}
}

func TestPostgresRoleSQL(t *testing.T) {
	salt := func() []byte { return []byte("0123456789abcdef") }
	for _, tc := range []struct {
		name    string
		r       PostgresRoles
		want    []string
		notWant []string
	}{
		{
			name: "developer",
			r:    PostgresRoles{Credentials: Credentials{Username: "alice", Password: "pencil", AdminUsername: "myaas_admin", AdminPassword: "adm"}, Salt: salt},
			want: []string{
				`ALTER ROLE "alice" WITH LOGIN NOSUPERUSER INHERIT NOCREATEROLE CONNECTION LIMIT -1 VALID UNTIL 'infinity' NOCREATEDB NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$nQpbZ77WudtqufPwikHXGRt6g2QJ4zns8bZLw273DRM=:jn2amWP1q1h+jgjy0YTO14S6/F02SV7taipOeB7ef20='`,
				`GRANT "pg_read_all_stats" TO "myaas_admin"`,
				`rolname NOT IN ('postgres', 'alice', 'myaas_admin')`,
				`ALTER ROLE "postgres" PASSWORD NULL`,
			},
			notWant: []string{"pencil", "'adm'", `GRANT "pg_read_all_stats" TO "alice"`, "pg_monitor"},
		},
		{
			name: "extra privileges",
			r: PostgresRoles{Credentials: Credentials{Username: "bob", Password: "p", AdminUsername: "myaas_admin", AdminPassword: "a"},
				Extra: []string{"CREATEDB", "pg_read_all_data", "BYPASSRLS", "pg_read_all_data"}, Salt: salt},
			want: []string{" NOCREATEROLE ", " CREATEDB NOREPLICATION BYPASSRLS PASSWORD", `GRANT "pg_read_all_data" TO "bob"`, `ARRAY['pg_read_all_data', 'myaas_owner']::name[]`},
		},
		{
			name: "quotes in names and a non-ASCII password",
			r:    PostgresRoles{Credentials: Credentials{Username: `o"brien's`, Password: "pässword", AdminUsername: "myaas_admin", AdminPassword: "a"}, Salt: salt},
			want: []string{`CREATE ROLE "o""brien's"`, `rolname = 'o"brien''s'`, `PASSWORD 'pässword'`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := strings.Join(PostgreSQL{}.RoleSQL(tc.r), "\n;\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("statements lack %s:\n%s", w, all)
				}
			}
			for _, n := range tc.notWant {
				if strings.Contains(all, n) {
					t.Errorf("statements contain %s:\n%s", n, all)
				}
			}
		})
	}
}

func TestPostgresDatabaseSQL(t *testing.T) {
	pg := PostgreSQL{}
	if got := pg.CreateDatabaseSQL("my db", "alice"); got != `CREATE DATABASE "my db" OWNER "alice"` {
		t.Errorf("create: %s", got)
	}
	if got := pg.DatabaseOwnerSQL("shop", `a"b`); got != `ALTER DATABASE "shop" OWNER TO "a""b"` {
		t.Errorf("owner: %s", got)
	}
	if got := pg.OwnershipSQL("o'neil"); !strings.Contains(got, "rolname = 'o''neil'") || !strings.Contains(got, "deptype = 'e'") {
		t.Errorf("ownership: %s", got)
	}
}
