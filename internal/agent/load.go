package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// loadError is a failed statement, located in its file.
type loadError struct {
	File   string
	Line   int
	Offset int64
	// Decompressed says that Offset counts bytes of SQL, not of the file.
	Decompressed bool
	// Statement is the start of the statement, its values left out, and StatementLine its first
	// line when the failure is in another.
	Statement     string
	StatementLine int
	Message       string
	cause         error
}

func (e *loadError) Error() string {
	s := fmt.Sprintf("%s: line %d", e.File, e.Line)
	if e.Offset >= 0 {
		s += fmt.Sprintf(" (byte %d", e.Offset)
		if e.Decompressed {
			s += " of the decompressed SQL"
		}
		s += ")"
	}
	s += ": " + e.Message
	switch {
	case e.Statement != "" && e.StatementLine > 0 && e.StatementLine != e.Line:
		s += fmt.Sprintf("; the statement starts at line %d: %s", e.StatementLine, e.Statement)
	case e.Statement != "":
		s += "; statement starts: " + e.Statement
	}
	return s
}

func (e *loadError) Unwrap() error { return e.cause }

// sqlInput is a stream for the client and what the agent requires of it.
type sqlInput struct {
	name string
	r    io.Reader
	// dump marks a source file rather than post-import SQL: it must hold SQL and, when its
	// header names a dump tool, end with that tool's trailer.
	dump                bool
	allowMissingTrailer bool
	// file reads the source under a decompressor; nil when the SQL is the file.
	file *countingReader
	// database is the client's default database; "" for none.
	database string
	// origin places a part of a file, loaded on its own, back in the file for messages.
	origin *sqlOrigin
}

func (in sqlInput) compressed() bool { return in.file != nil }

// clientErrorLine is how the mariadb and mysql clients report a failed statement in batch mode;
// the client's own errors (an unknown command) have no code.
var clientErrorLine = regexp.MustCompile(`(?m)^ERROR(?: (\d+))?(?: \(([0-9A-Z]+)\))? at line (\d+)(?: in file: '[^']*')?: (.*)$`)

// Longest part of a message taken from the server or the client: a failure message as a whole
// must fit agentapi.MaxMessageBytes with the file, line and statement.
const maxQuotedText = 480

// loadStream pipes SQL into the engine's own client: it handles every construct real dumps contain
// (DELIMITER blocks, conditional comments, binary data) exactly as the server's authors intend. The
// stream passes through a line index, so a failure reported as "at line N" can be located and
// quoted, and through a completeness check that keeps only the stream's head and tail.
func loadStream(ctx context.Context, eng engine.MySQLFamily, socket string, in sqlInput) error {
	client, err := engine.FindBinary(eng.ClientBinaries())
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, client,
		"--no-defaults", "--user=root", "--socket="+socket,
		"--binary-mode", "--batch", "--silent",
		"--max-allowed-packet=1073741824", "--default-character-set=utf8mb4",
		// One transaction per table (DDL commits implicitly) lets InnoDB fill an empty table in
		// bulk, sorting its indexes instead of inserting row by row, and skip undo logging. That
		// locks the table until the commit: in a parallel load, another session's chunk of the
		// same table waits for it, however long the first chunk takes.
		"--init-command=SET autocommit=0, unique_checks=0, foreign_key_checks=0, innodb_lock_wait_timeout=86400")
	if in.database != "" {
		cmd.Args = append(cmd.Args, "--database="+in.database)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 64 << 10}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", client, err)
	}
	// abandon stops the client before it sees the end of its input: it would run the statement
	// it holds, a cut one if the source failed.
	abandon := func() {
		_ = cmd.Process.Kill()
		_ = stdin.Close()
		_ = cmd.Wait()
	}
	idx := newLineIndex(8192)
	var tail completeness
	_, copyErr := io.Copy(io.MultiWriter(idx, &tail, stdin), in.r)
	if copyErr != nil && !isBrokenPipe(copyErr) {
		abandon()
		return readFailure(in, idx, copyErr)
	}
	if copyErr == nil {
		if err := in.ended(idx, &tail, func() *sqlFailure { return clientFailure(in, idx, stderr.String()) }); err != nil {
			abandon()
			return err
		}
	}
	if copyErr == nil {
		// Without autocommit the client would roll the last table back when it exits.
		_, copyErr = io.WriteString(stdin, "\n;\nCOMMIT;\n") // the lone ; ends an unterminated last statement
	}
	_ = stdin.Close()
	waitErr := cmd.Wait()
	if f := clientFailure(in, idx, stderr.String()); f != nil {
		return failWith(f.reason, f.loadError)
	}
	if waitErr != nil {
		return failWith(agentapi.ReasonServerError, fmt.Errorf("%s: %s exited with %w: %s", in.name, client, waitErr, firstLine(stderr.String())))
	}
	if copyErr != nil {
		return failWith(agentapi.ReasonServerError, fmt.Errorf("%s: %s stopped reading: %w", in.name, client, copyErr))
	}
	return nil
}

func (in sqlInput) empty() error {
	if !in.compressed() {
		return fmt.Errorf("%s is empty: 0 bytes", in.name)
	}
	return fmt.Errorf("%s holds no SQL: 0 bytes after decompressing its %d bytes", in.name, in.file.n)
}

// streamPosition is how far a client has read a stream, and the statement it is in.
type streamPosition interface {
	position() (lines int, offset int64)
	openStatement() (line int, offset int64, start string, ok bool)
}

// ended checks a dump whose stream ended, before the client sees its end: it must hold SQL and,
// when its header names a dump tool, end with that tool's trailer. failure is the client's own
// error so far, if any.
func (in sqlInput) ended(pos streamPosition, tail *completeness, failure func() *sqlFailure) error {
	if !in.dump {
		return nil
	}
	lines, offset := pos.position()
	if offset == 0 {
		return failWith(agentapi.ReasonEmptySource, in.empty())
	}
	tool, trailer := tail.header()
	if tool == "" || in.allowMissingTrailer || tail.hasTrailer() {
		return nil
	}
	t := &truncatedDump{file: in.name, tool: tool, trailer: trailer, sqlBytes: offset, fileBytes: -1, line: lines}
	if in.compressed() {
		t.fileBytes = in.file.n
	}
	t.stmtLine, t.stmtOffset, t.statement, t.midStmt = pos.openStatement()
	if f := failure(); f != nil {
		t.clientErr = fmt.Sprintf("line %d: %s", f.Line, f.Message)
	}
	return failWith(agentapi.ReasonTruncatedDump, t)
}

// readFailure locates a source that failed while the client was reading it.
func readFailure(in sqlInput, pos streamPosition, err error) error {
	reason, msg := readFailureReason(err), "reading the source: "+err.Error()
	if in.compressed() && in.file.err == nil {
		// The source was fine, what it sent does not decompress.
		msg = "corrupt compressed data: " + err.Error()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			reason, msg = agentapi.ReasonTruncatedDump, "the compressed stream ends early: the file is truncated"
		}
	}
	lines, offset := pos.position()
	e := &loadError{
		File: in.name, Line: lines, Offset: offset, Decompressed: in.compressed(),
		Message: escapeNonPrintable(msg), cause: err,
	}
	e.StatementLine, _, e.Statement, _ = pos.openStatement()
	return failWith(reason, e)
}

// sqlFailure is a failure the client reported, with its reason.
type sqlFailure struct {
	*loadError
	reason string
}

// clientFailure reads the client's error from its output: the server's code and text with the
// values it quotes left out, located by line in the file.
func clientFailure(in sqlInput, idx *lineIndex, stderr string) *sqlFailure {
	m := clientErrorLine.FindStringSubmatch(stderr)
	if m == nil {
		return nil
	}
	code, state, text := m[1], m[2], m[4]
	line, _ := strconv.Atoi(m[3])
	head, reason := "ERROR", agentapi.ReasonSQLError
	if code != "" {
		head += " " + code
		text = elideServerText(text)
		// 2000 and up are the client's codes: it lost the server, which is not the SQL's fault.
		if n, _ := strconv.Atoi(code); n >= 2000 && n < 3000 {
			reason = agentapi.ReasonServerError
		}
	} else {
		text = elideQuoted(text)
	}
	if state != "" {
		head += " (" + state + ")"
	}
	off, stmt := idx.at(line)
	line, off = in.origin.place(line, off)
	return &sqlFailure{reason: reason, loadError: &loadError{
		File: in.name, Line: line, Offset: off, Decompressed: in.compressed(),
		Statement: stmt, Message: head + ": " + clip(text, maxQuotedText),
	}}
}

// firstLine is what the agent shows of output it does not understand: one line, quotes elided.
func firstLine(out string) string {
	out = strings.TrimSpace(out)
	if i := strings.IndexByte(out, '\n'); i >= 0 {
		out = out[:i]
	}
	return clip(elideQuoted(out), maxQuotedText)
}

func isBrokenPipe(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "broken pipe") || errors.Is(err, io.ErrClosedPipe))
}

// limitedBuffer keeps the first max bytes: a client that prints an error per line of a huge
// broken dump must not exhaust the agent's memory.
type limitedBuffer struct {
	mu  sync.Mutex
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}
