package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/mariadbtest"
)

// rowSecret is in every row of realDump: no failure message may ever show it.
const rowSecret = "Zebra-7731-confidential"

// realDump is a real mariadb-dump of a database whose rows all carry rowSecret and binary
// bytes, with short extended INSERTs so that the dump has statement boundaries inside a table's
// data; and a real dump of a database without tables.
func realDump(t *testing.T) (shop, empty []byte) {
	t.Helper()
	src := mariadbtest.Start(t)
	src.Exec(t,
		"CREATE DATABASE shop",
		"CREATE DATABASE empty",
		"CREATE TABLE shop.orders (id INT PRIMARY KEY, note VARCHAR(100), payload VARBINARY(64))",
		"INSERT INTO shop.orders SELECT seq, CONCAT('"+rowSecret+"-', seq), UNHEX(REPEAT('00FF27225C0A29', 4)) FROM shop.seq_1_to_3000",
	)
	dump := func(args ...string) []byte {
		out, err := exec.Command(dumpBinary(t), append([]string{"--no-defaults", "--socket=" + src.Socket, "-uroot", "--net-buffer-length=4096"}, args...)...).Output()
		if err != nil {
			t.Fatalf("mariadb-dump: %v", err)
		}
		return out
	}
	shop, empty = dump("--databases", "shop"), dump("--databases", "empty")
	if bytes.Count(shop, []byte("\nINSERT INTO")) < 10 || !bytes.Contains(shop, []byte(dumpTrailer)) {
		t.Fatalf("the dump lacks what this test is about:\n%s", shop[:min(len(shop), 2000)])
	}
	return shop, empty
}

// cutInsert returns dump up to the end of its n-th INSERT statement, or up to the middle of it.
func cutInsert(t *testing.T, dump []byte, n int, whole bool) []byte {
	t.Helper()
	start := 0
	for i := 0; i < n; i++ {
		j := bytes.Index(dump[start:], []byte("\nINSERT INTO"))
		if j < 0 {
			t.Fatalf("the dump has fewer than %d INSERT statements", n)
		}
		start += j + 1
	}
	end := start + bytes.Index(dump[start:], []byte(");\n")) + 3
	if !whole {
		end = (start + end) / 2
	}
	return dump[:end]
}

// importReport runs `agent import` with args on a fresh datadir and returns the report it left
// in its termination log.
func importReport(t *testing.T, ctx context.Context, args ...string) (agentapi.Report, string) {
	t.Helper()
	mariadbtest.Binaries(t)
	work := t.TempDir()
	runDir := filepath.Join(work, "run")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	termLog := filepath.Join(work, "termination-log")
	o, err := parseImportFlags(append([]string{
		agentapi.Flag(agentapi.FlagEngine, "mariadb"),
		agentapi.Flag(agentapi.FlagDatadir, filepath.Join(work, "data")),
		agentapi.Flag(agentapi.FlagRunDir, runDir),
		agentapi.Flag(agentapi.FlagTerminationLog, termLog),
		agentapi.Flag(agentapi.FlagProgressAddr, ""),
		agentapi.Flag(agentapi.FlagPostImportSQLFile, ""),
	}, args...))
	if err != nil {
		t.Fatal(err)
	}
	o.serverLog = &bytes.Buffer{}
	err = importAndReport(ctx, o)
	b, rerr := os.ReadFile(termLog)
	if rerr != nil {
		t.Fatalf("no report in the termination log: %v (import: %v)", rerr, err)
	}
	var r agentapi.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report %q: %v", b, err)
	}
	if (err == nil) != (r.Outcome == agentapi.OutcomeSucceeded) {
		t.Fatalf("import returned %v with report %+v", err, r)
	}
	return r, runDir
}

func writeSource(t *testing.T, name string, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestImportRefusesIncompleteAndEmptySources(t *testing.T) {
	shop, empty := realDump(t)
	atBoundary := cutInsert(t, shop, 5, true)
	midStatement := cutInsert(t, shop, 5, false)
	insertLine := 1 + bytes.Count(midStatement[:bytes.LastIndex(midStatement, []byte("\nINSERT INTO"))+1], []byte("\n"))
	stall := 300 * time.Millisecond
	stalled := make(chan struct{})
	gzShop := gz(t, shop)
	// No header names a dump tool: only the compressed stream can tell that it was cut.
	handWrittenGz := gz(t, []byte("CREATE DATABASE plain;\nCREATE TABLE plain.t (id INT, note VARCHAR(40));\n"+
		strings.Repeat("INSERT INTO plain.t VALUES (1,'a note that compresses poorly: 8f3a'),(2,'x');\n", 20000)))
	httpSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty.sql.gz":
			w.WriteHeader(http.StatusOK)
		case "/silent.sql.gz", "/stops.sql.gz":
			w.WriteHeader(http.StatusOK)
			if r.URL.Path == "/stops.sql.gz" {
				w.Write(gzShop[:len(gzShop)/3])
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stalled:
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer func() {
		close(stalled) // first: Close waits for the handlers
		httpSrv.Close()
	}()
	fromDir := func(name string, data []byte) []string {
		return []string{agentapi.Flag(agentapi.FlagSourceDir, writeSource(t, name, data)), agentapi.Flag(agentapi.FlagSourceGlob, "*.sql*")}
	}
	fromURL := func(path string) []string {
		return []string{agentapi.Flag(agentapi.FlagSourceURL, httpSrv.URL+path), agentapi.Flag(agentapi.FlagSourceStallTimeout, stall.String())}
	}
	optOut := "--" + agentapi.FlagAllowMissingTrailer

	cases := []struct {
		name    string
		args    []string
		outcome agentapi.Outcome
		reason  string
		want    []string
	}{
		{"the whole dump loads", fromDir("shop.sql.gz", gz(t, shop)), agentapi.OutcomeSucceeded, "", nil},
		{"cut after a whole statement", fromDir("shop.sql", atBoundary), agentapi.OutcomeFailed, agentapi.ReasonTruncatedDump,
			[]string{fmt.Sprintf("truncated: no '-- Dump completed' trailer after %d bytes of shop.sql,", len(atBoundary)), "mariadb-dump", "after a whole statement"}},
		{"cut inside an INSERT, gzipped", fromDir("shop.sql.gz", gz(t, midStatement)), agentapi.OutcomeFailed, agentapi.ReasonTruncatedDump,
			[]string{fmt.Sprintf("after %d bytes of decompressed SQL from shop.sql.gz", len(midStatement)),
				fmt.Sprintf("inside the statement starting at line %d (byte ", insertLine), "INSERT INTO `orders` VALUES (…)"}},
		{"cut after a whole statement, trailer not required", append(fromDir("shop.sql", atBoundary), optOut), agentapi.OutcomeSucceeded, "", nil},
		{"cut inside an INSERT, trailer not required", append(fromDir("shop.sql.gz", gz(t, midStatement)), optOut), agentapi.OutcomeFailed, agentapi.ReasonSQLError,
			[]string{fmt.Sprintf("shop.sql.gz: line %d (byte ", insertLine), " of the decompressed SQL): ERROR 1064 (42000): ", "near '…'", "statement starts: INSERT INTO `orders` VALUES (…)"}},
		{"hand-written SQL, its gzip cut short", fromDir("plain.sql.gz", handWrittenGz[:len(handWrittenGz)/2]), agentapi.OutcomeFailed, agentapi.ReasonTruncatedDump,
			[]string{"plain.sql.gz: ", "the compressed stream ends early"}},
		{"0-byte file", fromDir("shop.sql", nil), agentapi.OutcomeFailed, agentapi.ReasonEmptySource, []string{"shop.sql is empty: 0 bytes"}},
		{"gzip of nothing", fromDir("shop.sql.gz", gz(t, nil)), agentapi.OutcomeFailed, agentapi.ReasonEmptySource,
			[]string{"shop.sql.gz holds no SQL: 0 bytes after decompressing its "}},
		{"glob matching no file", fromDir("shop.dump", shop), agentapi.OutcomeFailed, agentapi.ReasonNoSourceFile, []string{`"*.sql*" matches no file`}},
		{"dump of a database without tables", fromDir("empty.sql", empty), agentapi.OutcomeFailed, agentapi.ReasonNoUserTables, []string{"no table outside mysql"}},
		{"HTTP 200 without a body", fromURL("/empty.sql.gz?X-Amz-Signature=secret"), agentapi.OutcomeFailed, agentapi.ReasonEmptyResponse,
			[]string{"GET " + httpSrv.URL + "/empty.sql.gz?REDACTED: the server answered 200 OK with an empty body"}},
		{"HTTP 404", fromURL("/gone.sql.gz"), agentapi.OutcomeFailed, agentapi.ReasonNoSourceFile, []string{"/gone.sql.gz: 404 Not Found"}},
		{"HTTP headers, then nothing", fromURL("/silent.sql.gz"), agentapi.OutcomeInterrupted, agentapi.ReasonSourceStalled, []string{"no data for " + stall.String()}},
		{"HTTP stalls inside the gzip stream", fromURL("/stops.sql.gz"), agentapi.OutcomeInterrupted, agentapi.ReasonSourceStalled, []string{"stops.sql.gz: line ", "no data for " + stall.String()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			r, _ := importReport(t, ctx, tc.args...)
			t.Logf("%s/%s: %s", r.Outcome, r.Reason, r.Message)
			if r.Outcome != tc.outcome || r.Reason != tc.reason {
				t.Fatalf("report %s/%s, want %s/%s: %s", r.Outcome, r.Reason, tc.outcome, tc.reason, r.Message)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Message, w) {
					t.Errorf("message %q lacks %q", r.Message, w)
				}
			}
			// The rows' binary bytes would show as \xff once escaped.
			if strings.Contains(r.Message, rowSecret) || strings.Contains(r.Message, `\xff`) {
				t.Errorf("message shows row data: %q", r.Message)
			}
			if len(r.Message) > agentapi.MaxMessageBytes {
				t.Errorf("message of %d bytes", len(r.Message))
			}
		})
	}
}

// An import stopped by the pod's SIGTERM reports Interrupted, for the operator to try again, and
// leaves no server running.
func TestImportStoppedBySIGTERMReportsInterrupted(t *testing.T) {
	shop, _ := realDump(t)
	sent := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(shop[:len(shop)/2])
		w.(http.Flusher).Flush()
		close(sent)
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-sent
		time.Sleep(500 * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}()
	r, runDir := importReport(t, ctx, agentapi.Flag(agentapi.FlagSourceURL, srv.URL+"/shop.sql"))
	if r.Outcome != agentapi.OutcomeInterrupted || r.Reason != agentapi.ReasonAgentStopped {
		t.Fatalf("report %+v", r)
	}
	pid, err := os.ReadFile(filepath.Join(runDir, "mysqld.pid"))
	if err != nil {
		t.Fatalf("the server never started: %v", err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err := syscall.Kill(n, 0); err != syscall.ESRCH {
		t.Fatalf("the server (pid %d) outlived the import: %v", n, err)
	}
}

// The header and trailer are found wherever the stream's reads split them.
func TestCompletenessAcrossWrites(t *testing.T) {
	body := strings.Repeat("INSERT INTO t VALUES (1,'x');\n", 500)
	cases := []struct {
		name, sql   string
		tool        string
		withTrailer bool
	}{
		{"mariadb-dump with sandbox line", "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19-11.4.2-MariaDB\n" + body + "-- Dump completed on 2024-05-01 10:00:00\n", "mariadb-dump", true},
		{"mysqldump, no date, no final newline", "-- MySQL dump 10.13  Distrib 8.0.36\n" + body + "\n-- Dump completed", "mysqldump", true},
		{"mysqldump cut short", "-- MySQL dump 10.13  Distrib 8.0.36\n" + body, "mysqldump", false},
		{"trailer quoted earlier, not last", "-- MariaDB dump 10.19\n-- Dump completed\n" + body, "mariadb-dump", false},
		{"hand-written SQL", "CREATE TABLE t (id INT);\n" + body, "", false},
		{"header too late to count", "SELECT 1;\nSELECT 2;\nSELECT 3;\n-- MySQL dump 10.13\n", "", false},
	}
	for _, tc := range cases {
		for _, size := range []int{1, 7, 4096, len(tc.sql)} {
			var c completeness
			for s := tc.sql; len(s) > 0; s = s[min(size, len(s)):] {
				c.Write([]byte(s[:min(size, len(s))]))
			}
			if c.tool() != tc.tool || c.hasTrailer() != tc.withTrailer {
				t.Errorf("%s in writes of %d: tool %q trailer %v, want %q %v", tc.name, size, c.tool(), c.hasTrailer(), tc.tool, tc.withTrailer)
			}
		}
	}
}

// The index knows whether a stream stops inside a statement, and where that statement starts.
func TestLineIndexFindsTheOpenStatement(t *testing.T) {
	cases := []struct {
		name, sql string
		open      bool
		line      int
		start     string
	}{
		{"between statements", "CREATE TABLE t (id INT);\n-- Dumping data\n\nINSERT INTO t VALUES (1);\n", false, 0, ""},
		{"after the last semicolon, no newline", "INSERT INTO t VALUES (1);", false, 0, ""},
		{"inside rows on their own lines", "USE `shop`;\n-- data\nINSERT INTO `t` VALUES\n(1,'secret'),\n(2,'sec", true, 3, "INSERT INTO `t` VALUES (…)"},
		{"in the first line of a statement", "SELECT 1;\nINSERT INTO t VALUES (1,'x'", true, 2, "INSERT INTO t VALUES (…)"},
		{"inside a multi-line CREATE", "DROP TABLE IF EXISTS `t`;\nCREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n", true, 2, "CREATE TABLE `t` ("},
	}
	for _, tc := range cases {
		x := newLineIndex(2) // a ring smaller than the statements: their starts are kept apart
		x.Write([]byte(tc.sql))
		line, _, start, open := x.openStatement()
		if open != tc.open || (open && (line != tc.line || start != tc.start)) {
			t.Errorf("%s: open=%v line %d %q, want open=%v line %d %q", tc.name, open, line, start, tc.open, tc.line, tc.start)
		}
	}
}

// An S3 endpoint that lists nothing under the prefix, and one whose object stops after its
// headers: the same refusals as for the other sources.
func TestImportS3EmptyPrefixAndStalledObject(t *testing.T) {
	stalled := make(chan struct{})
	s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/dumps", "/dumps/":
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>dumps</Name><Prefix>shop/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`)
		case "/dumps/shop/missing.sql.gz":
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>shop/missing.sql.gz</Key><BucketName>dumps</BucketName></Error>`)
		case "/dumps/shop/nightly.sql.gz":
			w.Header().Set("Content-Length", "100000")
			w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stalled:
			}
		default:
			http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusBadRequest)
		}
	}))
	defer func() {
		close(stalled) // first: Close waits for the handlers
		s3.Close()
	}()
	endpoint := []string{
		agentapi.Flag(agentapi.FlagS3Endpoint, strings.TrimPrefix(s3.URL, "http://")),
		"--" + agentapi.FlagS3Insecure, agentapi.Flag(agentapi.FlagS3Region, "us-east-1"),
		agentapi.Flag(agentapi.FlagS3Bucket, "dumps"), agentapi.Flag(agentapi.FlagSourceStallTimeout, "300ms"),
	}
	cases := []struct {
		name    string
		args    []string
		outcome agentapi.Outcome
		reason  string
		want    string
	}{
		{"prefix with no object", []string{agentapi.Flag(agentapi.FlagS3Prefix, "shop/")}, agentapi.OutcomeFailed, agentapi.ReasonNoSourceFile, "s3://dumps/shop/: no object under this prefix"},
		{"key that does not exist", []string{agentapi.Flag(agentapi.FlagS3Key, "shop/missing.sql.gz")}, agentapi.OutcomeFailed, agentapi.ReasonNoSourceFile, "s3://dumps/shop/missing.sql.gz"},
		{"object that stops after its headers", []string{agentapi.Flag(agentapi.FlagS3Key, "shop/nightly.sql.gz")}, agentapi.OutcomeInterrupted, agentapi.ReasonSourceStalled, "no data for 300ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, _ := importReport(t, ctx, append(endpoint, tc.args...)...)
			if r.Outcome != tc.outcome || r.Reason != tc.reason || !strings.Contains(r.Message, tc.want) {
				t.Fatalf("report %s/%s %q, want %s/%s with %q", r.Outcome, r.Reason, r.Message, tc.outcome, tc.reason, tc.want)
			}
		})
	}
}
