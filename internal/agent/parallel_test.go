package agent

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/myaas/myaas/internal/agentapi"
)

// captureLog records the agent's log for the test's duration.
func captureLog(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	log.SetOutput(&buf)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	return &buf
}

// parallelSessions gives the import two CPUs' worth of sessions.
func parallelSessions(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("parallel loading needs at least 2 CPUs")
	}
	t.Setenv(agentapi.EnvCPULimit, "2")
}

func checkLoaded(t *testing.T, datadir string, want map[string]string) {
	t.Helper()
	db := serveDatadir(t, datadir).Root(t)
	defer db.Close()
	if sums := tableChecksums(t, db); fmt.Sprint(sums) != fmt.Sprint(want) {
		t.Fatalf("loaded data differs from the source:\n got %v\nwant %v", sums, want)
	}
}

func TestImportSplitsSingleFileDumpIntoParallelSessions(t *testing.T) {
	parallelSessions(t)
	dump, want := sourceDump(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nightly.sql.gz"), gz(t, dump), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := captureLog(t)
	datadir, _, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "nightly.sql.gz"}})
	if err != nil {
		t.Fatal(err)
	}
	// 20 MB of customers' photos and 6 MB of orders: several chunks of 8 MB.
	if !strings.Contains(logs.String(), "nightly.sql.gz: 5 chunks of rows loaded") {
		t.Fatalf("the dump was not split into chunks; log:\n%s", logs)
	}
	checkLoaded(t, datadir, want)
}

func TestImportSplitDumpLocatesFailingStatementInTheFile(t *testing.T) {
	parallelSessions(t)
	dump, _ := sourceDump(t)
	// A statement that fails in the middle of the orders' rows, between two of the dump's.
	first := bytes.Index(dump, []byte("INSERT INTO `orders` VALUES"))
	at := first + 1 + bytes.Index(dump[first+1:], []byte("INSERT INTO `orders` VALUES"))
	bad := "INSERT INTO `orders` VALUES (1,2);\n"
	broken := append(append(append([]byte{}, dump[:at]...), bad...), dump[at:]...)
	line := bytes.Count(broken[:at], []byte("\n")) + 1
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nightly.sql"), broken, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "nightly.sql"}})
	if err == nil {
		t.Fatal("the import succeeded")
	}
	for _, want := range []string{
		fmt.Sprintf("nightly.sql: line %d (byte %d): ERROR 1136", line, at),
		"statement starts: INSERT INTO `orders` VALUES",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if r := failureReport(context.Background(), err); r.Reason != agentapi.ReasonSQLError {
		t.Errorf("reason %s, want %s", r.Reason, agentapi.ReasonSQLError)
	}
}

func TestImportSplitDumpStillNeedsItsTrailer(t *testing.T) {
	parallelSessions(t)
	dump, _ := sourceDump(t)
	cut := dump[:bytes.LastIndex(dump, []byte("INSERT INTO `orders` VALUES"))+100]
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cut.sql"), cut, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "cut.sql"}})
	if r := failureReport(context.Background(), err); err == nil || r.Reason != agentapi.ReasonTruncatedDump ||
		!strings.Contains(err.Error(), "inside the statement starting at line") {
		t.Fatalf("want a truncated dump located in its statement, got %v", err)
	}
}

// mydumperDir dumps the source server with Debian's mydumper: two chunks per table and more.
func mydumperOf(t *testing.T) (string, map[string]string) {
	t.Helper()
	mydumper, err := exec.LookPath("mydumper")
	if err != nil {
		if os.Getenv("MYAAS_REQUIRE_MARIADB") != "" {
			t.Fatal("mydumper not found: make install-test-deps installs it")
		}
		t.Skip("mydumper not installed")
	}
	src, want := sourceServer(t)
	vol := t.TempDir()
	out := filepath.Join(vol, "nightly")
	cmd := exec.Command(mydumper, "--socket="+src.Socket, "--user=root", "--outputdir="+out,
		"--regex=^(shop|audit)\\.", "--rows=20000", "--triggers", "--events", "--routines", "--compress", "--threads=2")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mydumper: %v: %s", err, b)
	}
	return vol, want
}

func TestImportMydumperDirectoryRoundTrip(t *testing.T) {
	parallelSessions(t)
	vol, want := mydumperOf(t)
	chunks, _ := filepath.Glob(filepath.Join(vol, "nightly", "shop.orders.*.sql.gz"))
	if len(chunks) < 2 {
		t.Fatalf("mydumper wrote %v: the test needs a table in several chunks", chunks)
	}
	logs := captureLog(t)
	datadir, rep, err := runImportInto(t, importOptions{source: sourceConfig{dir: vol, glob: "nightly"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "rows files in 2 sessions") {
		t.Fatalf("not loaded in parallel; log:\n%s", logs)
	}
	if rep.Files < len(chunks)+4 || rep.BytesRead <= 0 {
		t.Fatalf("report %+v", rep)
	}
	checkLoaded(t, datadir, want)
}

func TestImportMydumperDirectoryFailures(t *testing.T) {
	vol, _ := mydumperOf(t)
	dir := filepath.Join(vol, "nightly")
	t.Run("missing schema file", func(t *testing.T) {
		schema := filepath.Join(dir, "shop.orders-schema.sql.gz")
		saved, err := os.ReadFile(schema)
		if err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(schema)
		defer os.WriteFile(schema, saved, 0o644)
		_, _, err = runImportInto(t, importOptions{source: sourceConfig{dir: vol, glob: "nightly"}})
		if r := failureReport(context.Background(), err); err == nil || r.Reason != agentapi.ReasonNoSourceFile ||
			!strings.Contains(err.Error(), "rows of table shop.orders, but its schema file shop.orders-schema.sql is missing") {
			t.Fatalf("want the missing schema file named, got %v", err)
		}
	})
	t.Run("unfinished dump", func(t *testing.T) {
		meta := filepath.Join(dir, "metadata")
		saved, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(meta, saved, 0o644)
		cut := saved[:bytes.Index(saved, []byte(mydumperFinished))]
		if err := os.WriteFile(meta, cut, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err = runImportInto(t, importOptions{source: sourceConfig{dir: vol, glob: "nightly"}})
		if r := failureReport(context.Background(), err); err == nil || r.Reason != agentapi.ReasonTruncatedDump ||
			!strings.Contains(err.Error(), "mydumper directory nightly is incomplete") {
			t.Fatalf("want an incomplete dump, got %v", err)
		}
	})
}
