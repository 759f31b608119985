package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// errSourceStalled marks a remote source that stopped sending: a hung connection would otherwise
// hold the import, and the template's refresh, forever.
var errSourceStalled = errors.New("the source stalled")

// stallGuard cancels a request when the source sends nothing for timeout. Its clock runs only
// while the agent waits on the source, so a server slow to take the SQL (building an index after
// a table's last row) is never taken for a stalled source.
type stallGuard struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timeout time.Duration
	timer   *time.Timer
}

// newStallGuard returns a guard and the context to run the request in. A zero timeout guards
// nothing.
func newStallGuard(ctx context.Context, timeout time.Duration) *stallGuard {
	g := &stallGuard{timeout: timeout}
	g.ctx, g.cancel = context.WithCancelCause(ctx)
	if timeout > 0 {
		g.timer = time.AfterFunc(timeout, func() { g.cancel(errSourceStalled) })
		g.timer.Stop()
	}
	return g
}

func (g *stallGuard) arm() {
	if g.timer != nil {
		g.timer.Reset(g.timeout)
	}
}

func (g *stallGuard) disarm() {
	if g.timer != nil {
		g.timer.Stop()
	}
}

func (g *stallGuard) release() {
	g.disarm()
	g.cancel(nil)
}

// explain replaces the transport's "context canceled" by what happened, when the guard fired.
func (g *stallGuard) explain(err error) error {
	if err == nil || !errors.Is(context.Cause(g.ctx), errSourceStalled) {
		return err
	}
	return fmt.Errorf("no data for %s: %w", g.timeout, errSourceStalled)
}

// guardedBody is a response body read under a stallGuard.
type guardedBody struct {
	io.ReadCloser
	g *stallGuard
}

func (b *guardedBody) Read(p []byte) (int, error) {
	b.g.arm()
	n, err := b.ReadCloser.Read(p)
	b.g.disarm()
	return n, b.g.explain(err)
}

func (b *guardedBody) Close() error {
	defer b.g.release()
	return b.ReadCloser.Close()
}
