package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// mydumper writes one directory per dump: `metadata`, then per database `db-schema-create.sql`,
// per table `db.t-schema.sql` and its rows in `db.t.sql` or chunks `db.t.00000.sql` (gzip with
// --compress), views as a stand-in table plus `db.v-schema-view.sql`, `db.t-schema-triggers.sql`,
// and routines and events in `db-schema-post.sql`. It writes the "Finished dump at" line of
// `metadata` last.
const mydumperFinished = "Finished dump at"

// mydumperDump is a mydumper directory's files in the order myloader loads them: databases and
// tables one after the other, rows in parallel, then routines, views and triggers.
type mydumperDump struct {
	dir      string
	creates  []dumpFile
	schemas  []dumpFile
	rows     []dumpFile
	post     []dumpFile
	views    []dumpFile
	triggers []dumpFile
	metadata *dumpFile
}

// A chunk of a table's rows: `db.t.00001`.
var mydumperChunk = regexp.MustCompile(`\.[0-9]{5}$`)

// mydumperDir is the source's directory when the source path names one rather than files.
func (c sourceConfig) mydumperDir() (string, bool) {
	if c.glob == "" || strings.ContainsAny(c.glob, "*?[") {
		return "", false
	}
	st, err := os.Stat(filepath.Join(c.dir, c.glob))
	return c.glob, err == nil && st.IsDir()
}

// parseMydumper sorts a directory's files by their part in the load, and checks that every table
// with rows has its schema: myloader would load the rows into nothing.
func parseMydumper(dir string, files []dumpFile) (*mydumperDump, error) {
	d := &mydumperDump{dir: dir}
	tables := map[string]bool{}
	partial := false
	for i, f := range files {
		base := withoutCompression(filepath.Base(f.Name))
		switch {
		case filepath.Base(f.Name) == "metadata":
			d.metadata = &files[i]
		case filepath.Base(f.Name) == "metadata.partial":
			partial = true
		case !strings.HasSuffix(base, ".sql"):
			continue
		default:
			name := strings.TrimSuffix(base, ".sql")
			switch {
			case strings.HasSuffix(name, "-schema-create"):
				d.creates = append(d.creates, f)
			case strings.HasSuffix(name, "-schema-post"):
				d.post = append(d.post, f)
			case strings.HasSuffix(name, "-schema-view"):
				d.views = append(d.views, f)
			case strings.HasSuffix(name, "-schema-triggers"):
				d.triggers = append(d.triggers, f)
			case strings.HasSuffix(name, "-schema"):
				d.schemas = append(d.schemas, f)
				tables[strings.TrimSuffix(name, "-schema")] = true
			default:
				d.rows = append(d.rows, f)
			}
		}
	}
	if d.metadata == nil && partial {
		return nil, failWith(agentapi.ReasonTruncatedDump, fmt.Errorf("mydumper directory %s is incomplete: it has metadata.partial, which mydumper renames to metadata when the dump finishes", dir))
	}
	if d.metadata == nil {
		return nil, failWith(agentapi.ReasonNoSourceFile, fmt.Errorf("source path %s is a directory but no mydumper dump: it has no metadata file", dir))
	}
	for _, f := range d.rows {
		table := mydumperTable(f.Name)
		if !tables[table] {
			return nil, failWith(agentapi.ReasonNoSourceFile, fmt.Errorf("mydumper directory %s: %s holds rows of table %s, but its schema file %s-schema.sql is missing",
				dir, filepath.Base(f.Name), table, table))
		}
	}
	return d, nil
}

// withoutCompression is a file's name without the extension of its compression.
func withoutCompression(name string) string {
	for _, ext := range []string{".gz", ".zst", ".zstd"} {
		if strings.HasSuffix(name, ext) {
			return strings.TrimSuffix(name, ext)
		}
	}
	return name
}

// mydumperTable is the `db.table` a rows file belongs to.
func mydumperTable(name string) string {
	base := strings.TrimSuffix(withoutCompression(filepath.Base(name)), ".sql")
	return mydumperChunk.ReplaceAllString(base, "")
}

// mydumperDatabase is the database a file's statements run in: its name up to the first dot or
// to the -schema suffix.
func mydumperDatabase(name string) string {
	base := filepath.Base(name)
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	if i := strings.Index(base, "-schema"); i >= 0 {
		base = base[:i]
	}
	return base
}

// checkFinished reads the metadata: without its last line, mydumper stopped before the end.
func (d *mydumperDump) checkFinished(ctx context.Context) error {
	body, _, err := d.metadata.Open(ctx)
	if err != nil {
		return withDefaultReason(agentapi.ReasonSourceError, fmt.Errorf("open %s: %w", d.metadata.Name, err))
	}
	defer body.Close()
	meta, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return failWith(readFailureReason(err), fmt.Errorf("read %s: %w", d.metadata.Name, err))
	}
	if !bytes.Contains(meta, []byte(mydumperFinished)) {
		return failWith(agentapi.ReasonTruncatedDump, fmt.Errorf("mydumper directory %s is incomplete: %s has no '%s' line, which mydumper writes when every table is out",
			d.dir, d.metadata.Name, mydumperFinished))
	}
	return nil
}

// loadMydumper loads a mydumper directory as myloader does: databases and schemas one by one, the
// rows files in parallel sessions, then routines and events, views, and triggers.
func loadMydumper(ctx context.Context, eng engine.MySQLFamily, srv *server, dir string, files []dumpFile, t *tracker, total *int64, workers int) error {
	d, err := parseMydumper(dir, files)
	if err != nil {
		return err
	}
	if err := d.checkFinished(ctx); err != nil {
		return err
	}
	load := func(ctx context.Context, f dumpFile, database string) error {
		in, closeSQL, err := openSQL(ctx, f, t, total)
		if err != nil {
			return err
		}
		defer closeSQL()
		in.database = database
		return loadStream(ctx, eng, srv.socket, in)
	}
	serially := func(files []dumpFile, inDatabase bool) error {
		for _, f := range files {
			db := ""
			if inDatabase {
				db = mydumperDatabase(f.Name)
			}
			if err := load(ctx, f, db); err != nil {
				return err
			}
		}
		return nil
	}
	// mydumper writes routines, views and triggers without DELIMITER: a statement ends with a line
	// ending in ';', and a routine's body keeps its semicolons, as myloader sends it.
	statementwise := func(files []dumpFile) error {
		for _, f := range files {
			in, closeSQL, err := openSQL(ctx, f, t, total)
			if err != nil {
				return err
			}
			err = execByLine(ctx, srv, in, mydumperDatabase(f.Name))
			closeSQL()
			if err != nil {
				return err
			}
		}
		return nil
	}
	log.Printf("loading mydumper directory %s: %d schemas, %d rows files in %d sessions", dir, len(d.schemas), len(d.rows), workers)
	if err := serially(d.creates, false); err != nil {
		return err
	}
	if err := serially(d.schemas, true); err != nil {
		return err
	}
	// The rows go in chunks of a few MB, each its own transaction, like a single file's: one
	// transaction per file would hold the table's lock (InnoDB's bulk insert into an empty table
	// takes it) while the table's other files wait.
	pool := newLoadPool(ctx, max(1, workers))
	var later []sqlInput
	for _, f := range d.rows {
		in, closeSQL, err := openSQL(ctx, f, t, total)
		if err != nil {
			pool.abort()
			return err
		}
		in.database = mydumperDatabase(f.Name)
		s := &splitLoader{ctx: ctx, eng: eng, socket: srv.socket, in: in, pool: pool}
		err = s.readRows(bufio.NewReaderSize(in.r, 1<<20))
		closeSQL()
		if err != nil {
			pool.abort()
			var failure *importFailure
			if errors.As(err, &failure) {
				return err
			}
			return failWith(readFailureReason(err), fmt.Errorf("%s: line %d: %w", f.Name, s.line, err))
		}
		later = append(later, s.later...)
	}
	if err := pool.wait(); err != nil {
		return err
	}
	for _, in := range later {
		if err := loadStream(ctx, eng, srv.socket, in); err != nil {
			return err
		}
	}
	for _, files := range [][]dumpFile{d.post, d.views, d.triggers} {
		if err := statementwise(files); err != nil {
			return err
		}
	}
	return nil
}

// execByLine runs a file's statements one by one in one session, each ending with a line that
// ends in ';' and a newline. A failure names the statement's first line and offset in the file.
func execByLine(ctx context.Context, srv *server, in sqlInput, database string) error {
	db, err := srv.rootDB()
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect to load %s: %w", in.name, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "USE "+quoteIdentifier(database)); err != nil {
		return fmt.Errorf("%s: use database %s: %w", in.name, database, err)
	}
	r := bufio.NewReaderSize(in.r, 64<<10)
	var stmt []byte
	line, stmtLine := 0, 1
	var offset, stmtOffset int64
	for {
		l, readErr := r.ReadBytes('\n')
		if len(l) > 0 {
			line++
			if len(bytes.TrimSpace(stmt)) == 0 {
				stmt, stmtLine, stmtOffset = stmt[:0], line, offset
			}
			stmt = append(stmt, l...)
			offset += int64(len(l))
		}
		// myloader's own rule: a line ending in "; " is inside a routine's body.
		if (bytes.HasSuffix(l, []byte(";\n")) || readErr == io.EOF) && len(bytes.TrimSpace(stmt)) > 0 {
			if _, err := conn.ExecContext(ctx, string(stmt)); err != nil {
				e := &loadError{File: in.name, Line: stmtLine, Offset: stmtOffset, Decompressed: in.compressed(),
					Statement: elideStatement(stmt[:min(len(stmt), statementPrefix)], len(stmt) > statementPrefix),
					Message:   clip(serverErrorText(err), maxQuotedText), cause: err}
				return failWith(agentapi.ReasonSQLError, e)
			}
			stmt = stmt[:0]
		}
		if readErr == io.EOF {
			return nil
		}
		if readErr != nil {
			return failWith(readFailureReason(readErr), fmt.Errorf("%s: line %d: %w", in.name, line, readErr))
		}
	}
}

// serverErrorText is a server error as the client prints it, with the values it quotes left out.
func serverErrorText(err error) string {
	var m *mysql.MySQLError
	if errors.As(err, &m) {
		return fmt.Sprintf("ERROR %d (%s): %s", m.Number, string(m.SQLState[:]), elideServerText(m.Message))
	}
	return elideQuoted(err.Error())
}

func quoteIdentifier(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}
