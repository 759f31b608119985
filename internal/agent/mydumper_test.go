package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
)

// mydumperOutput is what mydumper 0.10 (Debian 12's) wrote for a database shop with one table:
// a file per schema and per table's data, and the metadata file it writes under that name only
// once the dump finished.
const mydumperOutput = "testdata/mydumper-0.10"

// mydumper writes no header naming itself and no trailer into its SQL files: the only mark of a
// finished dump is its metadata file. The trailer check, which goes by a file's header, does not
// apply to them, as README's "Guarantees under faults" and spec.import.allowMissingTrailer say.
func TestMydumperFilesCarryNoHeaderNorTrailer(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(mydumperOutput, "*.sql"))
	if err != nil || len(files) != 3 {
		t.Fatalf("mydumper's SQL files: %v, %v", files, err)
	}
	for _, f := range files {
		sql, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c completeness
		c.Write(sql)
		if tool := c.tool(); tool != "" || c.hasTrailer() {
			t.Errorf("%s: header names %q, trailer %v: the documented limits of the check are wrong", filepath.Base(f), tool, c.hasTrailer())
		}
	}
	metadata, err := os.ReadFile(filepath.Join(mydumperOutput, "metadata"))
	if err != nil || !strings.Contains(string(metadata), "\nFinished dump at: ") {
		t.Fatalf("metadata %q, %v: mydumper marks a finished dump there", metadata, err)
	}
}

// mydumper's table files name no database (myloader takes it from each file's name): loaded as
// SQL files they fail on the first table with the server's ERROR 1046, named with the file, rather
// than leave tables somewhere else.
func TestImportOfMydumperOutputFailsNamingTheFile(t *testing.T) {
	dir := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(mydumperOutput, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, _ := importReport(t, ctx, agentapi.Flag(agentapi.FlagSourceDir, dir), agentapi.Flag(agentapi.FlagSourceGlob, "*.sql"))
	if r.Outcome != agentapi.OutcomeFailed || r.Reason != agentapi.ReasonSQLError {
		t.Fatalf("report %s/%s: %s", r.Outcome, r.Reason, r.Message)
	}
	for _, want := range []string{"shop.orders-schema.sql: line 5", "ERROR 1046", "No database selected"} {
		if !strings.Contains(r.Message, want) {
			t.Errorf("message %q lacks %q", r.Message, want)
		}
	}
}
