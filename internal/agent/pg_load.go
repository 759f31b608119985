package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// pgImportDatabase is the database plain dumps load into and archives restore into, unless a dump
// creates its own (pg_dump --create, pg_dumpall): the database every PostgreSQL server has.
const pgImportDatabase = "postgres"

// pgClientArgs log in as the superuser through the import server's socket.
func (s *pgServer) clientArgs() []string {
	return []string{"--host=" + s.socketDir, "--port=" + strconv.Itoa(int(s.eng.Port())), "--username=" + engine.PostgresSuperuser, "--no-password"}
}

// pgLoad is one plain-SQL load through psql.
type pgLoad struct {
	srv *pgServer
	in  sqlInput
	// ensured are the roles already made sure of, across the files of an import.
	ensured map[string]bool
	// database psql starts in; the import's own database when empty. A dump names its own with
	// \connect, post-import SQL runs where the dumps left their data.
	database string
}

// load pipes SQL into psql, which runs it exactly as a restore by hand would (COPY rows, psql's
// own commands, dollar-quoted bodies). psql stops at the first error and names its line; the
// stream passes through pgScript to quote that line's statement, and through a completeness
// check for a dump cut short.
func (l pgLoad) load(ctx context.Context) error {
	in := l.in
	r := bufio.NewReaderSize(in.r, 1<<20)
	database := l.database
	if database == "" {
		database = pgImportDatabase
	}
	args := append(l.srv.clientArgs(), "--dbname="+database, "--no-psqlrc", "--quiet",
		"--set=ON_ERROR_STOP=1", "--file=-")
	cmd, err := pgCommand(ctx, l.srv.eng, nil, "psql", args...)
	if err != nil {
		return err
	}
	stderr := &psqlErrors{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start psql: %w", err)
	}
	// abandon stops psql before it sees the end of its input, which would commit what it holds.
	abandon := func() {
		_ = cmd.Process.Kill()
		_ = stdin.Close()
		_ = cmd.Wait()
	}
	script := newPGScript()
	var tail completeness
	tx := &pgTransactions{}
	copyErr := l.feed(r, script, &tail, tx, stdin)
	if copyErr != nil && !isBrokenPipe(copyErr) {
		abandon()
		return readFailure(in, script, copyErr)
	}
	if copyErr == nil {
		if err := in.ended(script, &tail, func() *sqlFailure { return psqlFailure(in, script, stderr.String()) }); err != nil {
			abandon()
			return err
		}
		// Only now, the stream being whole: psql would roll back what it holds at its end.
		_, copyErr = io.WriteString(stdin, script.close()+tx.end())
	}
	_ = stdin.Close()
	waitErr := cmd.Wait()
	if f := psqlFailure(in, script, stderr.String()); f != nil {
		return failWith(f.reason, f.loadError)
	}
	if waitErr != nil {
		return failWith(agentapi.ReasonServerError, fmt.Errorf("%s: psql exited with %w: %s", in.name, waitErr, firstLine(stderr.String())))
	}
	if copyErr != nil {
		return failWith(agentapi.ReasonServerError, fmt.Errorf("%s: psql stopped reading: %w", in.name, copyErr))
	}
	return nil
}

// feed copies the stream to psql line by line, with what the agent adds on the same line, so
// that psql's line numbers stay the file's: pg_dump's \restrict and \unrestrict (newer than
// psql 15) become blank; the statements run in transactions (pgTransactions); and a statement
// naming a role the dump does not create gets that role, unable to log in, created first. Creating roles as they are named, rather than from a scan
// before the load, keeps the load a single pass over a stream that may come from HTTP or S3.
func (l pgLoad) feed(r *bufio.Reader, script *pgScript, tail *completeness, tx *pgTransactions, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	whole := true // the next read starts a line
	for {
		if whole && script.inCopy() {
			// COPY rows pass in blocks, counted but not looked at line by line: they are most of
			// a dump, and the agent shares the pod's CPUs with the server.
			if block := copyRows(r); len(block) > 0 {
				script.rows(block)
				_, _ = tail.Write(block)
				if _, err := bw.Write(block); err != nil {
					return err
				}
				_, _ = r.Discard(len(block))
				continue
			}
		}
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 {
			_, _ = tail.Write(chunk)
			out := chunk
			if !whole {
				script.more(chunk)
			} else if errors.Is(err, bufio.ErrBufferFull) {
				// A line longer than the buffer: a COPY row or a literal, never a role's statement.
				script.line(chunk)
			} else {
				switch script.line(chunk) {
				case lineMeta:
					t := bytes.TrimLeft(chunk, " \t")
					switch {
					case bytes.HasPrefix(t, []byte(`\restrict`)) || bytes.HasPrefix(t, []byte(`\unrestrict`)):
						out = []byte("\n")
					case pgConnect.Match(t):
						out = append([]byte(tx.leave()), chunk...)
					}
				case lineStatement:
					out = l.withRoles(chunk)
					if m := createRole.FindSubmatch(chunk); m != nil {
						// pg_dumpall creates every role, the bootstrap superuser too, which exists.
						out = append([]byte(ensureRoleSQL(roleName(m[1]))), '\n')
					}
					out = append([]byte(tx.before(chunk)), out...)
				}
			}
			if _, werr := bw.Write(out); werr != nil {
				return werr
			}
			whole = !errors.Is(err, bufio.ErrBufferFull)
		}
		switch {
		case errors.Is(err, io.EOF):
			return bw.Flush()
		case err != nil && !errors.Is(err, bufio.ErrBufferFull):
			_ = bw.Flush()
			return err
		}
	}
}

// copyRows is the longest run of whole COPY rows at the start of what r holds, before the \.
// that ends them; empty when r holds no whole row (a row longer than the buffer, or the \.).
func copyRows(r *bufio.Reader) []byte {
	if r.Buffered() == 0 {
		_, _ = r.Peek(1)
	}
	buf, _ := r.Peek(r.Buffered())
	end := bytes.LastIndexByte(buf, '\n') + 1
	if bytes.HasPrefix(buf, []byte(`\.`)) {
		return nil
	}
	// A line starting with \. ends the rows (pg_dump writes a row's backslashes doubled).
	if i := bytes.Index(buf[:end], []byte("\n\\.")); i >= 0 {
		return buf[:i+1]
	}
	return buf[:end]
}

func (l pgLoad) withRoles(line []byte) []byte {
	var pre []byte
	for _, name := range referencedRoles(line) {
		if l.ensured[name] || name == engine.PostgresSuperuser || strings.Contains(name, "$myaas$") {
			continue
		}
		l.ensured[name] = true
		pre = append(pre, ensureRoleSQL(name)...)
	}
	if pre == nil {
		return line
	}
	return append(pre, line...)
}

var createRole = regexp.MustCompile(`^CREATE ROLE (` + pgName + `);\s*$`)

// pgTransactions groups a plain dump's statements into transactions: with wal_level=minimal,
// COPY into a table created in the same transaction writes no WAL (the table's files are synced
// at commit instead, a no-op with fsync off), which halves what a load writes. Statements that
// cannot run in a transaction (CREATE DATABASE in a pg_dump --create dump) and psql's \connect
// end the transaction; the next statement begins another. BEGIN and COMMIT go on the lines of
// the statements around them, as psql runs SQL and a backslash command on one line in order.
type pgTransactions struct{ open bool }

var (
	pgConnect        = regexp.MustCompile(`^\\(connect|c)(\s|$)`)
	pgOutsideOfBlock = regexp.MustCompile(`(?i)^\s*((CREATE|DROP)\s+(DATABASE|TABLESPACE)\b|ALTER\s+SYSTEM\b|ALTER\s+DATABASE\b.*\bSET\s+TABLESPACE\b|(CREATE\s+(UNIQUE\s+)?INDEX|REINDEX)\b.*\bCONCURRENTLY\b|VACUUM\b|CLUSTER\b|BEGIN\b|START\s+TRANSACTION\b|COMMIT\b|END\b|ROLLBACK\b|ABORT\b)`)
)

// before is what goes before the statement starting on line.
func (t *pgTransactions) before(line []byte) string {
	if pgOutsideOfBlock.Match(line) {
		return t.leave()
	}
	if t.open {
		return ""
	}
	t.open = true
	return "BEGIN; "
}

// leave ends the open transaction, if any.
func (t *pgTransactions) leave() string {
	if !t.open {
		return ""
	}
	t.open = false
	return "COMMIT; "
}

// end is what the stream ends with: the commit of the last transaction, after a ; that closes a
// last statement without one.
func (t *pgTransactions) end() string {
	if !t.open {
		return ""
	}
	t.open = false
	return ";\nCOMMIT;\n"
}

var (
	// psql prints the server's errors, and its own, with the line of the input they stopped at.
	psqlErrorLine = regexp.MustCompile(`^psql:<stdin>:(\d+): (?:(ERROR|FATAL|PANIC):\s+)?(.*)$`)
	psqlChatter   = regexp.MustCompile(`^psql:<stdin>:\d+: (NOTICE|WARNING|INFO|LOG|DEBUG):`)
	// The server's context of a failed COPY counts its rows from the COPY statement.
	copyContext = regexp.MustCompile(`^CONTEXT:\s+COPY (\S+), line (\d+)`)
)

// psqlFailure reads psql's first error: the server's message, its values left out, located at the
// line of the file it is about; the row's own line for a COPY row.
func psqlFailure(in sqlInput, script *pgScript, stderr string) *sqlFailure {
	lines := strings.Split(stderr, "\n")
	for i, ln := range lines {
		m := psqlErrorLine.FindStringSubmatch(ln)
		if m == nil || psqlChatter.MatchString(ln) {
			continue
		}
		line, _ := strconv.Atoi(m[1])
		severity, text := m[2], m[3]
		reason := agentapi.ReasonSQLError
		head := "psql"
		if severity != "" {
			head = severity
			text = elidePGMessage(text)
			if severity != "ERROR" {
				reason = agentapi.ReasonServerError
			}
		} else {
			text = elideQuoted(text)
		}
		_, stmtLine, stmt := script.at(line)
		for _, more := range lines[i+1:] {
			if strings.HasPrefix(more, "psql:") {
				break
			}
			if c := copyContext.FindStringSubmatch(more); c != nil && stmtLine > 0 {
				// psql names the line ending the rows; the server, the row within them.
				row, _ := strconv.Atoi(c[2])
				line = stmtLine + row
				text += fmt.Sprintf(" (COPY %s, row %d)", c[1], row)
			}
		}
		off, _, _ := script.at(line)
		line, off = in.origin.place(line, off)
		stmtLine, _ = in.origin.place(stmtLine, -1)
		e := &loadError{File: in.name, Line: line, Offset: off, Decompressed: in.compressed(),
			Statement: stmt, StatementLine: stmtLine, Message: head + ": " + clip(text, maxQuotedText)}
		return &sqlFailure{reason: reason, loadError: e}
	}
	return nil
}

var (
	// The server quotes a value after a colon at the end of its message ("invalid input syntax
	// for type integer: "x""), the token it stopped at after "at or near", and raw bytes.
	pgTrailingValue = regexp.MustCompile(`: ".*$`)
	pgNearToken     = regexp.MustCompile(`at or near "(?:[^"]|"")*"?`)
	pgBytes         = regexp.MustCompile(`: 0x[0-9a-fA-F]{2}(?: 0x[0-9a-fA-F]{2})*`)
)

// elidePGMessage removes the values a PostgreSQL error quotes; the names of relations, columns,
// constraints and roles it quotes the same way stay.
func elidePGMessage(s string) string {
	s = pgTrailingValue.ReplaceAllString(s, `: "`+elision+`"`)
	s = pgNearToken.ReplaceAllString(s, `at or near "`+elision+`"`)
	s = pgBytes.ReplaceAllString(s, ": "+elision)
	return escapeNonPrintable(s)
}

// psqlErrors keeps what psql prints but its notices and warnings, which a dump may cause by the
// thousand before the one error that matters.
type psqlErrors struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	max     int
	skip    bool // the last psql: line was chatter, and so are the lines continuing it
}

func (p *psqlErrors) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		p.keep(p.partial[:i+1])
		p.partial = p.partial[i+1:]
	}
	if len(p.partial) > 4096 {
		p.keep(p.partial)
		p.partial = p.partial[:0]
	}
	return len(b), nil
}

func (p *psqlErrors) keep(line []byte) {
	if bytes.HasPrefix(line, []byte("psql:")) {
		p.skip = psqlChatter.Match(line)
	}
	if !p.skip && p.buf.Len()+len(line) <= p.max {
		p.buf.Write(line)
	}
}

func (p *psqlErrors) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String() + string(p.partial)
}

// pgArchiveFormat names the pg_dump archive format a file starts with: "custom", "tar", or ""
// for plain SQL.
func pgArchiveFormat(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("PGDMP")):
		return "custom"
	case len(head) >= 262 && string(head[257:262]) == "ustar" && bytes.Contains(head[:100], []byte("toc.dat")):
		return "tar"
	}
	return ""
}

// pgRestore restores an archive (custom, tar or directory) with pg_restore, into the database it
// was dumped from, as a pg_dump --create plain dump does. Owners and grants are left out: the roles
// they name exist on the source server, not here, and no clone user is one of them.
func pgRestore(ctx context.Context, srv *pgServer, name, path, format string, jobs int) error {
	database, err := archiveDatabase(ctx, srv, name, path, format)
	if err != nil {
		return err
	}
	args := append(srv.clientArgs(), "--no-owner", "--no-privileges", "--no-tablespaces", "--exit-on-error")
	exists := false
	if dbs, err := srv.databases(ctx); err == nil {
		exists = slices.Contains(dbs, database)
	}
	if exists {
		args = append(args, "--dbname="+database)
	} else {
		args = append(args, "--create", "--dbname="+pgImportDatabase)
	}
	if jobs > 1 && format != "tar" {
		// Parallel restore needs to seek: custom and directory archives in a file only.
		args = append(args, "--jobs="+strconv.Itoa(jobs))
	}
	args = append(args, path)
	cmd, err := pgCommand(ctx, srv.eng, nil, "pg_restore", args...)
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 64 << 10}
	if err := cmd.Run(); err != nil {
		return pgRestoreFailure(name, path, format, stderr.String(), err)
	}
	return nil
}

var archiveDBName = regexp.MustCompile(`(?m)^;\s+dbname: (.+)$`)

// archiveDatabase is the database an archive was dumped from, which its table of contents names.
func archiveDatabase(ctx context.Context, srv *pgServer, name, path, format string) (string, error) {
	cmd, err := pgCommand(ctx, srv.eng, nil, "pg_restore", "--list", path)
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 64 << 10}
	out, err := cmd.Output()
	if err != nil {
		return "", failWith(agentapi.ReasonSourceError, fmt.Errorf("%s: not a readable %s archive: %s", name, format, firstLine(stderr.String())))
	}
	m := archiveDBName.FindSubmatch(out)
	if m == nil {
		return pgImportDatabase, nil
	}
	return string(bytes.TrimSpace(m[1])), nil
}

var (
	pgRestoreError = regexp.MustCompile(`(?m)^pg_restore: error: (.*)$`)
	pgRestoreEntry = regexp.MustCompile(`(?m)^pg_restore: from TOC entry (\d+); \d+ \d+ (.*?)(?: \S+)?$`)
	pgRestoreEOF   = regexp.MustCompile(`could not read from input file: end of file|unexpected end of file|could not find block ID`)
)

// pgRestoreFailure reads pg_restore's first error: the archive entry it was restoring (an object's
// kind and name) and the server's message, values left out. A custom archive's table of contents
// comes first and its data after: a cut archive lists fine and fails at the first missing byte.
func pgRestoreFailure(name, path, format, stderr string, err error) error {
	msg := firstLine(stderr)
	if m := pgRestoreError.FindStringSubmatch(stderr); m != nil {
		msg = strings.TrimPrefix(m[1], "could not execute query: ")
		msg = elidePGMessage(strings.TrimSpace(msg))
	}
	where := name
	if m := pgRestoreEntry.FindStringSubmatch(stderr); m != nil {
		where += fmt.Sprintf(": TOC entry %s (%s)", m[1], elideQuoted(m[2]))
	}
	if pgRestoreEOF.MatchString(stderr) {
		size := int64(-1)
		if st, err := os.Stat(path); err == nil && !st.IsDir() {
			size = st.Size()
		}
		return failWith(agentapi.ReasonTruncatedDump, fmt.Errorf("truncated: the %s archive %s ends after %d bytes, before its data does: pg_restore: %s",
			format, where, size, clip(msg, maxQuotedText)))
	}
	reason := agentapi.ReasonSQLError
	if !strings.Contains(stderr, "could not execute query") && !strings.Contains(stderr, "COPY failed") {
		reason = agentapi.ReasonSourceError
	}
	return failWith(reason, fmt.Errorf("%s: pg_restore (%s archive) failed: %s (%w)", where, format, clip(msg, maxQuotedText), err))
}

// spool copies a streamed archive into a file beside the datadir, where pg_restore can seek in it.
func spool(dir, name string, r io.Reader) (string, error) {
	f, err := os.CreateTemp(dir, ".myaas-restore-*")
	if err != nil {
		return "", fmt.Errorf("spool %s: %w", name, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("spool %s: %w", name, err)
	}
	return f.Name(), nil
}

// archiveDirs are the directory-format archives among a source's files (a toc.dat in a mounted
// volume), each loaded whole by pg_restore; files inside them are the archive's, not dumps.
func archiveDirs(files []dumpFile) (dirs map[string]bool, rest []dumpFile) {
	dirs = map[string]bool{}
	for _, f := range files {
		if f.Path != "" && filepath.Base(f.Path) == "toc.dat" {
			dirs[filepath.Dir(f.Path)] = true
		}
	}
	for _, f := range files {
		if f.Path != "" && dirs[filepath.Dir(f.Path)] && filepath.Base(f.Path) != "toc.dat" {
			continue
		}
		rest = append(rest, f)
	}
	return dirs, rest
}
