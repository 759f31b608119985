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

	"github.com/myaas/myaas/internal/engine"
)

// loadError is a failed statement, located in its file.
type loadError struct {
	File      string
	Line      int
	Offset    int64
	Statement string
	Message   string
}

func (e *loadError) Error() string {
	s := fmt.Sprintf("%s: line %d", e.File, e.Line)
	if e.Offset >= 0 {
		s += fmt.Sprintf(" (byte %d)", e.Offset)
	}
	s += ": " + e.Message
	if e.Statement != "" {
		s += "; statement starts: " + e.Statement
	}
	return s
}

// clientErrorLine is how the mariadb and mysql clients report a failed statement in batch mode.
var clientErrorLine = regexp.MustCompile(`(?m)^(ERROR \d+(?: \([0-9A-Z]+\))?) at line (\d+)(?: in file: '[^']*')?: (.*)$`)

// loadStream pipes SQL into the engine's own client: it handles every construct real dumps contain
// (DELIMITER blocks, conditional comments, binary data) exactly as the server's authors intend. The
// stream passes through a line index, so a failure reported as "at line N" can be located and
// quoted.
func loadStream(ctx context.Context, eng engine.Engine, socket, name string, sqlStream io.Reader) error {
	client, err := engine.FindBinary(eng.ClientBinaries())
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, client,
		"--no-defaults", "--user=root", "--socket="+socket,
		"--binary-mode", "--batch", "--silent",
		"--max-allowed-packet=1073741824", "--default-character-set=utf8mb4",
		// One transaction per table (DDL commits implicitly) lets InnoDB fill an empty table in
		// bulk, sorting its indexes instead of inserting row by row, and skip undo logging.
		"--init-command=SET autocommit=0, unique_checks=0, foreign_key_checks=0")
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 64 << 10}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", client, err)
	}
	idx := newLineIndex(8192)
	_, copyErr := io.Copy(io.MultiWriter(stdin, idx), sqlStream)
	if copyErr != nil && !isBrokenPipe(copyErr) {
		// The source failed (truncated or corrupt file): the statement in flight must not run.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return &loadError{File: name, Line: idx.lines, Offset: idx.offset, Message: describeReadError(name, copyErr), Statement: idx.lastStatement()}
	}
	if copyErr == nil {
		// Without autocommit the client would roll the last table back when it exits.
		_, copyErr = io.WriteString(stdin, "\n;\nCOMMIT;\n") // the lone ; ends an unterminated last statement
	}
	_ = stdin.Close()
	waitErr := cmd.Wait()
	if m := clientErrorLine.FindStringSubmatch(stderr.String()); m != nil {
		line, _ := strconv.Atoi(m[2])
		off, stmt := idx.at(line)
		return &loadError{File: name, Line: line, Offset: off, Statement: stmt, Message: m[1] + ": " + m[3]}
	}
	if waitErr != nil {
		return fmt.Errorf("%s: %s exited with %w: %s", name, client, waitErr, strings.TrimSpace(stderr.String()))
	}
	if copyErr != nil {
		return fmt.Errorf("%s: %s stopped reading: %w", name, client, copyErr)
	}
	return nil
}

func isBrokenPipe(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "broken pipe") || errors.Is(err, io.ErrClosedPipe))
}

// lineIndex remembers where each of the most recent lines starts and how it begins.
type lineIndex struct {
	mu      sync.Mutex
	lines   int   // lines started so far (1-based number of the current line)
	offset  int64 // bytes seen
	ring    []lineStart
	atStart bool
}

type lineStart struct {
	line   int
	offset int64
	prefix []byte
}

const statementPrefix = 120

func newLineIndex(size int) *lineIndex {
	return &lineIndex{ring: make([]lineStart, size), atStart: true}
}

func (x *lineIndex) Write(b []byte) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		if x.atStart {
			x.lines++
			slot := &x.ring[x.lines%len(x.ring)]
			slot.line, slot.offset, slot.prefix = x.lines, x.offset, slot.prefix[:0]
			x.atStart = false
		}
		slot := &x.ring[x.lines%len(x.ring)]
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i+1]
			x.atStart = true
		}
		if room := statementPrefix - len(slot.prefix); room > 0 {
			slot.prefix = append(slot.prefix, chunk[:min(room, len(chunk))]...)
		}
		x.offset += int64(len(chunk))
		b = b[len(chunk):]
	}
	return n, nil
}

// at returns the byte offset and the beginning of line n, if it is still remembered.
func (x *lineIndex) at(n int) (int64, string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	slot := x.ring[n%len(x.ring)]
	if n <= 0 || slot.line != n {
		return -1, ""
	}
	return slot.offset, cleanStatement(slot.prefix)
}

func (x *lineIndex) lastStatement() string {
	_, s := x.at(x.lines)
	return s
}

func cleanStatement(b []byte) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	if len(b) >= statementPrefix {
		s += "…"
	}
	return s
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
