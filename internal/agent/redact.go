package agent

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Failure messages go into the template's status and events, which far more people can read than
// the dumps: they may name tables and columns but never carry a value from a row.

// elision stands for what a message leaves out.
const elision = "…"

// Statements whose numbers describe the schema or the session (VARCHAR(100), AUTO_INCREMENT=5,
// SET unique_checks=0) rather than rows; in any other statement a number may be row data.
var schemaVerbs = map[string]bool{
	"CREATE": true, "ALTER": true, "DROP": true, "RENAME": true, "TRUNCATE": true, "LOCK": true,
	"UNLOCK": true, "USE": true, "SET": true, "DELIMITER": true, "GRANT": true, "REVOKE": true,
}

// elideStatement renders the start of a statement with its values left out: string, hex and
// numeric literals become …, and everything after VALUES becomes (…). It reads a prefix cut
// anywhere, so an unterminated literal hides the rest of the text.
func elideStatement(b []byte, cut bool) string {
	var out strings.Builder
	verb := ""
	space := false
	emit := func(s string) {
		if space && out.Len() > 0 {
			out.WriteByte(' ')
		}
		space = false
		out.WriteString(s)
	}
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			space = true
			i++
		case c == ';':
			return escapeNonPrintable(out.String())
		case c == '\'' || c == '"':
			emit(string(c) + elision + string(c))
			i = skipQuoted(b, i)
		case c == '`':
			end := skipQuoted(b, i)
			emit(string(b[i:min(end, len(b))]))
			i = end
		case c == '/' && i+2 < len(b) && b[i+1] == '*' && b[i+2] == '!':
			// A conditional comment carries SQL: its version number is part of the marker.
			j := i + 3
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			emit(string(b[i:j]))
			i = j
		case isWordByte(c):
			j := i
			for j < len(b) && isWordByte(b[j]) {
				j++
			}
			word := string(b[i:j])
			i = j
			switch {
			case isNumber(word):
				if !schemaVerbs[verb] {
					word = elision
				}
			case verb == "":
				verb = strings.ToUpper(word)
			case strings.EqualFold(word, "VALUES") || strings.EqualFold(word, "VALUE"):
				emit(word)
				emit(" (" + elision + ")")
				return escapeNonPrintable(out.String())
			}
			emit(word)
		default:
			emit(string(c))
			i++
		}
	}
	s := out.String()
	if cut {
		s += elision
	}
	return escapeNonPrintable(s)
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c == '@' || c >= 0x80 ||
		(c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.'
}

// isNumber says whether a word is a numeric or 0x hex literal: 12, 1.5e3, .5, 0xCAFE.
func isNumber(w string) bool {
	if w[0] == '.' && len(w) > 1 {
		w = w[1:]
	}
	return w[0] >= '0' && w[0] <= '9'
}

// skipQuoted returns the index after the literal or identifier opening at b[i], honouring
// backslash escapes and doubled quotes; len(b) when it does not end within b.
func skipQuoted(b []byte, i int) int {
	q := b[i]
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			if q != '`' {
				j++
			}
		case q:
			if j+1 < len(b) && b[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(b)
}

var (
	// The parser quotes the statement from where it stopped understanding it: row data.
	nearQuote = regexp.MustCompile(`(?s)near '.*?('( at line \d+)?\s*)?$`)
	// Constraint and conversion errors quote the offending value.
	valueQuote = regexp.MustCompile(`(?s)(entry|value:?) '.*'( for (?:key|column) )`)
	anyQuote   = regexp.MustCompile(`'[^']*'?`)
)

// elideServerText removes the values a server error message quotes: the statement after near,
// the key of a duplicate entry, the value of a failed conversion. Table, column and key names
// stay.
func elideServerText(s string) string {
	s = valueQuote.ReplaceAllString(s, "$1 '"+elision+"'$2")
	if loc := nearQuote.FindStringSubmatchIndex(s); loc != nil {
		tail := "'"
		if loc[4] >= 0 {
			tail = "'" + s[loc[4]:loc[5]]
		}
		s = s[:loc[0]] + "near '" + elision + tail
	}
	return escapeNonPrintable(s)
}

// elideQuoted removes every quoted part of a message nothing is known about, such as a line of
// the client's own output.
func elideQuoted(s string) string {
	return escapeNonPrintable(anyQuote.ReplaceAllString(s, "'"+elision+"'"))
}

// escapeNonPrintable shows control characters and bytes that are not UTF-8 as Go escapes, so a
// message stays one readable line whatever the dump held.
func escapeNonPrintable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&out, `\x%02x`, s[i])
		case !unicode.IsPrint(r):
			q := strconv.QuoteRuneToASCII(r)
			out.WriteString(q[1 : len(q)-1])
		default:
			out.WriteString(s[i : i+n])
		}
		i += n
	}
	return out.String()
}

// clip shortens s to at most n bytes on a character boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-len(elision)], "") + elision
}
