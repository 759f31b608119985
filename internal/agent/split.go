package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"

	"github.com/myaas/myaas/internal/engine"
)

// A mysqldump or mariadb-dump file announces each part with a comment; a dump written with
// --compact or --skip-comments has none and loads in one session, as written.
type dumpSection int

const (
	// sectionSchema creates databases, tables and view stand-ins: in order, each before its data.
	sectionSchema dumpSection = iota
	// sectionData holds a table's rows, loaded in parallel with other tables' and chunks of its own.
	sectionData
	// sectionLater holds what must see every table loaded: routines, events, final views, and the
	// triggers each table's data is followed by (they must not fire on the rows being loaded).
	sectionLater
)

var sectionMarkers = []struct {
	prefix  string
	section dumpSection
}{
	{"-- Current Database: ", sectionSchema},
	{"-- Table structure for table ", sectionSchema},
	{"-- Temporary view structure for view ", sectionSchema},
	{"-- Temporary table structure for view ", sectionSchema},
	{"-- Dumping data for table ", sectionData},
	{"-- Dumping routines for database ", sectionLater},
	{"-- Dumping events for database ", sectionLater},
	{"-- Final view structure for view ", sectionLater},
}

// In a table's data section, the statements that only serve a single session: LOCK TABLES would
// serialise the chunks, and DISABLE KEYS concerns MyISAM alone.
var sessionOnlyStatements = [][]byte{
	[]byte("LOCK TABLES "), []byte("UNLOCK TABLES"), []byte("/*!40000 ALTER TABLE "),
	[]byte("COMMIT;"), []byte("SET AUTOCOMMIT=0;"), []byte("SET AUTOCOMMIT = 0;"),
}

const (
	// maxHeaderBytes bounds what is read looking for the first section marker.
	maxHeaderBytes = 1 << 20
	// chunkBytes is how much of a table's rows one transaction loads. A worker holds a chunk, and
	// the queue one per worker: memory stays at (2 × workers + 1) chunks.
	chunkBytes = 8 << 20
)

// splitLoader reads one dump file once, in order, and sends its parts to the server: schema
// statements at once in their own session, rows in chunks to a pool of sessions, and what comes
// after the tables once every chunk is in. Every session first replays the dump's header (the
// SETs of character set, time zone and SQL mode), so each statement runs as in the whole file.
type splitLoader struct {
	ctx    context.Context
	eng    engine.MySQLFamily
	socket string
	in     sqlInput
	pool   *loadPool

	header      []byte
	headerLines int
	section     dumpSection
	// database is the default database of the sections to come, as the dump's USE statements set it.
	database string

	// The part being gathered, and where it starts in the file.
	part       []byte
	partLine   int
	partOffset int64
	partDB     string
	// dropping discards the lines of a data section outside its INSERT statements.
	dropping bool
	// afterRows says a data section's rows are done: what follows is its triggers.
	afterRows bool
	later     []sqlInput

	// rowsOnly reads a file of one table's rows, as mydumper writes them: SETs, then INSERTs.
	rowsOnly bool

	line        int   // number of the line being read
	offset      int64 // where it starts
	inStatement bool
	chunks      int
}

// errNoSections is a dump without section markers.
var errNoSections = errors.New("no section markers")

// loadSplit loads a dump file split at its sections, or in one session when it has none.
func loadSplit(ctx context.Context, eng engine.MySQLFamily, socket string, in sqlInput, workers int) error {
	if workers < 2 {
		return loadStream(ctx, eng, socket, in)
	}
	idx := newLineIndex(8192)
	var tail completeness
	src := bufio.NewReaderSize(io.TeeReader(in.r, io.MultiWriter(idx, &tail)), 1<<20)
	s := &splitLoader{ctx: ctx, eng: eng, socket: socket, in: in, pool: newLoadPool(ctx, workers)}
	head, err := s.readHeader(src)
	if err != nil {
		s.pool.abort()
	}
	if errors.Is(err, errNoSections) {
		log.Printf("%s has no section markers (written with --compact or --skip-comments?): loading it in one session", in.name)
		in.r = io.MultiReader(bytes.NewReader(head), src)
		return loadStream(ctx, eng, socket, in)
	}
	if err != nil {
		return readFailure(in, idx, err)
	}
	if err := s.readSections(src); err != nil {
		s.pool.abort()
		var f *importFailure
		if errors.As(err, &f) {
			return err
		}
		return readFailure(in, idx, err)
	}
	if err := in.ended(idx, &tail, func() *sqlFailure { return nil }); err != nil {
		s.pool.abort()
		return err
	}
	if err := s.pool.wait(); err != nil {
		return err
	}
	log.Printf("%s: %d chunks of rows loaded; now the routines, views and triggers", in.name, s.chunks)
	for _, part := range s.later {
		if err := loadStream(ctx, eng, socket, part); err != nil {
			return err
		}
	}
	return nil
}

// readRows queues the chunks of a file of rows into the pool; what follows the rows is left in
// s.later.
func (s *splitLoader) readRows(src *bufio.Reader) error {
	s.rowsOnly, s.database = true, s.in.database
	if _, err := s.readHeader(src); err != nil {
		if errors.Is(err, errNoSections) {
			return nil // SETs alone: no rows to load
		}
		return err
	}
	return s.readSections(src)
}

// readHeader reads up to the first section marker. Anything but comments and SETs before it means
// the dump has no markers: the lines read so far are returned for the caller to load.
func (s *splitLoader) readHeader(src *bufio.Reader) ([]byte, error) {
	for {
		first, err := src.ReadSlice('\n')
		if len(first) == 0 && err == io.EOF {
			return s.header, errNoSections
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) && err != io.EOF {
			return nil, err
		}
		if !s.inStatement {
			section, ok := marker(first)
			if !ok && s.rowsOnly && !headerLine(first) {
				section, ok = sectionData, true
			}
			if ok {
				s.headerLines, s.line, s.offset = s.line, s.line+1, int64(len(s.header))
				s.start(section)
				return nil, s.readLine(src, first, err)
			}
			if !headerLine(first) || len(s.header)+len(first) > maxHeaderBytes {
				return append(s.header, first...), errNoSections
			}
		}
		s.header = append(s.header, first...)
		s.line++
		if holdsSQL(first) {
			s.inStatement = lastByte(first) != ';'
		}
		if err == io.EOF {
			return s.header, errNoSections
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return s.header, errNoSections // a header line of a megabyte is no dump's
		}
	}
}

// headerLine is what a dump's header holds before its first section: comments, blank lines,
// conditional comments and SETs.
func headerLine(line []byte) bool {
	l := bytes.TrimSpace(line)
	return len(l) == 0 || bytes.HasPrefix(l, []byte("--")) || bytes.HasPrefix(l, []byte("/*")) ||
		hasPrefixFold(l, []byte("SET "))
}

func marker(line []byte) (dumpSection, bool) {
	for _, m := range sectionMarkers {
		if bytes.HasPrefix(line, []byte(m.prefix)) {
			return m.section, true
		}
	}
	return 0, false
}

func hasPrefixFold(b, prefix []byte) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], prefix)
}

// readSections reads the rest of the dump, line by line, routing each to its part.
func (s *splitLoader) readSections(src *bufio.Reader) error {
	for {
		first, err := src.ReadSlice('\n')
		if len(first) == 0 && err == io.EOF {
			return s.finish()
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) && err != io.EOF {
			return err
		}
		s.line++
		if !s.inStatement {
			section, ok := marker(first)
			if !ok && s.rowsOnly && !headerLine(first) {
				section, ok = sectionData, true
			}
			if ok {
				if err := s.finish(); err != nil {
					return err
				}
				s.start(section)
			}
		}
		if err := s.readLine(src, first, err); err != nil {
			return err
		}
		if s.pool.failed() {
			return s.pool.wait()
		}
	}
}

// readLine routes a line whose first bytes are first; a line longer than the reader's buffer
// comes in several reads.
func (s *splitLoader) readLine(src *bufio.Reader, first []byte, err error) error {
	s.route(first)
	s.offset += int64(len(first))
	sql, end := holdsSQL(first), lastByte(first)
	for errors.Is(err, bufio.ErrBufferFull) {
		var more []byte
		more, err = src.ReadSlice('\n')
		if !s.dropping {
			s.part = append(s.part, more...)
		}
		s.offset += int64(len(more))
		if b := lastByte(more); b != 0 {
			end = b
		}
	}
	if sql {
		s.inStatement = end != ';'
	}
	if err != nil && err != io.EOF {
		return err
	}
	if s.section == sectionData && !s.afterRows && !s.inStatement && len(s.part) >= chunkBytes {
		return s.flushChunk()
	}
	return nil
}

// lastByte is the last byte of a line other than blanks, 0 for none. Statements are followed across
// lines by their final semicolon: dump tools write newlines inside values as \n, so a line ending
// in ';' ends a statement.
func lastByte(line []byte) byte {
	l := bytes.TrimRight(line, " \t\r\n")
	if len(l) == 0 {
		return 0
	}
	return l[len(l)-1]
}

// start begins a section at the current line.
func (s *splitLoader) start(section dumpSection) {
	s.section, s.afterRows = section, false
	s.begin(section == sectionData)
}

// begin starts a new part at the current line; a dropped part keeps nothing until its first row.
func (s *splitLoader) begin(dropping bool) {
	s.part, s.partLine, s.partOffset, s.partDB, s.dropping = s.part[:0], s.line, s.offset, s.database, dropping
}

// route adds a line to the part it belongs to.
func (s *splitLoader) route(line []byte) {
	if s.section == sectionSchema {
		if db, ok := useStatement(line); ok {
			s.database = db
		}
	}
	if s.section == sectionData && !s.afterRows && !s.inStatement {
		l := bytes.TrimSpace(line)
		switch {
		case hasPrefixFold(l, []byte("INSERT ")) || hasPrefixFold(l, []byte("REPLACE ")):
			if s.dropping {
				s.begin(false)
			}
		case sessionOnly(l):
			if !s.dropping {
				_ = s.flushChunk() // a full queue only waits; a failure shows at the next check
			}
			s.dropping = true
			return
		case !holdsSQL(l):
		default:
			// The rows are done: the section's triggers follow, for after every table.
			if !s.dropping {
				_ = s.flushChunk()
			}
			s.afterRows = true
			s.begin(false)
		}
	}
	if !s.dropping {
		s.part = append(s.part, line...)
	}
}

func sessionOnly(l []byte) bool {
	for _, p := range sessionOnlyStatements {
		if hasPrefixFold(l, p) {
			return true
		}
	}
	return false
}

// useStatement reads the database of a `USE `db`;` line.
func useStatement(line []byte) (string, bool) {
	l := bytes.TrimSpace(line)
	if !hasPrefixFold(l, []byte("USE ")) {
		return "", false
	}
	name := bytes.TrimSuffix(bytes.TrimSpace(l[4:]), []byte(";"))
	if len(name) >= 2 && name[0] == '`' && name[len(name)-1] == '`' {
		name = bytes.ReplaceAll(name[1:len(name)-1], []byte("``"), []byte("`"))
	}
	return string(name), len(name) > 0
}

// finish sends the part gathered so far where its section goes.
func (s *splitLoader) finish() error {
	switch {
	case s.section == sectionData && !s.afterRows:
		return s.flushChunk()
	case len(bytes.TrimSpace(s.part)) == 0:
		return nil
	case s.section == sectionSchema:
		return loadStream(s.ctx, s.eng, s.socket, s.input())
	default:
		s.later = append(s.later, s.input())
		s.part = nil // the input keeps the bytes
		return nil
	}
}

// flushChunk queues the rows gathered so far and starts a new chunk at the next line.
func (s *splitLoader) flushChunk() error {
	if s.dropping || len(bytes.TrimSpace(s.part)) == 0 {
		return nil
	}
	in := s.input()
	s.part = make([]byte, 0, chunkBytes+chunkBytes/8)
	s.chunks++
	s.dropping = true
	if !s.pool.submit(func(ctx context.Context) error { return loadStream(ctx, s.eng, s.socket, in) }) {
		return s.pool.wait()
	}
	return nil
}

// input is the part gathered, after the dump's header, located in the file.
func (s *splitLoader) input() sqlInput {
	in := s.in
	in.r = io.MultiReader(bytes.NewReader(s.header), bytes.NewReader(s.part))
	in.dump, in.database = false, s.partDB
	in.origin = &sqlOrigin{preludeLines: s.headerLines, preludeBytes: int64(len(s.header)), line: s.partLine, offset: s.partOffset}
	return in
}
