package agent

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestReferencedRoles(t *testing.T) {
	for line, want := range map[string][]string{
		"ALTER TABLE shop.orders OWNER TO app_owner;\n":                                                 {"app_owner"},
		`ALTER SCHEMA "Shop" OWNER TO "Mixed ""Case""";` + "\n":                                         {`Mixed "Case"`},
		"GRANT SELECT,INSERT ON TABLE shop.orders TO reporting, PUBLIC;\n":                              {"reporting"},
		"GRANT ALL ON SCHEMA shop TO Writer WITH GRANT OPTION;\n":                                       {"writer"},
		"REVOKE ALL ON TABLE shop.orders FROM old_app CASCADE;\n":                                       {"old_app"},
		"ALTER DEFAULT PRIVILEGES FOR ROLE deployer IN SCHEMA shop GRANT SELECT ON TABLES TO reader;\n": {"reader", "deployer"},
		"SET SESSION AUTHORIZATION migrator;\n":                                                         {"migrator"},
		"CREATE POLICY own_rows ON shop.orders TO tenant USING (true);\n":                               {"tenant"},
		"GRANT admins TO alice GRANTED BY postgres;\n":                                                  {"alice", "postgres"},
		"INSERT INTO t VALUES ('OWNER TO x');\n":                                                        nil,
		"SET search_path = shop;\n":                                                                     nil,
		"GRANT SELECT ON TABLE t TO CURRENT_USER;\n":                                                    nil,
	} {
		got := referencedRoles([]byte(line))
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%q: roles %q, want %q", line, got, want)
		}
	}
}

// TestPGScriptLines follows psql's view of a dump: statement starts, COPY rows and psql's own
// commands, where quotes and dollar quotes hide what looks like SQL.
func TestPGScriptLines(t *testing.T) {
	script := "--\n" + // 1
		"\\connect shop\n" + // 2
		"CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$\n" + // 3
		"BEGIN\n" + // 4
		"  GRANT SELECT ON t TO x;\n" + // 5
		"  RETURN 1;\n" + // 6
		"END $fn$;\n" + // 7
		"COMMENT ON TABLE t IS 'one;\n" + // 8
		"GRANT it; two';\n" + // 9
		"COPY public.t (id, note) FROM stdin;\n" + // 10
		"1\tGRANT SELECT ON t TO y;\n" + // 11
		"\\.\n" + // 12
		"ALTER TABLE t /* a comment; */ OWNER TO z;\n" + // 13
		"SELECT E'it\\'s'; SELECT 2;\n" // 14
	want := []lineKind{lineSQL, lineMeta, lineStatement, lineSQL, lineSQL, lineSQL, lineSQL, lineStatement, lineSQL,
		lineStatement, lineData, lineData, lineStatement, lineStatement}
	s := newPGScript()
	for i, line := range strings.SplitAfter(script, "\n")[:14] {
		if got := s.line([]byte(line)); got != want[i] {
			t.Errorf("line %d %q: kind %d, want %d", i+1, line, got, want[i])
		}
	}
	if off, stmtLine, stmt := s.at(11); stmtLine != 10 || stmt != "COPY public.t (id, note) FROM stdin" || off != int64(strings.Index(script, "1\tGRANT")) {
		t.Errorf("a COPY row is located by its statement: line %d %q at %d", stmtLine, stmt, off)
	}
	if _, _, _, open := s.openStatement(); open {
		t.Error("the script ends between statements")
	}
	s.line([]byte("INSERT INTO t VALUES (1,\n"))
	if line, _, start, open := s.openStatement(); !open || line != 15 || start != "INSERT INTO t VALUES (…)" {
		t.Errorf("open statement: %v line %d %q", open, line, start)
	}
}

// TestPGFeed checks what psql receives: the same lines, in transactions, pg_dump's \restrict
// gone, missing roles created on the line naming them.
func TestPGFeed(t *testing.T) {
	in := "\\restrict abc\n" +
		"SET client_encoding = 'UTF8';\n" +
		"CREATE DATABASE shop;\n" +
		"\\connect shop\n" +
		"CREATE TABLE t (id int);\n" +
		"ALTER TABLE t OWNER TO app;\n" +
		"GRANT SELECT ON t TO app;\n" +
		"CREATE ROLE postgres;\n" +
		"\\unrestrict abc\n"
	var out bytes.Buffer
	tx := &pgTransactions{}
	l := pgLoad{ensured: map[string]bool{}}
	if err := l.feed(bufio.NewReader(strings.NewReader(in)), newPGScript(), &completeness{}, tx, &out); err != nil {
		t.Fatal(err)
	}
	out.WriteString(tx.end())
	got := strings.Split(out.String(), "\n")
	want := []string{
		"",
		"BEGIN; SET client_encoding = 'UTF8';",
		"COMMIT; CREATE DATABASE shop;",
		"\\connect shop",
		"BEGIN; CREATE TABLE t (id int);",
		ensureRoleSQL("app") + "ALTER TABLE t OWNER TO app;",
		"GRANT SELECT ON t TO app;",
		ensureRoleSQL("postgres"),
		"",
		";",
		"COMMIT;",
		"",
	}
	if !slices.Equal(got, want) {
		t.Errorf("psql reads\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestElidePGMessage(t *testing.T) {
	for in, want := range map[string]string{
		`invalid input syntax for type integer: "swordfish"`:           `invalid input syntax for type integer: "…"`,
		`syntax error at or near "'topsecret'"`:                        `syntax error at or near "…"`,
		`relation "shop.no_such_table" does not exist`:                 `relation "shop.no_such_table" does not exist`,
		`invalid byte sequence for encoding "UTF8": 0xe9 0x20`:         `invalid byte sequence for encoding "UTF8": …`,
		`duplicate key value violates unique constraint "orders_pkey"`: `duplicate key value violates unique constraint "orders_pkey"`,
		`date/time field value out of range: "2025-13-45 "x""`:         `date/time field value out of range: "…"`,
		`value too long for type character varying(3)`:                 `value too long for type character varying(3)`,
	} {
		if got := elidePGMessage(in); got != want {
			t.Errorf("%s\n got %s\nwant %s", in, got, want)
		}
	}
}

func TestPGDumpCompleteness(t *testing.T) {
	head := "--\n-- PostgreSQL database dump\n--\n\n\\restrict k\n\nSET x = 1;\n"
	for name, tc := range map[string]struct {
		sql     string
		tool    string
		trailer bool
	}{
		"pg_dump 15.18, \\unrestrict last": {head + "CREATE TABLE t ();\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict k\n\n", "pg_dump", true},
		"older pg_dump":                    {"--\n-- PostgreSQL database dump\n--\nSET x = 1;\n--\n-- PostgreSQL database dump complete\n--\n\n", "pg_dump", true},
		"cut":                              {head + "COPY t (id) FROM stdin;\n1\n2\n", "pg_dump", false},
		"pg_dumpall --globals-only":        {"--\n-- PostgreSQL database cluster dump\n--\nCREATE ROLE a;\n--\n-- PostgreSQL database cluster dump complete\n--\n\n", "pg_dumpall", true},
		"pg_dumpall cut after a database":  {"--\n-- PostgreSQL database cluster dump\n--\nCREATE ROLE a;\n--\n-- PostgreSQL database dump complete\n--\n\n", "pg_dumpall", false},
		"hand-written":                     {"CREATE TABLE t ();\n", "", false},
	} {
		var c completeness
		_, _ = c.Write([]byte(tc.sql))
		if c.tool() != tc.tool || c.hasTrailer() != tc.trailer {
			t.Errorf("%s: tool %q trailer %v, want %q %v", name, c.tool(), c.hasTrailer(), tc.tool, tc.trailer)
		}
	}
}
