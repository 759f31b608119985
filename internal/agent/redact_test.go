package agent

import (
	"strings"
	"testing"
)

func TestElideStatementLeavesValuesOut(t *testing.T) {
	cases := []struct {
		name, in string
		cut      bool
		want     string
		secret   string // must not survive
	}{
		{"extended insert", "INSERT INTO `orders` VALUES (1,42,'4111-1111-1111-1111','x'),(2,43,'y','z');", false,
			"INSERT INTO `orders` VALUES (…)", "4111"},
		{"quotes and parens in strings", `INSERT INTO t (a, b) VALUES ('it''s (secret)', "say \"hi\" ); DROP")`, false,
			"INSERT INTO t (a, b) VALUES (…)", "secret"},
		{"binary bytes", "INSERT INTO `blobs` VALUES (_binary '\x00\xff\x01\n\\'\x7fZEBRA')", false,
			"INSERT INTO `blobs` VALUES (…)", "ZEBRA"},
		{"replace, lower case", "replace into `t` value (7, 'alice@example.com')", false,
			"replace into `t` value (…)", "alice"},
		{"multi-row over several lines", "INSERT INTO t VALUES\n(1, 'a'),\n(2, 'b');", false,
			"INSERT INTO t VALUES (…)", "'a'"},
		{"cut inside a string", "INSERT INTO t SET name = 'Bob Secret", true,
			"INSERT INTO t SET name = '…'…", "Secret"},
		{"numbers in DML", "UPDATE accounts SET balance = 1234.56 WHERE id = 0xCAFE", false,
			"UPDATE accounts SET balance = … WHERE id = …", "1234"},
		{"numbers in DDL are the schema", "CREATE TABLE `t` (`a` varchar(100) DEFAULT 'none', `b` decimal(10,2)) AUTO_INCREMENT=5", false,
			"CREATE TABLE `t` (`a` varchar(100) DEFAULT '…', `b` decimal(10,2)) AUTO_INCREMENT=5", "none"},
		{"conditional comment", "/*!40000 ALTER TABLE `orders` DISABLE KEYS */;", false,
			"/*!40000 ALTER TABLE `orders` DISABLE KEYS */", ""},
		{"hex blob and charset introducer", "INSERT INTO t VALUES (0x5345435245540A, _utf8mb4 X'4142')", false,
			"INSERT INTO t VALUES (…)", "5345"},
		{"second statement on the line is not shown", "DELETE FROM t WHERE name = 'x'; INSERT INTO u VALUES (9)", false,
			"DELETE FROM t WHERE name = '…'", "INSERT"},
		{"control characters in an identifier", "CREATE TABLE `a\tb\x01` (id INT)", false,
			"CREATE TABLE `a\\tb\\x01` (id INT)", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := elideStatement([]byte(tc.in), tc.cut)
			if got != tc.want {
				t.Errorf("elideStatement(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
			if tc.secret != "" && strings.Contains(got, tc.secret) {
				t.Errorf("%q keeps %q", got, tc.secret)
			}
		})
	}
}

func TestElideServerTextLeavesQuotedValuesOut(t *testing.T) {
	cases := []struct{ in, want string }{
		{"You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near ''4111-1111', 'it''s (x)'),(2,' at line 1",
			"You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near '…' at line 1"},
		{"syntax to use near 'a' at line 5 b' at line 1", "syntax to use near '…' at line 1"},
		{"syntax to use near '' at line 1", "syntax to use near '…' at line 1"},
		// The client printed the server's text up to a raw newline inside the quote.
		{"syntax to use near '\x00\xffsecret", "syntax to use near '…'"},
		{"Duplicate entry 'alice@example.com' for key 'email'", "Duplicate entry '…' for key 'email'"},
		{"Duplicate entry '7-it' for key 'x' for key 'PRIMARY'", "Duplicate entry '…' for key 'PRIMARY'"},
		{"Incorrect integer value: 'abc' for column `shop`.`t`.`id` at row 1", "Incorrect integer value: '…' for column `shop`.`t`.`id` at row 1"},
		{"Incorrect string value: '\\xF0\\x9F\\x9A\\x80' for column `t`.`name` at row 3", "Incorrect string value: '…' for column `t`.`name` at row 3"},
		{"Table 'app.missing_table' doesn't exist", "Table 'app.missing_table' doesn't exist"},
		{"Data too long for column 'note' at row 1", "Data too long for column 'note' at row 1"},
	}
	for _, tc := range cases {
		if got := elideServerText(tc.in); got != tc.want {
			t.Errorf("elideServerText(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestEscapeNonPrintableKeepsTextReadable(t *testing.T) {
	for in, want := range map[string]string{
		"plain: Zoë 李雷 🚀 `t`": "plain: Zoë 李雷 🚀 `t`",
		"tab\tnul\x00bell\a":  `tab\tnul\x00bell\a`,
		"bad \xff\xfe utf8":   `bad \xff\xfe utf8`,
		"line\nbreak":         `line\nbreak`,
	} {
		if got := escapeNonPrintable(in); got != want {
			t.Errorf("escapeNonPrintable(%q) = %q, want %q", in, got, want)
		}
	}
}
