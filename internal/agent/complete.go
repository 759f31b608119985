package agent

import (
	"bytes"
	"fmt"
)

// mysqldump and mariadb-dump open a dump with a comment naming themselves and close it with
// dumpTrailer, written only once every table is out: a dump with the header and without the
// trailer was cut short, by a full disk, a killed cron job or an interrupted upload, even when it
// ends between two statements and would load without an error.
const dumpTrailer = "-- Dump completed"

var dumpHeaders = []struct{ prefix, tool, trailer string }{
	{"-- MySQL dump ", "mysqldump", dumpTrailer},
	{"-- MariaDB dump ", "mariadb-dump", dumpTrailer},
	// pg_dump and pg_dumpall (a cluster or only its roles) write the same for the same reason.
	{"-- PostgreSQL database dump", "pg_dump", "-- PostgreSQL database dump complete"},
	{"-- PostgreSQL database cluster dump", "pg_dumpall", "-- PostgreSQL database cluster dump complete"},
}

const (
	// The header comes first, after at most mariadb-dump's sandbox-mode line.
	headBytes = 1 << 10
	tailBytes = 4 << 10
)

// completeness watches a decompressed SQL stream for the header and the trailer, holding only
// its first and last few KiB.
type completeness struct {
	head []byte
	tail []byte
}

func (c *completeness) Write(b []byte) (int, error) {
	if room := headBytes - len(c.head); room > 0 {
		c.head = append(c.head, b[:min(room, len(b))]...)
	}
	// Kept between tailBytes and twice that, shifted down only when full: writers of one line at
	// a time must not pay a shift per line.
	if len(b) >= tailBytes {
		c.tail = append(c.tail[:0], b[len(b)-tailBytes:]...)
		return len(b), nil
	}
	if len(c.tail)+len(b) > 2*tailBytes {
		keep := tailBytes - len(b)
		c.tail = append(c.tail[:0], c.tail[len(c.tail)-keep:]...)
	}
	c.tail = append(c.tail, b...)
	return len(b), nil
}

// tool is the dump program the header names, or "" for SQL from anything else.
func (c *completeness) tool() string {
	tool, _ := c.header()
	return tool
}

func (c *completeness) header() (tool, trailer string) {
	for i, line := range bytes.SplitN(c.head, []byte("\n"), 4) {
		if i == 3 {
			break
		}
		for _, h := range dumpHeaders {
			// The whole line: pg_dump's header is a prefix of pg_dumpall's trailer.
			if bytes.HasPrefix(line, []byte(h.prefix)) && (h.tool != "pg_dump" || string(bytes.TrimRight(line, "\r")) == h.prefix) {
				return h.tool, h.trailer
			}
		}
	}
	return "", ""
}

// lastLine is the last line of the stream that says something: pg_dump closes its trailer with a
// bare "--", and pg_dump 17.6 and later end with \unrestrict.
func (c *completeness) lastLine() []byte {
	t := c.tail
	for {
		t = bytes.TrimRight(t, " \t\r\n")
		line := t[bytes.LastIndexByte(t, '\n')+1:]
		if len(line) == len(t) || string(line) != "--" && !bytes.HasPrefix(line, []byte(`\unrestrict `)) {
			return line
		}
		t = t[:len(t)-len(line)]
	}
}

func (c *completeness) hasTrailer() bool {
	tool, trailer := c.header()
	if tool == "" {
		trailer = dumpTrailer
	}
	return bytes.HasPrefix(c.lastLine(), []byte(trailer))
}

// truncatedDump describes a dump cut short: how much of it there was, and where it stops.
type truncatedDump struct {
	file      string
	tool      string
	trailer   string
	sqlBytes  int64
	fileBytes int64 // -1 for an uncompressed file: the SQL is the file
	line      int   // the last line, whole or not
	// midStmt says the dump stops inside the statement starting at stmtLine.
	midStmt    bool
	stmtLine   int
	stmtOffset int64
	statement  string // its elided start
	clientErr  string // the client's own failure, when it had one
}

func (t *truncatedDump) Error() string {
	s := fmt.Sprintf("truncated: no '%s' trailer after %d bytes of %s", t.trailer, t.sqlBytes, t.file)
	if t.fileBytes >= 0 {
		s = fmt.Sprintf("truncated: no '%s' trailer after %d bytes of decompressed SQL from %s (%d bytes of the file)",
			t.trailer, t.sqlBytes, t.file, t.fileBytes)
	}
	s += fmt.Sprintf(", although its header names %s, which writes it last", t.tool)
	if t.midStmt {
		s += fmt.Sprintf("; it stops in line %d, inside the statement starting at line %d", t.line, t.stmtLine)
		if t.stmtOffset >= 0 {
			s += fmt.Sprintf(" (byte %d)", t.stmtOffset)
		}
		if t.statement != "" {
			s += ": " + t.statement
		}
	} else {
		s += fmt.Sprintf("; it stops after a whole statement, at the end of line %d", t.line)
	}
	if t.clientErr != "" {
		s += "; the client reported " + t.clientErr
	}
	return s
}
