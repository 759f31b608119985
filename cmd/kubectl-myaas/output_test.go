package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var testConn = connection{
	Name: "pr-1", Host: "pr-1.ci.svc", Port: 3306, Username: "app", Password: "Secr3tPass", Database: "app",
	URI:     "mysql://app:Secr3tPass@pr-1.ci.svc:3306/app",
	JDBCURI: "jdbc:mariadb://pr-1.ci.svc:3306/app?password=Secr3tPass&user=app",
}

func secretData(c connection) map[string][]byte {
	return map[string][]byte{
		"host": []byte(c.Host), "port": []byte("3306"), "username": []byte(c.Username), "password": []byte(c.Password),
		"database": []byte(c.Database), "uri": []byte(c.URI), "jdbc-uri": []byte(c.JDBCURI),
	}
}

func TestConnectionFromSecret(t *testing.T) {
	got, err := connectionFromSecret("pr-1", secretData(testConn))
	if err != nil || got != testConn {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := connectionFromSecret("pr-1", map[string][]byte{"host": []byte("h")}); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("an incomplete Secret: %v", err)
	}
}

func TestOutputFormats(t *testing.T) {
	out := func(format string) string {
		var b bytes.Buffer
		if err := writeConnection(&b, format, testConn); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		return b.String()
	}
	env := out("env")
	for _, want := range []string{"MYAAS_HOST=pr-1.ci.svc\n", "MYAAS_PORT=3306\n", "MYAAS_USERNAME=app\n", "MYAAS_PASSWORD=Secr3tPass\n",
		"MYAAS_DATABASE=app\n", "MYAAS_URI=mysql://app:Secr3tPass@pr-1.ci.svc:3306/app\n",
		"MYAAS_JDBC_URI='jdbc:mariadb://pr-1.ci.svc:3306/app?password=Secr3tPass&user=app'\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("-o env lacks %q:\n%s", want, env)
		}
	}
	// $GITHUB_ENV keeps quotes: there the values go unquoted.
	if gh := out("github-env"); !strings.Contains(gh, "MYAAS_JDBC_URI=jdbc:mariadb://pr-1.ci.svc:3306/app?password=Secr3tPass&user=app\n") {
		t.Errorf("-o github-env:\n%s", gh)
	}
	if u := out("uri"); u != testConn.URI+"\n" {
		t.Errorf("-o uri: %q", u)
	}
	var fromJSON, fromYAML map[string]any
	if err := json.Unmarshal([]byte(out("json")), &fromJSON); err != nil || fromJSON["jdbc-uri"] != testConn.JDBCURI || fromJSON["port"] != 3306.0 {
		t.Errorf("-o json: %v %v", fromJSON, err)
	}
	if err := yaml.Unmarshal([]byte(out("yaml")), &fromYAML); err != nil || fromYAML["password"] != testConn.Password {
		t.Errorf("-o yaml: %v %v", fromYAML, err)
	}
	if err := writeConnection(&bytes.Buffer{}, "table", testConn); err == nil || !strings.Contains(err.Error(), "env, github-env") {
		t.Errorf("unknown format: %v", err)
	}
}

// What -o env prints must survive eval in a real shell, whatever the password holds.
func TestEnvOutputEvaluatesInShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	c := testConn
	c.Password = `it's a "pass" $HOME; rm -rf / &`
	var b bytes.Buffer
	if err := writeConnection(&b, "env", c); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sh, "-c", b.String()+`printf '%s|%s' "$MYAAS_PASSWORD" "$MYAAS_JDBC_URI"`)
	cmd.Env = []string{"HOME=/nowhere"}
	got, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := c.Password + "|" + c.JDBCURI; string(got) != want {
		t.Fatalf("eval gave %q, want %q", got, want)
	}
}

func TestGitHubFileMultiline(t *testing.T) {
	var b bytes.Buffer
	if err := writeGitHubFile(&b, [][2]string{{"a", "one"}, {"b", "two\nMYAAS_EOF\nlines"}}); err != nil {
		t.Fatal(err)
	}
	want := "a=one\nb<<MYAAS_EOF_\ntwo\nMYAAS_EOF\nlines\nMYAAS_EOF_\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

func TestConnectionAt(t *testing.T) {
	c := testConn.at("127.0.0.1", 40001)
	if c.Host != "127.0.0.1" || c.Port != 40001 || c.URI != "mysql://app:Secr3tPass@127.0.0.1:40001/app" ||
		c.JDBCURI != "jdbc:mariadb://127.0.0.1:40001/app?password=Secr3tPass&user=app" {
		t.Fatalf("%+v", c)
	}
	if c := testConn.at("fd00::1", 3306); !strings.Contains(c.URI, "@[fd00::1]:3306/") {
		t.Fatalf("IPv6: %s", c.URI)
	}
	// Reached at another address, the strings of a TLS instance verify the CA, not the name.
	for _, tc := range []struct{ uri, jdbc, wantURI, wantJDBC string }{
		{"mysql://app:pw@pr-1.ci.svc:3306/app?ssl-mode=VERIFY_IDENTITY", "jdbc:mariadb://pr-1.ci.svc:3306/app?password=pw&sslMode=verify-full&user=app",
			"mysql://app:pw@127.0.0.1:40001/app?ssl-mode=VERIFY_CA", "jdbc:mariadb://127.0.0.1:40001/app?password=pw&sslMode=verify-ca&user=app"},
		{"mysql://app:pw@pr-1.ci.svc:3306/app?ssl-mode=VERIFY_IDENTITY", "jdbc:mysql://pr-1.ci.svc:3306/app?password=pw&sslMode=VERIFY_IDENTITY&user=app",
			"mysql://app:pw@127.0.0.1:40001/app?ssl-mode=VERIFY_CA", "jdbc:mysql://127.0.0.1:40001/app?password=pw&sslMode=VERIFY_CA&user=app"},
	} {
		tls := testConn
		tls.URI, tls.JDBCURI = tc.uri, tc.jdbc
		if c := tls.at("127.0.0.1", 40001); c.URI != tc.wantURI || c.JDBCURI != tc.wantJDBC {
			t.Errorf("%s → %s, %s", tc.jdbc, c.URI, c.JDBCURI)
		}
	}
}

func TestClientArgsKeepThePasswordOffTheCommandLine(t *testing.T) {
	args := clientArgsFor(testConn, []string{"-e", "SELECT 1"})
	joined := strings.Join(args, " ")
	if strings.Contains(joined, testConn.Password) {
		t.Fatalf("password on the command line: %s", joined)
	}
	if args[len(args)-2] != "-e" || !strings.Contains(joined, "--database=app") || !strings.Contains(joined, "--host=pr-1.ci.svc") {
		t.Fatalf("args %q", args)
	}
}
