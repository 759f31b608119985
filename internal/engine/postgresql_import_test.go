package engine

import (
	"slices"
	"strings"
	"testing"
)

func TestBulkLoadSettings(t *testing.T) {
	setting := func(settings []string, name string) string {
		for _, s := range settings {
			if n, v, _ := strings.Cut(s, "="); n == name {
				return v
			}
		}
		return "(unset)"
	}
	for _, tc := range []struct {
		name string
		in   BulkLoad
		want map[string]string
	}{
		{"4 GiB, one session", BulkLoad{MemoryLimit: 4 << 30, WALBytes: 2 << 30, Jobs: 1, SocketDir: "/run/myaas"},
			map[string]string{"shared_buffers": "512MB", "maintenance_work_mem": "2048MB", "max_wal_size": "2048MB", "max_connections": "11", "unix_socket_directories": `"/run/myaas"`}},
		{"4 GiB shared by 4 jobs", BulkLoad{MemoryLimit: 4 << 30, WALBytes: 1 << 30, Jobs: 4, SocketDir: "/s"},
			map[string]string{"shared_buffers": "512MB", "maintenance_work_mem": "512MB", "max_connections": "14"}},
		{"no limit known: the node's memory is not ours", BulkLoad{MemoryLimit: 0, WALBytes: 0, Jobs: 0, SocketDir: "/s"},
			map[string]string{"shared_buffers": "128MB", "maintenance_work_mem": "512MB", "max_wal_size": "256MB", "max_connections": "11"}},
		{"a node-sized limit counts as none", BulkLoad{MemoryLimit: 512 << 30, Jobs: 2, SocketDir: "/s"},
			map[string]string{"shared_buffers": "128MB", "maintenance_work_mem": "256MB"}},
		{"small pod: floors", BulkLoad{MemoryLimit: 256 << 20, WALBytes: 64 << 20, Jobs: 8, SocketDir: "/s"},
			map[string]string{"shared_buffers": "128MB", "maintenance_work_mem": "64MB", "max_wal_size": "256MB"}},
		{"large pod: ceilings", BulkLoad{MemoryLimit: 64 << 30, WALBytes: 1 << 40, Jobs: 1, SocketDir: "/s"},
			map[string]string{"shared_buffers": "8192MB", "maintenance_work_mem": "2048MB", "max_wal_size": "65536MB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PostgreSQL{}.BulkLoadSettings(tc.in)
			for name, want := range tc.want {
				if v := setting(got, name); v != want {
					t.Errorf("%s = %s, want %s", name, v, want)
				}
			}
			// Never durable, never reachable but through the socket, whatever the size.
			for name, want := range map[string]string{"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off",
				"wal_level": "minimal", "max_wal_senders": "0", "archive_mode": "off", "autovacuum": "off", "listen_addresses": ""} {
				if v := setting(got, name); v != want {
					t.Errorf("%s = %q, want %q", name, v, want)
				}
			}
		})
	}
}

func TestSettingArgsAndValidSetting(t *testing.T) {
	if got := SettingArgs([]string{"work_mem=64MB", "search_path=a,b"}); !slices.Equal(got, []string{"-c", "work_mem=64MB", "-c", "search_path=a,b"}) {
		t.Errorf("SettingArgs = %q", got)
	}
	for s, ok := range map[string]bool{"work_mem=64MB": true, "auto_explain.log_min_duration=0": true, "x=": true,
		"work_mem": false, "=1": false, "--work_mem=1": false, "a b=1": false} {
		if err := ValidSetting(s); (err == nil) != ok {
			t.Errorf("ValidSetting(%q) = %v, want ok %v", s, err, ok)
		}
	}
}
