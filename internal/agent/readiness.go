package agent

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// readiness answers the kubelet's readiness probe over HTTP with the login `agent probe` makes:
// the instance's own credentials, on the server's socket. An exec probe costs the node a runtime
// call, a process in the container and the agent's start each time; twenty instances starting at
// once pay that twenty times over while the node is busiest.
type readiness struct {
	eng            engine.Engine
	addr           string // the server's socket
	credentialsDir string
	timeout        time.Duration

	mu      sync.Mutex // one login at a time; a probe that overlaps the last waits for it
	lastErr string     // logged when it changes, not on every probe
	passed  bool       // a login has passed since the agent started
}

// listenReadiness opens the probe's port before the server starts, so that a port already taken
// fails the start with a message rather than leaving a pod that is never Ready. Port 0 serves
// nothing (a pod of an older operator, which probes with `agent probe`).
func listenReadiness(port int) (net.Listener, error) {
	if port == 0 {
		return nil, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("readiness probe port %d: %w", port, err)
	}
	return l, nil
}

// serve answers on l until ctx ends; l nil serves nothing.
func (r *readiness) serve(ctx context.Context, l net.Listener) {
	if l == nil {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.ReadinessPath, r.handle)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("readiness probe: %v", err)
	}
}

func (r *readiness) handle(w http.ResponseWriter, req *http.Request) {
	err := r.check(req.Context())
	if err != nil {
		// The kubelet records the body in the pod's events: the reason, never a credential
		// (the login's errors name the user at most).
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// check logs in with the mounted Secret as it is now: a changed password is probed as soon as
// the kubelet has refreshed the Secret, as `agent probe` would. Until the first login passes, a
// probe waits for the starting server (within its time-out) rather than failing at once: the
// pod turns Ready as soon as the server does, not at the next probe ten seconds later, and a
// normal start leaves no "probe failed" warning among the pod's events.
func (r *readiness) check(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	deadline := time.Now().Add(r.timeout)
	err := r.login(ctx, r.timeout)
	for err != nil && !r.passed && time.Until(deadline) > startRetry {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(startRetry):
		}
		err = r.login(ctx, time.Until(deadline))
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != r.lastErr {
		if err != nil {
			log.Printf("readiness: %v", err)
		} else {
			log.Print("readiness: the instance's credentials log in")
		}
		r.lastErr = msg
	}
	r.passed = r.passed || err == nil
	return err
}

// startRetry paces a first probe's logins while the server starts.
const startRetry = 100 * time.Millisecond

func (r *readiness) login(ctx context.Context, timeout time.Duration) error {
	creds, err := readUserCredentials(r.credentialsDir)
	if err != nil {
		return err
	}
	return probe(ctx, r.eng, r.addr, creds.Username, creds.Password, creds.Database, timeout)
}
