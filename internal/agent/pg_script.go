package agent

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// pgScript follows a plain-SQL dump line by line as psql reads it: which lines start a statement,
// which are COPY data (rows, never to be quoted in a message), and which are psql's own commands.
// It lexes quotes, dollar quotes and comments, so a line inside a function body or a multi-line
// string is never taken for a statement.
type pgScript struct {
	mu     sync.Mutex
	lines  int   // lines started so far: the number of the current line
	offset int64 // bytes seen
	ring   []pgLine
	// stmts are the first lines of the latest statements, which outlive their line in ring.
	stmts []pgLine

	// Lexer state, carried from line to line.
	inStmt     bool   // a statement has started and not ended
	stmtLine   int    // its first line
	quote      byte   // ' or " while inside a literal or identifier, else 0
	escapes    bool   // the ' literal is an E'' string: backslash escapes
	dollarTag  string // the tag while inside a dollar-quoted string
	comment    int    // depth of /* */ comments
	copyData   bool   // lines are COPY rows until \.
	copyLine   int    // the COPY statement's line
	startsCopy bool   // the statement in progress is COPY … FROM stdin
	// unended says that the last line seen has no newline yet.
	unended bool
}

type pgLine struct {
	line   int
	offset int64
	prefix []byte // nil for COPY rows
	data   bool
}

func newPGScript() *pgScript {
	return &pgScript{ring: make([]pgLine, 8192), stmts: make([]pgLine, 64)}
}

// lineKind is what a whole line is to psql.
type lineKind int

const (
	lineSQL       lineKind = iota // inside or continuing a statement, or blank
	lineStatement                 // the first line of a statement
	lineData                      // a COPY row, or the \. that ends them
	lineMeta                      // a psql command such as \connect
)

// line feeds one whole line, its newline included (the last line of a stream may lack it), and
// says what it is.
func (s *pgScript) line(b []byte) lineKind {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines++
	slot := &s.ring[s.lines%len(s.ring)]
	slot.line, slot.offset, slot.data = s.lines, s.offset, false
	slot.prefix = slot.prefix[:0]
	s.offset += int64(len(b))
	s.unended = !bytes.HasSuffix(b, []byte("\n"))
	if s.copyData {
		slot.data = true
		if t := bytes.TrimRight(b, "\r\n"); string(t) == `\.` {
			s.copyData = false
		}
		return lineData
	}
	slot.prefix = append(slot.prefix, b[:min(len(b), statementPrefix)]...)
	if !s.inStmt && s.quote == 0 && s.dollarTag == "" && s.comment == 0 {
		if t := bytes.TrimLeft(b, " \t"); len(t) > 0 && t[0] == '\\' {
			return lineMeta
		}
	}
	started := s.lex(b)
	if started {
		st := &s.stmts[s.lines%len(s.stmts)]
		st.line, st.offset, st.prefix = s.lines, slot.offset, append(st.prefix[:0], slot.prefix...)
		return lineStatement
	}
	return lineSQL
}

var copyFromStdin = regexp.MustCompile(`(?i)^\s*COPY\s.*\sFROM\s+stdin\b`)

// lex advances the lexer over one line and says whether a statement starts in it.
func (s *pgScript) lex(b []byte) (started bool) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case s.comment > 0:
			if c == '*' && i+1 < len(b) && b[i+1] == '/' {
				s.comment--
				i++
			} else if c == '/' && i+1 < len(b) && b[i+1] == '*' {
				s.comment++
				i++
			}
		case s.quote != 0:
			switch {
			case c == '\\' && s.escapes:
				i++
			case c == s.quote && i+1 < len(b) && b[i+1] == s.quote:
				i++
			case c == s.quote:
				s.quote, s.escapes = 0, false
			}
		case s.dollarTag != "":
			if c == '$' && bytes.HasPrefix(b[i:], []byte(s.dollarTag)) {
				i += len(s.dollarTag) - 1
				s.dollarTag = ""
			}
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case c == '-' && i+1 < len(b) && b[i+1] == '-':
			return started
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			s.comment++
			i++
		case c == ';':
			if s.inStmt && s.startsCopy {
				s.copyData, s.copyLine = true, s.stmtLine
			}
			s.inStmt, s.startsCopy = false, false
		default:
			if !s.inStmt {
				s.inStmt, s.stmtLine, started = true, s.lines, true
				s.startsCopy = copyFromStdin.Match(b[i:])
			}
			switch {
			case c == '\'' || c == '"':
				s.quote = c
				s.escapes = c == '\'' && i > 0 && (b[i-1] == 'E' || b[i-1] == 'e') && (i < 2 || !isWordByte(b[i-2]))
			case c == '$' && (i == 0 || !isWordByte(b[i-1])):
				if tag := dollarTag(b[i:]); tag != "" {
					s.dollarTag = tag
					i += len(tag) - 1
				}
			}
		}
	}
	return started
}

// dollarTag is the $tag$ or $$ opening a dollar-quoted string at the start of b, or "".
func dollarTag(b []byte) string {
	for j := 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '$':
			return string(b[:j+1])
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 || (j > 1 && c >= '0' && c <= '9'):
		default:
			return ""
		}
	}
	return ""
}

// at locates line n: its offset, the line its statement starts on, and that statement's start
// with values left out. A COPY row is located by its COPY statement, whose start is quoted
// instead of the row.
func (s *pgScript) at(n int) (offset int64, stmtLine int, stmt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	offset = -1
	if slot := s.ring[n%len(s.ring)]; n > 0 && slot.line == n {
		offset = slot.offset
	}
	// The statement holding line n is the latest to start at or before it.
	best := pgLine{}
	for _, st := range s.stmts {
		if st.line <= n && st.line > best.line {
			best = st
		}
	}
	if best.line == 0 {
		return offset, 0, ""
	}
	return offset, best.line, elideStatement(best.prefix, len(best.prefix) >= statementPrefix)
}

// busy says the lines so far leave a statement, a literal, a comment or COPY rows open.
func (s *pgScript) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inStmt || s.quote != 0 || s.dollarTag != "" || s.comment > 0 || s.copyData
}

func (s *pgScript) inCopy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.copyData
}

// rows feeds whole COPY rows, none of them the \. that ends them. They are counted, not
// remembered: a failure in one is located by its line and its COPY statement.
func (s *pgScript) rows(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines += bytes.Count(b, []byte("\n"))
	s.offset += int64(len(b))
	s.unended = false
}

// close is what ends COPY rows that run to the end of the stream, as psql would end them.
func (s *pgScript) close() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := ""
	if s.unended {
		end = "\n"
	}
	if s.copyData {
		end += "\\.\n"
	}
	return end
}

func (s *pgScript) position() (lines int, offset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines, s.offset
}

// openStatement is where a stream that ends here stops: inside a statement, a COPY's rows, or
// between statements (ok false).
func (s *pgScript) openStatement() (line int, offset int64, start string, ok bool) {
	s.mu.Lock()
	inside, at := s.inStmt || s.copyData, s.stmtLine
	if s.copyData {
		at = s.copyLine
	}
	lines := s.lines
	s.mu.Unlock()
	if !inside {
		return lines, -1, "", false
	}
	offset, _, start = s.at(at)
	if o, _, _ := s.at(at); o >= 0 {
		offset = o
	}
	return at, offset, start, true
}

// Roles named where pg_dump writes them: object owners, grantees, default privileges and the
// session's role. A missing one would fail the statement.
var (
	ownerTo       = regexp.MustCompile(`(?i)\bOWNER TO\s+(` + pgName + `)`)
	grantTo       = regexp.MustCompile(`(?i)^\s*(?:ALTER DEFAULT PRIVILEGES\b.*?\s)?GRANT\s.*\sTO\s+(` + pgNameList + `)`)
	revokeFrom    = regexp.MustCompile(`(?i)^\s*(?:ALTER DEFAULT PRIVILEGES\b.*?\s)?REVOKE\s.*\sFROM\s+(` + pgNameList + `)`)
	forRole       = regexp.MustCompile(`(?i)\bFOR (?:ROLE|USER)\s+(` + pgNameList + `)`)
	grantedBy     = regexp.MustCompile(`(?i)\bGRANTED BY\s+(` + pgName + `)`)
	sessionRole   = regexp.MustCompile(`(?i)^\s*SET (?:SESSION AUTHORIZATION|ROLE)\s+(` + pgName + `)\s*;`)
	policyTo      = regexp.MustCompile(`(?i)^\s*CREATE POLICY\s.*\sTO\s+(` + pgNameList + `)`)
	pgNameToken   = regexp.MustCompile(pgName)
	notRoles      = map[string]bool{"public": true, "current_user": true, "session_user": true, "current_role": true, "none": true, "default": true}
	roleStatement = regexp.MustCompile(`(?i)^\s*(ALTER|GRANT|REVOKE|SET|CREATE POLICY)\b`)
)

const (
	pgName     = `"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*`
	pgNameList = `(?:` + pgName + `)(?:\s*,\s*(?:` + pgName + `))*`
)

// referencedRoles are the roles a statement's first line names as owner, grantee or session role.
func referencedRoles(line []byte) []string {
	if !roleStatement.Match(line) {
		return nil
	}
	var names []string
	for _, re := range []*regexp.Regexp{ownerTo, grantTo, revokeFrom, forRole, grantedBy, sessionRole, policyTo} {
		for _, m := range re.FindAllSubmatch(line, -1) {
			for _, tok := range pgNameToken.FindAll(m[1], -1) {
				if !notRoles[strings.ToLower(string(tok))] || tok[0] == '"' {
					names = append(names, roleName(tok))
				}
			}
		}
	}
	return names
}

// roleName is the role an identifier names: unquoted, or folded to lower case.
func roleName(tok []byte) string {
	if tok[0] == '"' {
		return strings.ReplaceAll(string(tok[1:len(tok)-1]), `""`, `"`)
	}
	return strings.ToLower(string(tok))
}

// ensureRoleSQL creates a role the dump names but does not create, unable to log in. It goes on
// the line naming the role, so psql's line numbers still match the file's.
func ensureRoleSQL(name string) string {
	return fmt.Sprintf(`DO $myaas$BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '%s') THEN CREATE ROLE "%s" NOLOGIN; END IF; END$myaas$; `,
		strings.ReplaceAll(name, `'`, `''`), strings.ReplaceAll(name, `"`, `""`))
}

// more feeds the next part of a line too long to be held whole: only COPY rows and long
// literals are.
func (s *pgScript) more(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += int64(len(b))
	s.unended = !bytes.HasSuffix(b, []byte("\n"))
	if s.copyData {
		return
	}
	if s.lex(b) {
		slot := s.ring[s.lines%len(s.ring)]
		st := &s.stmts[s.lines%len(s.stmts)]
		st.line, st.offset, st.prefix = s.lines, slot.offset, append(st.prefix[:0], slot.prefix...)
	}
}
