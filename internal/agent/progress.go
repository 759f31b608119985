package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
)

// tracker counts the bytes read from the sources and derives rate and ETA from them.
type tracker struct {
	mu      sync.Mutex
	p       agentapi.Progress
	started time.Time
	now     func() time.Time
}

func newTracker(now func() time.Time) *tracker {
	return &tracker{now: now, started: now(), p: agentapi.Progress{Step: agentapi.StepInitializing}}
}

func (t *tracker) setStep(step string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Step = step
}

func (t *tracker) setTotal(total int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.BytesTotal = total
}

func (t *tracker) setFile(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.CurrentFile = name
}

func (t *tracker) add(n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.BytesDone += n
}

// snapshot returns the figures as of now.
func (t *tracker) snapshot() agentapi.Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.p
	elapsed := t.now().Sub(t.started).Seconds()
	if elapsed > 0 {
		p.BytesPerSecond = float64(p.BytesDone) / elapsed
	}
	if p.BytesTotal > 0 {
		p.Percent = min(100, 100*float64(p.BytesDone)/float64(p.BytesTotal))
		if p.BytesPerSecond > 0 && p.BytesDone < p.BytesTotal {
			p.ETASeconds = float64(p.BytesTotal-p.BytesDone) / p.BytesPerSecond
		}
	}
	return p
}

// progressLine is the log line form.
func progressLine(p agentapi.Progress) string {
	s := fmt.Sprintf("%s %s: %s", p.Step, p.CurrentFile, mib(p.BytesDone))
	if p.BytesTotal > 0 {
		s += fmt.Sprintf(" of %s (%.1f%%)", mib(p.BytesTotal), p.Percent)
	}
	s += fmt.Sprintf(", %s/s", mib(int64(p.BytesPerSecond)))
	if p.ETASeconds > 0 {
		s += fmt.Sprintf(", ETA %s", (time.Duration(p.ETASeconds) * time.Second).String())
	}
	return s
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// countingReader feeds the tracker as the source is read. It keeps the source's own error, which
// tells a failed download from a file that does not decompress.
type countingReader struct {
	r   io.Reader
	t   *tracker
	n   int64
	err error
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	c.t.add(int64(n))
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// serveProgress serves GET /progress until ctx ends. An empty addr serves nothing.
func serveProgress(ctx context.Context, addr string, t *tracker) error {
	if addr == "" {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("progress endpoint %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(agentapi.ProgressPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(t.snapshot())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("progress endpoint: %v", err)
		}
	}()
	return nil
}

// logProgress writes a progress line every interval until ctx ends.
func logProgress(ctx context.Context, t *tracker, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			log.Print(progressLine(t.snapshot()))
		}
	}
}
