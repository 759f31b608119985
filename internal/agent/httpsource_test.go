package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
)

// sourceSecret writes the keys of an HTTP source Secret as the kubelet mounts them.
func sourceSecret(t *testing.T, keys map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range keys {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// seenHeaders records what each request carried.
type seenHeaders struct {
	mu   sync.Mutex
	auth map[string][2]string // path -> Authorization, X-Api-Key
}

func (s *seenHeaders) record(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth == nil {
		s.auth = map[string][2]string{}
	}
	s.auth[r.URL.Path] = [2]string{r.Header.Get("Authorization"), r.Header.Get("X-Api-Key")}
}

func (s *seenHeaders) at(path string) [2]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth[path]
}

func fetchAll(t *testing.T, f dumpFile) (string, error) {
	t.Helper()
	body, _, err := f.Open(context.Background())
	if err != nil {
		return "", err
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	return string(b), err
}

// The Secret's credentials go to the URL's own host, and to no host a redirect points at.
func TestHTTPSourceKeepsCredentialsOnItsOwnHost(t *testing.T) {
	var seen seenHeaders
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.record(r)
		_, _ = io.WriteString(w, "SELECT 'elsewhere';\n")
	}))
	defer other.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.record(r)
		switch r.URL.Path {
		case "/moved-here":
			http.Redirect(w, r, "/shop.sql", http.StatusFound)
		case "/moved-away":
			http.Redirect(w, r, other.URL+"/shop.sql", http.StatusFound)
		default:
			_, _ = io.WriteString(w, "SELECT 'origin';\n")
		}
	}))
	defer origin.Close()
	auth := sourceSecret(t, map[string]string{
		agentapi.SourceKeyUsername: "backup", agentapi.SourceKeyPassword: "s3cret",
		agentapi.SourceKeyHeaders: "X-Api-Key: k-123\n",
	})

	files, err := httpFiles(origin.URL+"/moved-here", auth, true, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := fetchAll(t, files[0]); err != nil || body != "SELECT 'origin';\n" {
		t.Fatalf("same-host redirect: %q, %v", body, err)
	}
	if got := seen.at("/shop.sql"); got[0] == "" || got[1] != "k-123" {
		t.Fatalf("a redirect on the same host lost the credentials: %q", got)
	}

	files, err = httpFiles(origin.URL+"/moved-away", auth, true, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := fetchAll(t, files[0]); err != nil || body != "SELECT 'elsewhere';\n" {
		t.Fatalf("cross-host redirect: %q, %v", body, err)
	}
	if got := seen.at("/moved-away"); got[0] == "" || got[1] != "k-123" {
		t.Fatalf("the URL's own host got no credentials: %q", got)
	}
	// Another port is another origin: Go's client alone would keep Authorization here.
	if got := seen.at("/shop.sql"); got != [2]string{} {
		t.Fatalf("the redirect target got the Secret's credentials: %q", got)
	}
}

func TestHTTPSourceRefusesExposedCredentials(t *testing.T) {
	auth := sourceSecret(t, map[string]string{agentapi.SourceKeyUsername: "backup", agentapi.SourceKeyPassword: "s3cret"})
	headersOnly := sourceSecret(t, map[string]string{agentapi.SourceKeyHeaders: "Authorization: Bearer t0ken"})
	cases := []struct {
		name, url, auth string
		insecure        bool
		want            string // "" when accepted
	}{
		{"credentials in the URL", "https://backup:s3cret@dumps.example/shop.sql", "", false, "carries credentials: put them in the Secret named by spec.source.http.secretRef"},
		{"basic auth over http", "http://dumps.example/shop.sql", auth, false, "credentials of spec.source.http.secretRef would travel in clear text"},
		{"a header over http", "http://dumps.example/shop.sql", headersOnly, false, "use https:// or set spec.source.http.insecure"},
		{"basic auth over http, allowed", "http://dumps.example/shop.sql", auth, true, ""},
		{"basic auth over https", "https://dumps.example/shop.sql", auth, false, ""},
		{"no credentials over http", "http://dumps.example/shop.sql", "", false, ""},
	}
	for _, tc := range cases {
		_, err := httpFiles(tc.url, tc.auth, tc.insecure, time.Minute)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("%s: the message shows the password: %v", tc.name, err)
		}
	}
}

// Presigned URLs carry their signature in the query string: no message shows it.
func TestHTTPSourceMessagesHideTheQueryString(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/gone.sql?X-Amz-Signature=second-secret", http.StatusFound)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, u := range []string{
		srv.URL + "/shop.sql?X-Amz-Signature=first-secret",
		srv.URL + "/redirect?X-Amz-Signature=first-secret",
		closed.URL + "/shop.sql?X-Amz-Signature=first-secret",
	} {
		files, err := httpFiles(u, "", false, time.Minute)
		if err == nil {
			_, err = fetchAll(t, files[0])
		}
		if err == nil {
			t.Fatalf("%s: no error", srv.URL)
		}
		if msg := err.Error(); strings.Contains(msg, "secret") || !strings.Contains(msg, "REDACTED") {
			t.Errorf("message %q shows the query string or hides that it was there", msg)
		}
	}
}
