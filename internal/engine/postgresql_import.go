package engine

import (
	"fmt"
	"strings"
)

// PostgreSQL's import: the server the agent loads dumps into runs with these settings, on the
// command line only, so that nothing of them is written into the datadir the clones start from.

// InitdbArgs initialise an empty datadir: the bootstrap superuser is PostgresSuperuser, the socket
// (private to the pod) trusts it, and TCP is refused until a clone writes its own pg_hba.conf.
// The data is synced once, after the load, so initdb need not.
func (PostgreSQL) InitdbArgs(datadir string) []string {
	return []string{
		"--pgdata=" + datadir,
		"--username=" + PostgresSuperuser,
		"--encoding=UTF8",
		// C.UTF-8 ships with glibc in every Debian image, where en_US.UTF-8 needs locales installed.
		"--locale=C.UTF-8",
		"--auth-local=trust",
		"--auth-host=reject",
		"--no-sync",
		"--no-instructions",
	}
}

// BulkLoad sizes the import server.
type BulkLoad struct {
	// MemoryLimit is the container's memory limit in bytes; 0 when unknown.
	MemoryLimit int64
	// WALBytes bounds the WAL kept between checkpoints: it must fit beside the data.
	WALBytes int64
	// Jobs is the number of sessions loading at once (pg_restore -j).
	Jobs int
	// SocketDir is where the server makes its socket; it listens on nothing else.
	SocketDir string
}

// BulkLoadSettings are the import server's settings, name=value for `postgres -c`. None is durable:
// a crash loses the import, which then starts again from an empty datadir; the clean shutdown
// and a sync of the datadir make the result durable.
func (PostgreSQL) BulkLoadSettings(b BulkLoad) []string {
	jobs := max(b.Jobs, 1)
	mem := b.MemoryLimit
	if mem <= 0 || mem > 64<<30 {
		// Without a limit the downward API reports the node's memory: not ours to take.
		mem = 1 << 30
	}
	// An eighth of the memory for shared buffers: COPY and index builds write through small
	// rings of their own, not the buffers. Half shared by the sessions building indexes at once:
	// a sort that fits sorts in memory, one that does not spills to files and merges, which
	// costs more. The rest for the sessions' own memory and the page cache.
	shared := clamp(mem/8, 128<<20, 8<<30)
	maintenance := clamp(mem/2/int64(jobs), 64<<20, 2<<30)
	wal := clamp(b.WALBytes, 256<<20, 64<<30)
	return []string{
		"fsync=off",
		"synchronous_commit=off",
		"full_page_writes=off",
		// New WAL files are not filled with zeros first: nothing here survives a crash anyway.
		"wal_init_zero=off",
		// Minimal WAL lets COPY into a table created in the same transaction skip the WAL.
		"wal_level=minimal",
		"max_wal_senders=0",
		"archive_mode=off",
		fmt.Sprintf("max_wal_size=%dMB", wal>>20),
		"checkpoint_timeout=1d",
		fmt.Sprintf("shared_buffers=%dMB", shared>>20),
		fmt.Sprintf("maintenance_work_mem=%dMB", maintenance>>20),
		"autovacuum=off",
		// A plain dump loads in one transaction, which locks every table it creates: a dump of
		// thousands of tables or partitions needs room for that many locks.
		"max_locks_per_transaction=1024",
		fmt.Sprintf("max_connections=%d", jobs+10),
		"listen_addresses=",
		// Quoted: the setting is a comma-separated list.
		`unix_socket_directories="` + strings.ReplaceAll(b.SocketDir, `"`, `""`) + `"`,
		// The log goes to the pod's log, where a failed import is investigated.
		"logging_collector=off",
		"log_min_messages=warning",
		// A failed statement is in the import's report, located and without its values: the log
		// would show it whole, rows included.
		"log_min_error_statement=panic",
	}
}

// SettingArgs renders settings as the server's command-line options.
func SettingArgs(settings []string) []string {
	args := make([]string, 0, 2*len(settings))
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	return args
}

// ValidSetting checks a name=value from the template before it reaches the server's command line.
func ValidSetting(s string) error {
	name, _, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("server option %q: want name=value", s)
	}
	for _, c := range name {
		if c != '_' && c != '.' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return fmt.Errorf("server option %q: %q is not a setting name", s, name)
		}
	}
	return nil
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }
