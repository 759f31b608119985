package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
)

// maxRedirects matches what browsers and curl allow before giving up.
const maxRedirects = 10

// httpFiles is the one file at rawURL, with basic auth and headers from the mounted Secret.
func httpFiles(rawURL, authDir string, insecure bool, stall time.Duration) ([]dumpFile, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL in full; the cause alone names what is wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("source URL: %w", err)
	}
	if u.User != nil {
		// Credentials in the URL would sit in the pod's arguments for anyone who can read pods.
		return nil, failWith(agentapi.ReasonSourceError, fmt.Errorf("source URL %s carries credentials: put them in the Secret named by spec.source.http.secretRef", redactURL(u)))
	}
	auth, err := readAuth(authDir)
	if err != nil {
		return nil, err
	}
	if auth.any() && u.Scheme != "https" && !insecure {
		return nil, failWith(agentapi.ReasonSourceError, fmt.Errorf("source URL %s is plain %s: the credentials of spec.source.http.secretRef would travel in clear text; use https:// or set spec.source.http.insecure", redactURL(u), u.Scheme))
	}
	client := &http.Client{CheckRedirect: keepCredentialsOnOrigin(u, auth)}
	// answered is where the last GET was answered, and how: an empty answer is named with it.
	var answered, status string
	empty := func() error {
		return failWith(agentapi.ReasonEmptyResponse, fmt.Errorf("GET %s: the server answered %s with an empty body: no dump to load", answered, status))
	}
	open := func(ctx context.Context) (io.ReadCloser, int64, error) {
		g := newStallGuard(ctx, stall)
		req, err := http.NewRequestWithContext(g.ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			g.release()
			return nil, 0, err
		}
		auth.apply(req)
		g.arm()
		resp, err := client.Do(req)
		g.disarm()
		if err != nil {
			err = g.explain(redactURLError(err))
			g.release()
			return nil, 0, failWith(readFailureReason(err), fmt.Errorf("GET %s: %w", redactURL(u), err))
		}
		answered, status = redactURL(u), resp.Status
		if final := resp.Request.URL; final.String() != u.String() {
			answered += " (redirected to " + redactURL(final) + ")"
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			g.release()
			reason := agentapi.ReasonSourceError
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
				reason = agentapi.ReasonNoSourceFile
			}
			return nil, 0, failWith(reason, fmt.Errorf("GET %s: %s", answered, resp.Status))
		}
		return &guardedBody{ReadCloser: resp.Body, g: g}, max(resp.ContentLength, 0), nil
	}
	return []dumpFile{{Name: path.Base(u.Path), Open: open, Empty: empty}}, nil
}

// keepCredentialsOnOrigin sends the Secret's credentials only to the URL's own scheme, host and
// port. Go's client already drops Authorization for other domains, but not custom headers (an
// API key header, say), and it keeps Authorization for subdomains and on a downgrade to http.
func keepCredentialsOnOrigin(origin *url.URL, auth httpAuth) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if req.URL.Scheme == origin.Scheme && req.URL.Host == origin.Host {
			return nil
		}
		req.Header.Del("Authorization")
		for _, h := range auth.headers {
			req.Header.Del(h[0])
		}
		return nil
	}
}

// redactURL is how a URL appears in messages: without user info, and with its query string
// hidden, since presigned URLs carry their signature there.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		c.RawQuery = "REDACTED"
	}
	return c.String()
}

// redactURLError hides the URL net/http puts into its errors: it names the URL in full.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil {
		return ue.Err
	}
	return fmt.Errorf("%s %s: %w", ue.Op, redactURL(u), ue.Err)
}

type httpAuth struct {
	user, password string
	headers        [][2]string
}

func (a httpAuth) any() bool { return a.user != "" || a.password != "" || len(a.headers) > 0 }

func (a httpAuth) apply(req *http.Request) {
	if a.user != "" || a.password != "" {
		req.SetBasicAuth(a.user, a.password)
	}
	for _, h := range a.headers {
		req.Header.Set(h[0], h[1])
	}
}

// readAuth reads the keys of the mounted source Secret: username, password, headers.
func readAuth(dir string) (httpAuth, error) {
	var a httpAuth
	if dir == "" {
		return a, nil
	}
	read := func(key string) string {
		b, _ := os.ReadFile(filepath.Join(dir, key))
		return strings.TrimRight(string(b), "\r\n")
	}
	a.user, a.password = read(agentapi.SourceKeyUsername), read(agentapi.SourceKeyPassword)
	sc := bufio.NewScanner(strings.NewReader(read(agentapi.SourceKeyHeaders)))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		name, value, ok := strings.Cut(text, ":")
		if !ok {
			return a, fmt.Errorf("source Secret key headers, line %d: want \"Name: value\"", line)
		}
		a.headers = append(a.headers, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
	}
	return a, nil
}
