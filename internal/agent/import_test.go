package agent

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/mariadbtest"
)

// sourceDump builds, on a real server, a database with every construct mariadb-dump writes:
// routines, triggers, views, events, BLOBs, utf8mb4 text and several databases.
func sourceDump(t *testing.T) (dump []byte, checksums map[string]string) {
	t.Helper()
	src, checksums := sourceServer(t)
	out, err := exec.Command(dumpBinary(t), "--no-defaults", "--socket="+src.Socket, "-uroot",
		"--databases", "shop", "audit", "--routines", "--triggers", "--events", "--single-transaction").Output()
	if err != nil {
		t.Fatalf("mariadb-dump: %v", err)
	}
	if !bytes.Contains(out, []byte("DELIMITER ;;")) || !bytes.Contains(out, []byte("/*!50001 CREATE")) {
		t.Fatal("the dump lacks the constructs this test is about")
	}
	return out, checksums
}

// sourceServer is a running server holding the databases sourceDump dumps, and their checksums.
func sourceServer(t *testing.T) (*mariadbtest.Server, map[string]string) {
	t.Helper()
	src := mariadbtest.Start(t)
	src.Exec(t,
		"CREATE DATABASE shop CHARACTER SET utf8mb4",
		"CREATE DATABASE audit",
		"CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(100), photo LONGBLOB, KEY name (name)) DEFAULT CHARSET=utf8mb4",
		"CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT, total DECIMAL(10,2), note TEXT) DEFAULT CHARSET=utf8mb4",
		"CREATE TABLE audit.log (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(200))",
		"CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE total > 500",
		"CREATE TRIGGER shop.orders_log AFTER INSERT ON shop.orders FOR EACH ROW INSERT INTO audit.log (msg) VALUES (CONCAT('order ', NEW.id))",
		// Over several lines, as mydumper writes it: its lines end in "; " inside the body.
		"CREATE PROCEDURE shop.order_count(OUT n INT)\nBEGIN\n  SELECT COUNT(*) INTO n FROM shop.orders;\nEND",
		"CREATE FUNCTION shop.double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
		"CREATE EVENT shop.nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit.log",
	)
	db := src.Root(t)
	defer db.Close()
	blob := make([]byte, 300<<10)
	for i := range blob {
		blob[i] = byte(i * 7 % 256) // every byte value, NULs and quotes included
	}
	for i := 1; i <= 200; i++ {
		if _, err := db.Exec("INSERT INTO shop.customers VALUES (?, ?, ?)", i, fmt.Sprintf("Zoë 李雷 %d 🚀 it's \"quoted\"", i), blob[:i*1000]); err != nil {
			t.Fatal(err)
		}
	}
	// Enough rows that mariadb-dump writes multi-MB extended INSERTs.
	if _, err := db.Exec("INSERT INTO shop.orders (customer_id, total, note) SELECT seq % 200 + 1, seq % 1000, REPEAT('x', 100) FROM shop.seq_1_to_50000"); err != nil {
		t.Fatal(err)
	}
	return src, tableChecksums(t, db)
}

func dumpBinary(t *testing.T) string {
	for _, n := range []string{"mariadb-dump", "mysqldump"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatal("mariadb-dump not found")
	return ""
}

func tableChecksums(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, table := range []string{"shop.customers", "shop.orders", "audit.log"} {
		var name, sum sql.NullString
		if err := db.QueryRow("CHECKSUM TABLE "+table+" EXTENDED").Scan(&name, &sum); err != nil {
			t.Fatal(err)
		}
		out[table] = sum.String
	}
	var n int
	if err := db.QueryRow("SELECT shop.double_it(21)").Scan(&n); err != nil || n != 42 {
		t.Fatalf("function: %d %v", n, err)
	}
	var views, triggers, events int
	_ = db.QueryRow("SELECT COUNT(*) FROM information_schema.views WHERE table_schema = 'shop'").Scan(&views)
	_ = db.QueryRow("SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = 'shop'").Scan(&triggers)
	_ = db.QueryRow("SELECT COUNT(*) FROM information_schema.events WHERE event_schema = 'shop'").Scan(&events)
	out["objects"] = fmt.Sprintf("views=%d triggers=%d events=%d", views, triggers, events)
	return out
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func zst(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// runImportInto imports with the agent into a fresh datadir and returns the outcome.
func runImportInto(t *testing.T, o importOptions) (string, agentapi.Report, error) {
	t.Helper()
	mariadbtest.Binaries(t)
	work := t.TempDir()
	o.engine = "mariadb"
	o.datadir = filepath.Join(work, "data")
	o.runDir = filepath.Join(work, "run")
	o.terminationLog = filepath.Join(work, "termination-log")
	o.logInterval = time.Second
	o.serverLog = io.Discard
	if err := os.MkdirAll(o.runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := importDumps(ctx, o, time.Now)
	return o.datadir, rep, err
}

func TestImportRealDumpCompressedOrNot(t *testing.T) {
	dump, want := sourceDump(t)
	for _, tc := range []struct {
		name string
		data []byte
	}{{"nightly.sql", dump}, {"nightly.sql.gz", gz(t, dump)}, {"nightly.sql.zst", zst(t, dump)}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tc.name), tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("MYAAS_POST_IMPORT_SQL", "UPDATE shop.customers SET name = 'masked' WHERE id = 1")
			datadir, rep, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "*.sql*"}})
			if err != nil {
				t.Fatal(err)
			}
			if rep.BytesRead != int64(len(tc.data)) || rep.Files != 1 || rep.DatadirBytes <= 0 {
				t.Fatalf("report %+v", rep)
			}
			checkMaskedCopy(t, datadir, want)
		})
	}
}

// checkMaskedCopy serves an imported datadir and checks that it holds the source's data, with
// customer 1 masked by the post-import SQL. It returns a root connection to the served copy.
func checkMaskedCopy(t *testing.T, datadir string, want map[string]string) *sql.DB {
	t.Helper()
	db := serveDatadir(t, datadir).Root(t)
	t.Cleanup(func() { db.Close() })
	var masked string
	if err := db.QueryRow("SELECT name FROM shop.customers WHERE id = 1").Scan(&masked); err != nil || masked != "masked" {
		t.Fatalf("post-import SQL did not run: %q %v", masked, err)
	}
	if _, err := db.Exec("UPDATE shop.customers SET name = 'Zoë 李雷 1 🚀 it''s \"quoted\"' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if sums := tableChecksums(t, db); fmt.Sprint(sums) != fmt.Sprint(want) {
		t.Fatalf("imported data differs from the source:\n got %v\nwant %v", sums, want)
	}
	return db
}

// serveDatadir starts a server on an imported datadir, as a clone would.
func serveDatadir(t *testing.T, datadir string) *mariadbtest.Server {
	t.Helper()
	server, _ := mariadbtest.Binaries(t)
	return mariadbtest.StartOn(t, server, datadir, filepath.Join(t.TempDir(), "s.sock"))
}

func TestImportSeveralFilesInNameOrderOverHTTPAndFromDir(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"b-data.sql.gz": "INSERT INTO app.t VALUES (2);\n",
		"a-schema.sql":  "CREATE DATABASE app;\nCREATE TABLE app.t (id INT PRIMARY KEY);\nINSERT INTO app.t VALUES (1);\n",
		"notes.txt":     "not a dump",
	}
	for name, content := range files {
		data := []byte(content)
		if strings.HasSuffix(name, ".gz") {
			data = gz(t, data)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	datadir, rep, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "*.sql*"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 2 {
		t.Fatalf("%d files loaded, want 2", rep.Files)
	}
	db := serveDatadir(t, datadir).Root(t)
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM app.t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows %d %v", n, err)
	}

	// HTTP with basic auth from the mounted Secret, over the plain http the template allows.
	auth := t.TempDir()
	os.WriteFile(filepath.Join(auth, "username"), []byte("backup"), 0o600)
	os.WriteFile(filepath.Join(auth, "password"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(auth, "headers"), []byte("X-Token: abc\n"), 0o600)
	body := gz(t, []byte(files["a-schema.sql"]))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "backup" || p != "s3cret" || r.Header.Get("X-Token") != "abc" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	_, rep, err = runImportInto(t, importOptions{source: sourceConfig{url: srv.URL + "/dumps/app.sql.gz", authDir: auth, httpInsecure: true}})
	if err != nil || rep.BytesRead != int64(len(body)) {
		t.Fatalf("HTTP import: %+v %v", rep, err)
	}
	_, _, err = runImportInto(t, importOptions{source: sourceConfig{url: srv.URL + "/dumps/app.sql.gz"}})
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized") || !strings.Contains(err.Error(), "/dumps/app.sql.gz") {
		t.Fatalf("a denied credential must say so and name the URL: %v", err)
	}
}

func TestImportFailuresNameFileLineAndStatement(t *testing.T) {
	good, _ := sourceDumpSmall()
	gzGood := gz(t, good)
	badSQL := "CREATE DATABASE app;\nUSE app;\nCREATE TABLE t (id INT);\n\nINSERT INTO missing_table VALUES (1);\nINSERT INTO t VALUES (2);\n"
	cases := []struct {
		name, file string
		data       []byte
		reason     string
		want       []string
	}{
		{"failing statement", "broken.sql", []byte(badSQL), agentapi.ReasonSQLError,
			[]string{"broken.sql: line 5 (byte ", "ERROR 1146 (42S02)", "missing_table", "statement starts: INSERT INTO missing_table VALUES (…)"}},
		{"truncated gzip", "cut.sql.gz", gzGood[:len(gzGood)/2], agentapi.ReasonTruncatedDump, []string{"cut.sql.gz: line ", "truncated"}},
		{"corrupt zstd", "bad.sql.zst", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, bytes.Repeat([]byte{0xff}, 64)...), agentapi.ReasonSourceError, []string{"bad.sql.zst", "corrupt"}},
		{"not gzip at all", "plain.sql.gz", []byte("SELECT 1;"), agentapi.ReasonSourceError, []string{"plain.sql.gz: byte 0: not a gzip file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, tc.file), tc.data, 0o644)
			_, _, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: tc.file}})
			if err == nil {
				t.Fatal("import succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
			if r := failureReport(context.Background(), err); r.Outcome != agentapi.OutcomeFailed || r.Reason != tc.reason {
				t.Errorf("report %s/%s, want Failed/%s", r.Outcome, r.Reason, tc.reason)
			}
		})
	}
	_, _, err := runImportInto(t, importOptions{source: sourceConfig{url: "http://127.0.0.1:1/x.sql"}})
	if err == nil || !strings.Contains(err.Error(), "GET http://127.0.0.1:1/x.sql") {
		t.Fatalf("unreachable URL: %v", err)
	}
	_, _, err = runImportInto(t, importOptions{source: sourceConfig{dir: t.TempDir(), glob: "*.sql"}})
	if err == nil || !strings.Contains(err.Error(), `"*.sql" matches no file`) {
		t.Fatalf("empty source: %v", err)
	}
}

func sourceDumpSmall() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("CREATE DATABASE app;\nCREATE TABLE app.t (id INT PRIMARY KEY, v TEXT);\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&b, "INSERT INTO app.t VALUES (%d, '%s');\n", i, strings.Repeat("y", 200))
	}
	return b.Bytes(), nil
}
