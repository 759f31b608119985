package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// connection is what a client needs, read from the instance's credentials Secret.
type connection struct {
	Name     string `json:"name"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	Database string `json:"database"`
	URI      string `json:"uri"`
	JDBCURI  string `json:"jdbc-uri"`
}

func connectionFromSecret(name string, data map[string][]byte) (connection, error) {
	c := connection{
		Name: name, Host: string(data["host"]), Username: string(data["username"]), Password: string(data["password"]),
		Database: string(data["database"]), URI: string(data["uri"]), JDBCURI: string(data["jdbc-uri"]),
	}
	port, err := strconv.Atoi(string(data["port"]))
	if err != nil || c.Host == "" || c.Username == "" {
		return c, fmt.Errorf("the credentials Secret of %s is incomplete (host %q, port %q, username %q)", name, c.Host, data["port"], c.Username)
	}
	c.Port = port
	return c, nil
}

// at is the same connection reached at another address (a port-forward, the pod's IP): the URIs
// are rewritten so that what is printed can be used as is.
func (c connection) at(host string, port int) connection {
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	old := net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	c.Host, c.Port = host, port
	if u, err := url.Parse(c.URI); err == nil && c.URI != "" {
		u.Host = hostPort
		c.URI = u.String()
	}
	c.JDBCURI = strings.Replace(c.JDBCURI, "//"+old+"/", "//"+hostPort+"/", 1)
	// The server's certificate names its Service, not this address: the printed strings still
	// verify it against the CA, but no longer ask for the name to match.
	c.URI = strings.Replace(c.URI, "ssl-mode=VERIFY_IDENTITY", "ssl-mode=VERIFY_CA", 1)
	c.JDBCURI = strings.NewReplacer("sslMode=verify-full", "sslMode=verify-ca", "sslMode=VERIFY_IDENTITY", "sslMode=VERIFY_CA").Replace(c.JDBCURI)
	return c
}

// Output formats of create (and of the ci helpers): env for eval and shell scripts, github-env
// for $GITHUB_ENV (which takes values literally: quotes would end up in the value), json, yaml,
// uri.
var outputFormats = []string{"env", "github-env", "json", "yaml", "uri"}

func checkOutputFormat(f string) error {
	for _, ok := range outputFormats {
		if f == ok {
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q: use one of %s", f, strings.Join(outputFormats, ", "))
}

// envPairs are the variables of -o env, in a fixed order so that diffs and logs stay readable.
func (c connection) envPairs() [][2]string {
	return [][2]string{
		{"MYAAS_HOST", c.Host},
		{"MYAAS_PORT", strconv.Itoa(c.Port)},
		{"MYAAS_USERNAME", c.Username},
		{"MYAAS_PASSWORD", c.Password},
		{"MYAAS_DATABASE", c.Database},
		{"MYAAS_URI", c.URI},
		{"MYAAS_JDBC_URI", c.JDBCURI},
	}
}

func writeConnection(w io.Writer, format string, c connection) error {
	var err error
	switch format {
	case "env":
		for _, kv := range c.envPairs() {
			if _, err = fmt.Fprintf(w, "%s=%s\n", kv[0], shellQuote(kv[1])); err != nil {
				break
			}
		}
	case "github-env":
		err = writeGitHubFile(w, c.envPairs())
	case "uri":
		_, err = fmt.Fprintln(w, c.URI)
	case "json":
		b, _ := json.MarshalIndent(c, "", "  ") // a struct of strings and ints always marshals
		_, err = fmt.Fprintf(w, "%s\n", b)
	case "yaml":
		b, _ := yaml.Marshal(c)
		_, err = w.Write(b)
	default:
		return checkOutputFormat(format)
	}
	if err != nil {
		return fmt.Errorf("write connection details: %w", err)
	}
	return nil
}

// githubOutputs are the action's outputs, named as in ci/github/action.yml.
func (c connection) githubOutputs() [][2]string {
	return [][2]string{
		{"name", c.Name},
		{"host", c.Host},
		{"port", strconv.Itoa(c.Port)},
		{"username", c.Username},
		{"password", c.Password},
		{"database", c.Database},
		{"uri", c.URI},
		{"jdbc-uri", c.JDBCURI},
	}
}

// writeGitHubFile writes name=value lines as $GITHUB_ENV and $GITHUB_OUTPUT read them; a value
// with a newline uses the file's heredoc form, whose delimiter must not occur in the value.
func writeGitHubFile(w io.Writer, pairs [][2]string) error {
	for _, kv := range pairs {
		var err error
		if strings.ContainsAny(kv[1], "\r\n") {
			delim := "MYAAS_EOF"
			for strings.Contains(kv[1], delim) {
				delim += "_"
			}
			_, err = fmt.Fprintf(w, "%s<<%s\n%s\n%s\n", kv[0], delim, kv[1], delim)
		} else {
			_, err = fmt.Fprintf(w, "%s=%s\n", kv[0], kv[1])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// shellQuote quotes a value for POSIX shells only when it needs it, so that the common case
// (generated passwords have no special characters) stays readable.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("@%+=:,./_-", r)
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
