package agent

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/myaas/myaas/internal/agentapi"
)

// A plain pg_dump file heads each object with a comment naming its type ("-- Name: orders_pkey;
// Type: CONSTRAINT; ...", "-- Data for Name: orders; Type: TABLE DATA; ..."). The split load reads
// the file once, in order, and does what pg_restore -j does with an archive: the schema through
// psql, then the tables' rows on parallel sessions, then indexes and constraints on parallel
// sessions, largest table first, then the rest through psql again. Whatever it does not know
// runs through psql where it stands in the file, after everything before it.

var (
	pgEntryHeader = regexp.MustCompile(`^-- (?:Data for )?Name: .*; Type: ([A-Z ]+); Schema: `)
	// pg_dump writes a table's COPY on one line.
	pgCopyStatement = regexp.MustCompile(`^COPY ((?:"(?:[^"]|"")+"|[^\s."]+)(?:\.(?:"(?:[^"]|"")+"|[^\s."]+))?) (?:\([^)]*\) )?FROM stdin;\s*$`)
	// The table an index or a constraint is built on.
	pgIndexTable = regexp.MustCompile(`^(?:CREATE (?:UNIQUE )?INDEX \S+ ON (?:ONLY )?|ALTER TABLE (?:ONLY )?)((?:"(?:[^"]|"")+"|[^\s."]+)(?:\.(?:"(?:[^"]|"")+"|[^\s."]+))?)`)
	// A primary key or unique constraint as pg_dump writes it without options: built as a
	// unique index first, it takes the lock CREATE INDEX takes rather than ALTER TABLE's, and
	// the table's other indexes build beside it.
	pgKeyConstraint = regexp.MustCompile(`^ALTER TABLE ONLY (\S+)\s+ADD CONSTRAINT ("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*) (PRIMARY KEY|UNIQUE) (\([^()"]*\));\s*$`)
	pgConnectDB     = regexp.MustCompile(`^\\(?:connect|c)\s+(?:-reuse-previous=on\s+"dbname='((?:[^']|'')*)'"|"((?:[^"]|"")+)"|([^\s"]+))\s*$`)
	pgSessionSet    = regexp.MustCompile(`^(?:SET ([a-z_.]+) = .*;|SELECT pg_catalog\.set_config\('([a-z_.]+)', .*\);)\s*$`)
)

// pgParallelTypes are the entries built on parallel sessions: each reads its table and nothing
// else the others create. Foreign keys wait for psql: two of them may lock the same tables in
// opposite orders.
var pgParallelTypes = map[string]bool{"INDEX": true, "CONSTRAINT": true}

// pgSplit is one plain dump being split.
type pgSplit struct {
	ctx      context.Context
	srv      *pgServer
	in       sqlInput
	ensured  map[string]bool
	pool     *loadPool
	sessions *pgSessions
	script   *pgScript // the whole file's lines, for failures of the file as a whole

	line     int   // the number of the line being read
	offset   int64 // where it starts
	database string
	// settings are the session's SET statements so far, replayed by every session of the split.
	settings []pgSetting

	entryType string
	// segment is psql running the file from a line on, while one is open.
	segment *pgSegment

	// The table whose rows are being read, and the session's COPY they stream to.
	copyStmt  []byte
	copyLine  int
	copyTable string
	rowsTo    *io.PipeWriter
	inRow     bool // the part of a row read last has no newline yet
	dataBytes map[string]int64
	// tables counts the tables whose rows were sent, logged those the log told of.
	tables, logged int

	// The indexes and constraints read since the last other entry.
	run []*pgJob
	// stmt is the statement being gathered into the run's last job.
	stmt *pgStatement
}

type pgSetting struct{ name, sql string }

// pgJob is an index or constraint entry, with the comments pg_dump writes after it.
type pgJob struct {
	table    string
	database string
	prelude  string
	stmts    []*pgStatement
	// after is what the job leaves for after the run's indexes are built.
	after []pgDeferred
}

type pgDeferred struct {
	st  *pgStatement
	sql string
}

type pgStatement struct {
	line   int
	offset int64
	sql    []byte
}

// loadSplit loads a plain dump split at its entries, on jobs sessions. With one, the split still
// loads each table in the transaction that empties it, without WAL, and without psql in the way.
func (l pgLoad) loadSplit(ctx context.Context, jobs int) error {
	s := &pgSplit{ctx: ctx, srv: l.srv, in: l.in, ensured: l.ensured, pool: newLoadPool(ctx, jobs),
		sessions: &pgSessions{srv: l.srv, free: map[string][]*pgx.Conn{}}, script: newPGScript(),
		database: pgImportDatabase, dataBytes: map[string]int64{}}
	defer s.sessions.close()
	err := s.read()
	if err != nil {
		s.stopRows()
		s.pool.abort()
		if s.segment != nil {
			s.segment.abort()
		}
		return err
	}
	return nil
}

func (s *pgSplit) read() error {
	var tail completeness
	r := bufio.NewReaderSize(s.in.r, 1<<20)
	whole := true
	for {
		if whole && s.script.inCopy() && s.copyTable != "" {
			if block := copyRows(r); len(block) > 0 {
				s.script.rows(block)
				_, _ = tail.Write(block)
				if err := s.rows(block); err != nil {
					return err
				}
				_, _ = r.Discard(len(block))
				continue
			}
		}
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 {
			_, _ = tail.Write(chunk)
			var rerr error
			if whole {
				rerr = s.wholeLine(chunk, errors.Is(err, bufio.ErrBufferFull))
			} else {
				s.script.more(chunk)
				rerr = s.more(chunk)
			}
			if rerr != nil {
				return rerr
			}
			whole = !errors.Is(err, bufio.ErrBufferFull)
		}
		switch {
		case errors.Is(err, io.EOF):
			return s.finish(&tail)
		case err != nil && !errors.Is(err, bufio.ErrBufferFull):
			return readFailure(s.in, s.script, err)
		}
		if s.pool.failed() {
			s.stopRows()
			return s.pool.wait()
		}
	}
}

// stopRows ends the rows being streamed with an error, so that their COPY fails rather than
// commits part of a table.
func (s *pgSplit) stopRows() {
	if s.rowsTo != nil {
		_ = s.rowsTo.CloseWithError(context.Canceled)
		s.rowsTo = nil
	}
}

// finish checks the whole file is there, then lets what it started end.
func (s *pgSplit) finish(tail *completeness) error {
	if err := s.in.ended(s.script, tail, func() *sqlFailure { return nil }); err != nil {
		return err
	}
	if s.copyTable != "" {
		// Rows running to the end of a dump with no trailer to check: psql would load them.
		if err := s.endRows(); err != nil {
			return err
		}
	}
	if err := s.barrier(); err != nil {
		return err
	}
	if s.segment != nil {
		seg := s.segment
		s.segment = nil
		return seg.close()
	}
	return nil
}

// wholeLine routes a line read whole, or the first part of a longer one (long).
func (s *pgSplit) wholeLine(b []byte, long bool) error {
	s.line++
	kind := s.script.line(b)
	defer func() { s.offset += int64(len(b)) }()
	if kind == lineSQL && !s.script.busy() {
		if m := pgEntryHeader.FindSubmatch(b); m != nil {
			return s.entry(string(m[1]), b)
		}
	}
	switch {
	case s.copyTable != "" && kind == lineData && !s.script.inCopy():
		// The \. ending the rows.
		return s.endRows()
	case s.copyTable != "" && kind == lineData:
		// A row too long to be read in a block.
		s.inRow = long
		return s.addRows(b)
	case s.entryType == "TABLE DATA" && s.segment == nil:
		return s.dataLine(b, kind, long)
	case pgParallelTypes[s.entryType] && s.segment == nil:
		return s.jobLine(b, kind, long)
	}
	return s.serialLine(b, kind)
}

// more is the rest of a line too long for the reader's buffer: where its start went.
func (s *pgSplit) more(b []byte) error {
	defer func() { s.offset += int64(len(b)) }()
	switch {
	case s.segment != nil:
		return s.segment.write(b)
	case s.inRow:
		s.inRow = !bytes.HasSuffix(b, []byte("\n"))
		return s.addRows(b)
	case s.stmt != nil:
		s.stmt.sql = append(s.stmt.sql, b...)
	}
	return nil
}

// entry starts the entry a header line names.
func (s *pgSplit) entry(typ string, header []byte) error {
	prev := s.entryType
	s.entryType = typ
	if typ == "COMMENT" && pgParallelTypes[prev] && len(s.run) > 0 {
		// A comment on an index or constraint: it goes with it.
		s.entryType = prev
		return nil
	}
	if s.segment != nil {
		if typ != "TABLE DATA" && !pgParallelTypes[typ] {
			return s.segment.write(header)
		}
		seg := s.segment
		s.segment = nil
		if err := seg.close(); err != nil {
			return err
		}
	}
	if !pgParallelTypes[typ] {
		s.copyStmt = nil
		return s.runJobs()
	}
	s.run = append(s.run, &pgJob{database: s.database, prelude: s.prelude()})
	s.stmt = nil
	return nil
}

// quiet says a line needs no session: blank, a comment, psql's \restrict, or a setting every
// session replays.
func (s *pgSplit) quiet(b []byte, kind lineKind) bool {
	t := bytes.TrimSpace(b)
	switch {
	case kind == lineSQL && !s.script.busy() && (len(t) == 0 || bytes.HasPrefix(t, []byte("--"))):
		return true
	case kind == lineMeta && (bytes.HasPrefix(t, []byte(`\restrict`)) || bytes.HasPrefix(t, []byte(`\unrestrict`))):
		return true
	case kind == lineMeta:
		if m := pgConnectDB.FindSubmatch(t); m != nil {
			s.database = string(bytes.Join([][]byte{
				bytes.ReplaceAll(m[1], []byte("''"), []byte("'")), bytes.ReplaceAll(m[2], []byte(`""`), []byte(`"`)), m[3]}, nil))
			s.settings = nil
			return true
		}
	case kind == lineStatement && !s.script.busy():
		if m := pgSessionSet.FindSubmatch(t); m != nil {
			s.set(string(m[1])+string(m[2]), string(t))
			return true
		}
	}
	return false
}

func (s *pgSplit) set(name, sql string) {
	for i := range s.settings {
		if s.settings[i].name == name {
			s.settings[i].sql = sql
			return
		}
	}
	s.settings = append(s.settings, pgSetting{name, sql})
}

func (s *pgSplit) prelude() string {
	var b strings.Builder
	for _, st := range s.settings {
		b.WriteString(st.sql + "\n")
	}
	return b.String()
}

// serialLine sends a line to psql, starting psql at this line once what came before is done.
func (s *pgSplit) serialLine(b []byte, kind lineKind) error {
	if s.segment != nil {
		if kind == lineStatement && !s.script.busy() {
			if m := pgSessionSet.FindSubmatch(bytes.TrimSpace(b)); m != nil {
				s.set(string(m[1])+string(m[2]), string(bytes.TrimSpace(b)))
			}
		}
		if kind == lineMeta {
			s.quiet(b, kind) // follow \connect
		}
		return s.segment.write(b)
	}
	if s.quiet(b, kind) {
		return nil
	}
	if err := s.runJobs(); err != nil {
		return err
	}
	if err := s.barrier(); err != nil {
		return err
	}
	seg, err := s.startSegment()
	if err != nil {
		return err
	}
	s.segment = seg
	if kind == lineMeta {
		s.quiet(b, kind)
	}
	return seg.write(b)
}

// dataLine reads a TABLE DATA entry: its COPY statement, whose rows then stream to a session.
func (s *pgSplit) dataLine(b []byte, kind lineKind, long bool) error {
	if s.quiet(b, kind) {
		return nil
	}
	if kind == lineStatement && s.copyStmt == nil && !long {
		if m := pgCopyStatement.FindSubmatch(bytes.TrimSpace(b)); m != nil && s.script.inCopy() {
			s.copyStmt, s.copyLine, s.copyTable = append([]byte(nil), b...), s.line, string(m[1])
			return s.startRows()
		}
	}
	// Anything else (pg_dump --disable-triggers, INSERT statements): psql, after the rows.
	s.entryType = ""
	return s.serialLine(b, kind)
}

// startRows hands the table's rows to a session: a COPY in the transaction that empties the
// table, so that the server writes no WAL for it, reading the rows as the file is read.
func (s *pgSplit) startRows() error {
	rows, w := io.Pipe()
	c := pgCopy{stmt: s.copyStmt, stmtLine: s.copyLine, table: s.copyTable, rows: rows, database: s.database, prelude: s.prelude()}
	s.rowsTo = w
	s.tables++
	in := s.in
	if !s.pool.submit(func(ctx context.Context) error {
		err := s.sessions.copy(ctx, in, c)
		// The rows left unread are of no use: the file's reader must not wait for them to be.
		_ = rows.CloseWithError(errCopyEnded)
		return err
	}) {
		s.stopRows()
		return s.pool.wait()
	}
	return nil
}

var errCopyEnded = errors.New("the COPY ended")

// rows streams a block of whole COPY rows.
func (s *pgSplit) rows(block []byte) error {
	err := s.addRows(block)
	s.line += bytes.Count(block, []byte("\n"))
	s.offset += int64(len(block))
	return err
}

// addRows streams rows, or part of one, to the table's session.
func (s *pgSplit) addRows(b []byte) error {
	s.dataBytes[s.copyTable] += int64(len(b))
	if _, err := s.rowsTo.Write(b); err != nil {
		// The session stopped reading: its failure says why.
		s.stopRows()
		return s.pool.wait()
	}
	return nil
}

// endRows ends a table's rows: its session commits them.
func (s *pgSplit) endRows() error {
	err := s.rowsTo.Close()
	s.rowsTo, s.copyStmt, s.copyTable = nil, nil, ""
	return err
}

// jobLine adds a line to the index or constraint entry being read.
func (s *pgSplit) jobLine(b []byte, kind lineKind, long bool) error {
	job := s.run[len(s.run)-1]
	switch {
	case kind == lineMeta:
		// No psql command belongs in an index's entry: let psql have it.
		s.entryType = ""
		return s.serialLine(b, kind)
	case kind == lineStatement:
		if s.quiet(b, kind) {
			return nil
		}
		s.stmt = &pgStatement{line: s.line, offset: s.offset, sql: append([]byte(nil), b...)}
		job.stmts = append(job.stmts, s.stmt)
		if job.table == "" && !long {
			if m := pgIndexTable.FindSubmatch(b); m != nil {
				job.table = string(m[1])
			}
		}
	case s.stmt != nil && (s.script.busy() || len(bytes.TrimSpace(b)) > 0 && !bytes.HasPrefix(bytes.TrimSpace(b), []byte("--"))):
		s.stmt.sql = append(s.stmt.sql, b...)
	}
	return nil
}

// runJobs builds the indexes and constraints read, largest table first, and waits for them.
func (s *pgSplit) runJobs() error {
	run := s.run
	s.run, s.stmt = nil, nil
	if len(run) == 0 {
		return nil
	}
	// The tables' rows first.
	if err := s.barrier(); err != nil {
		return err
	}
	slices.SortStableFunc(run, func(a, b *pgJob) int { return cmp.Compare(s.dataBytes[b.table], s.dataBytes[a.table]) })
	in := s.in
	log.Printf("%s: %d indexes and constraints on %d sessions, largest table first", in.name, len(run), cap(s.pool.work))
	for _, job := range run {
		if !s.pool.submit(func(ctx context.Context) error { return s.sessions.build(ctx, in, job) }) {
			return s.pool.wait()
		}
	}
	if err := s.barrier(); err != nil {
		return err
	}
	return s.sessions.finishJobs(s.ctx, in, run)
}

// barrier waits for every session's work so far; the pool is then ready for more.
func (s *pgSplit) barrier() error {
	if err := s.pool.wait(); err != nil {
		return err
	}
	if s.tables > s.logged {
		log.Printf("%s: the rows of %d tables loaded on %d sessions", s.in.name, s.tables-s.logged, cap(s.pool.work))
		s.logged = s.tables
	}
	s.pool = newLoadPool(s.ctx, cap(s.pool.work))
	return nil
}

// startSegment starts psql on the file from the current line, after the session's settings.
func (s *pgSplit) startSegment() (*pgSegment, error) {
	prelude := s.prelude()
	pr, pw := io.Pipe()
	in := s.in
	in.r, in.dump = pr, false
	in.origin = &sqlOrigin{preludeLines: strings.Count(prelude, "\n"), preludeBytes: int64(len(prelude)), line: s.line, offset: s.offset}
	seg := &pgSegment{w: pw, done: make(chan error, 1)}
	load := pgLoad{srv: s.srv, in: in, ensured: s.ensured, database: s.database}
	go func() {
		err := load.load(context.WithoutCancel(s.ctx))
		// psql stopped early: the file's reader must not wait for it to read the rest.
		_ = pr.CloseWithError(errSegmentEnded)
		seg.done <- err
	}()
	if err := seg.write([]byte(prelude)); err != nil {
		return nil, err
	}
	return seg, nil
}

var errSegmentEnded = errors.New("psql ended")

// pgSegment is psql loading part of the file, fed as the file is read.
type pgSegment struct {
	w    *io.PipeWriter
	done chan error
	once sync.Once
	err  error
}

// wait is psql's outcome, once it has ended.
func (g *pgSegment) wait() error {
	g.once.Do(func() { g.err = <-g.done })
	return g.err
}

func (g *pgSegment) write(b []byte) error {
	if _, err := g.w.Write(b); err != nil {
		// psql stopped reading: its failure says why.
		return g.close()
	}
	return nil
}

// close ends psql's input, which commits what it holds, and waits for it.
func (g *pgSegment) close() error {
	_ = g.w.Close()
	return g.wait()
}

// abort stops psql without letting it commit.
func (g *pgSegment) abort() {
	_ = g.w.CloseWithError(context.Canceled)
	_ = g.wait()
}

// pgSessions are the split's connections, kept between jobs per database.
type pgSessions struct {
	srv  *pgServer
	mu   sync.Mutex
	free map[string][]*pgx.Conn
}

func (p *pgSessions) get(ctx context.Context, db, prelude string) (*pgx.Conn, error) {
	p.mu.Lock()
	var c *pgx.Conn
	if n := len(p.free[db]); n > 0 {
		c, p.free[db] = p.free[db][n-1], p.free[db][:n-1]
	}
	p.mu.Unlock()
	if c == nil {
		var err error
		if c, err = p.srv.connect(ctx, db); err != nil {
			return nil, failWith(agentapi.ReasonServerError, fmt.Errorf("connect to %s: %w", db, err))
		}
	}
	if prelude != "" {
		if _, err := c.Exec(ctx, prelude); err != nil {
			c.Close(context.WithoutCancel(ctx))
			return nil, failWith(agentapi.ReasonSQLError, fmt.Errorf("the dump's session settings: %w", err))
		}
	}
	return c, nil
}

func (p *pgSessions) put(db string, c *pgx.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free[db] = append(p.free[db], c)
}

func (p *pgSessions) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, conns := range p.free {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}
	p.free = map[string][]*pgx.Conn{}
}

// pgCopy is a table's rows.
type pgCopy struct {
	stmt     []byte
	stmtLine int
	table    string
	rows     io.Reader
	database string
	prelude  string
}

func (p *pgSessions) copy(ctx context.Context, in sqlInput, c pgCopy) error {
	conn, err := p.get(ctx, c.database, c.prelude)
	if err != nil {
		return err
	}
	if err := copyTable(ctx, conn, c); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return copyFailure(in, c, err)
	}
	p.put(c.database, conn)
	return nil
}

func copyTable(ctx context.Context, conn *pgx.Conn, c pgCopy) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// Emptied in this transaction, the table gets a new file, which COPY fills without WAL, its
	// rows frozen: no scan after the load, in the import or in a clone, has to set their hint
	// bits, which would write every page again. Only a table nothing else can see emptied: not
	// one an extension filled in part, nor one with triggers or foreign keys pointing at it.
	var empty bool
	err = tx.QueryRow(ctx, `SELECT c.relkind = 'r' AND NOT c.relhastriggers
		AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE confrelid = c.oid)
		FROM pg_catalog.pg_class c WHERE c.oid = $1::regclass`, c.table).Scan(&empty)
	if err != nil {
		return err
	}
	if empty {
		if err := tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT FROM ONLY "+c.table+")").Scan(&empty); err != nil {
			return err
		}
	}
	stmt := string(c.stmt)
	if empty {
		if _, err := tx.Exec(ctx, "TRUNCATE ONLY "+c.table); err != nil {
			return err
		}
		stmt = strings.TrimSuffix(strings.TrimSpace(stmt), ";") + " WITH (FREEZE);"
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, c.rows, stmt); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// pgCopyWhere is the server's context of a failed COPY: the row, counted from the first.
var pgCopyWhere = regexp.MustCompile(`^COPY (\S+), line (\d+)`)

// copyFailure locates a failed COPY: the row's line in the file, its COPY statement, the server's
// message without the values it quotes.
func copyFailure(in sqlInput, c pgCopy, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return failWith(agentapi.ReasonServerError, fmt.Errorf("%s: line %d: COPY %s: %w", in.name, c.stmtLine, c.table, err))
	}
	e := &loadError{File: in.name, Line: c.stmtLine, Offset: -1, Decompressed: in.compressed(),
		Statement: elideStatement(c.stmt[:min(len(c.stmt), statementPrefix)], len(c.stmt) > statementPrefix), StatementLine: c.stmtLine}
	text := elidePGMessage(pgErr.Message)
	if m := pgCopyWhere.FindStringSubmatch(pgErr.Where); m != nil {
		row, _ := strconv.Atoi(m[2])
		e.Line = c.stmtLine + row
		text += fmt.Sprintf(" (COPY %s, row %d)", m[1], row)
	}
	reason := agentapi.ReasonSQLError
	if pgErr.Severity != "ERROR" {
		reason = agentapi.ReasonServerError
	}
	e.Message = pgErr.Severity + ": " + clip(text, maxQuotedText)
	return failWith(reason, e)
}

// build runs an index or constraint entry.
func (p *pgSessions) build(ctx context.Context, in sqlInput, job *pgJob) error {
	// The sessions build at once as many indexes as there are CPUs: workers of their own only
	// contend with them (measured: both large builds of bench-import twice as slow with one).
	conn, err := p.get(ctx, job.database, job.prelude+"SET max_parallel_maintenance_workers = 0;\n")
	if err != nil {
		return err
	}
	for _, st := range job.stmts {
		if len(job.after) > 0 {
			// What follows a constraint (its comment) waits for it.
			job.after = append(job.after, pgDeferred{st, string(st.sql)})
			continue
		}
		after, err := keyOnIndex(ctx, conn, st.sql)
		if err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return statementFailure(in, st, err)
		}
		if after != "" {
			job.after = append(job.after, pgDeferred{st, after})
		}
	}
	p.put(job.database, conn)
	return nil
}

// finishJobs runs what the jobs of a run left for after every index is built: the constraints
// over the unique indexes, each a change of the catalog that would wait for the table's other
// index builds, and keep its session from building any.
func (p *pgSessions) finishJobs(ctx context.Context, in sqlInput, run []*pgJob) error {
	for _, job := range run {
		if len(job.after) == 0 {
			continue
		}
		conn, err := p.get(ctx, job.database, job.prelude)
		if err != nil {
			return err
		}
		for _, d := range job.after {
			if _, err := conn.Exec(ctx, d.sql); err != nil {
				conn.Close(context.WithoutCancel(ctx))
				return statementFailure(in, d.st, err)
			}
		}
		p.put(job.database, conn)
	}
	return nil
}

// keyOnIndex runs ADD CONSTRAINT … PRIMARY KEY or UNIQUE on a plain table as the unique index,
// and returns the constraint using it for after the run: the index builds beside the table's
// other indexes (ALTER TABLE would lock them out), and the constraint is then a change of the
// catalog. A partitioned table takes no constraint over an index: there, the statement runs as
// written.
func keyOnIndex(ctx context.Context, conn *pgx.Conn, sql []byte) (after string, err error) {
	m := pgKeyConstraint.FindSubmatch(bytes.TrimSpace(sql))
	if m == nil {
		_, err := conn.Exec(ctx, string(sql))
		return "", err
	}
	table, name, kind, cols := string(m[1]), string(m[2]), string(m[3]), string(m[4])
	var relkind string
	if err := conn.QueryRow(ctx, "SELECT relkind FROM pg_catalog.pg_class WHERE oid = $1::regclass", table).Scan(&relkind); err != nil || relkind != "r" {
		_, err := conn.Exec(ctx, string(sql))
		return "", err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE UNIQUE INDEX %s ON %s USING btree %s", name, table, cols)); err != nil {
		return "", err
	}
	return fmt.Sprintf("ALTER TABLE ONLY %s ADD CONSTRAINT %s %s USING INDEX %s", table, name, kind, name), nil
}

// statementFailure locates a failed statement of an entry: its line, its start, the server's
// message without the values it quotes.
func statementFailure(in sqlInput, st *pgStatement, err error) error {
	e := &loadError{File: in.name, Line: st.line, Offset: st.offset, Decompressed: in.compressed(),
		Statement: elideStatement(st.sql[:min(len(st.sql), statementPrefix)], len(st.sql) > statementPrefix), StatementLine: st.line}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		e.Message = "psql: " + escapeNonPrintable(err.Error())
		return failWith(agentapi.ReasonServerError, e)
	}
	reason := agentapi.ReasonSQLError
	if pgErr.Severity != "ERROR" {
		reason = agentapi.ReasonServerError
	}
	e.Message = pgErr.Severity + ": " + clip(elidePGMessage(pgErr.Message), maxQuotedText)
	return failWith(reason, e)
}
