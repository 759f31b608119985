package agent

import (
	"bytes"
	"sync"
)

// lineIndex remembers where each of the most recent lines starts and how it begins, and where the
// statements start: mariadb-dump writes an extended INSERT's rows one per line, so the line a
// stream stops in is a row, and only the statement's first line says what it is.
type lineIndex struct {
	mu      sync.Mutex
	lines   int   // lines started so far (1-based number of the current line)
	offset  int64 // bytes seen
	ring    []lineStart
	atStart bool
	// lastByte is the last byte of the current line other than blanks.
	lastByte byte
	// inStatement says that the last line holding SQL did not end with a semicolon.
	inStatement bool
	// stmts are the first lines of the latest statements: a statement of many lines outlives
	// its first line in ring.
	stmts []lineStart
}

type lineStart struct {
	line   int
	offset int64
	prefix []byte
}

const statementPrefix = 120

func newLineIndex(size int) *lineIndex {
	return &lineIndex{ring: make([]lineStart, size), stmts: make([]lineStart, 64), atStart: true}
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
			x.atStart, x.lastByte = false, 0
		}
		slot := &x.ring[x.lines%len(x.ring)]
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i+1]
		}
		if room := statementPrefix - len(slot.prefix); room > 0 {
			slot.prefix = append(slot.prefix, chunk[:min(room, len(chunk))]...)
		}
		if t := bytes.TrimRight(chunk, " \t\r\n"); len(t) > 0 {
			x.lastByte = t[len(t)-1]
		}
		x.offset += int64(len(chunk))
		b = b[len(chunk):]
		if i >= 0 {
			x.endLine(slot)
			x.atStart = true
		}
	}
	return n, nil
}

// endLine notes whether the line starts or ends a statement. Blank and comment lines do neither.
func (x *lineIndex) endLine(slot *lineStart) {
	if !holdsSQL(slot.prefix) {
		return
	}
	if !x.inStatement {
		st := &x.stmts[slot.line%len(x.stmts)]
		st.line, st.offset, st.prefix = slot.line, slot.offset, append(st.prefix[:0], slot.prefix...)
	}
	x.inStatement = x.lastByte != ';'
}

func holdsSQL(prefix []byte) bool {
	p := bytes.TrimSpace(prefix)
	return len(p) > 0 && !bytes.HasPrefix(p, []byte("--")) && p[0] != '#'
}

// at returns the byte offset and the beginning of line n, values left out, if it is still
// remembered.
func (x *lineIndex) at(n int) (int64, string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.atLocked(n)
}

func (x *lineIndex) atLocked(n int) (int64, string) {
	if n <= 0 {
		return -1, ""
	}
	for _, slot := range []lineStart{x.ring[n%len(x.ring)], x.stmts[n%len(x.stmts)]} {
		if slot.line == n {
			return slot.offset, elideStatement(slot.prefix, len(slot.prefix) >= statementPrefix)
		}
	}
	return -1, ""
}

// openStatement is the statement the stream stops in: its first line, offset and elided start.
// ok is false when the stream stops between statements.
func (x *lineIndex) openStatement() (line int, offset int64, start string, ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	line, ok = x.lastStatementLine(), x.inStatement
	if cur := x.ring[x.lines%len(x.ring)]; !x.atStart && holdsSQL(cur.prefix) {
		// The last line has no newline: it counts as SQL although endLine never saw it.
		if !x.inStatement {
			line = x.lines
		}
		ok = x.lastByte != ';'
	}
	if !ok {
		return x.lines, -1, "", false
	}
	offset, start = x.atLocked(line)
	return line, offset, start, true
}

// lastStatementLine is the first line of the latest statement seen to start.
func (x *lineIndex) lastStatementLine() int {
	best := 0
	for _, st := range x.stmts {
		best = max(best, st.line)
	}
	return best
}

func (x *lineIndex) position() (lines int, offset int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.lines, x.offset
}
