package agent

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/myaas/myaas/internal/agentapi"
)

// loadWorkers is how many client sessions load data at once: the pod's CPU limit, or every CPU
// the agent sees when it has none. Parsing SQL costs the server about one core per session, so
// more sessions than cores only contend.
func loadWorkers() int {
	n, _ := strconv.Atoi(os.Getenv(agentapi.EnvCPULimit))
	if n <= 0 || n > runtime.NumCPU() {
		n = runtime.NumCPU()
	}
	return min(n, 32)
}

// sqlOrigin places a part of a file, sent to a client of its own after a prelude, back in the
// file: the client counts lines from the prelude's first.
type sqlOrigin struct {
	// The prelude is the file's own first lines (the dump's header), so it needs no shifting.
	preludeLines int
	preludeBytes int64
	// line and offset are where the part starts in the file.
	line   int
	offset int64
}

// place turns a line and offset of the client's input into the file's.
func (o *sqlOrigin) place(line int, offset int64) (int, int64) {
	if o == nil || line <= o.preludeLines {
		return line, offset
	}
	line = line - o.preludeLines - 1 + o.line
	if offset >= 0 {
		offset = offset - o.preludeBytes + o.offset
	}
	return line, offset
}

// loadPool runs loads, each in a client session of its own, several at once. The first failure stops the others
// and is the one reported: the rest are its consequences.
type loadPool struct {
	ctx    context.Context
	cancel context.CancelFunc
	work   chan func(context.Context) error
	wg     sync.WaitGroup
	once   sync.Once
	closed sync.Once
	err    error
}

// newLoadPool starts workers that each run one load at a time. The queue holds as many loads as
// there are workers, so a producer reading ahead keeps every worker busy with bounded memory.
func newLoadPool(ctx context.Context, workers int) *loadPool {
	ctx, cancel := context.WithCancel(ctx)
	p := &loadPool{ctx: ctx, cancel: cancel, work: make(chan func(context.Context) error, workers)}
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for load := range p.work {
				if p.ctx.Err() != nil {
					continue
				}
				if err := load(p.ctx); err != nil {
					p.fail(err)
				}
			}
		}()
	}
	return p
}

func (p *loadPool) fail(err error) {
	p.once.Do(func() {
		p.err = err
		p.cancel()
	})
}

// submit queues a load; it returns false once the pool has failed or stopped.
func (p *loadPool) submit(load func(context.Context) error) bool {
	select {
	case p.work <- load:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// failed says the pool has stopped: a worker failed or the import is being stopped.
func (p *loadPool) failed() bool { return p.ctx.Err() != nil }

// wait lets the queued inputs finish and returns the first failure. A pool stopped from outside
// reports why it stopped. It may be called again, with the same result.
func (p *loadPool) wait() error {
	p.closed.Do(func() { close(p.work) })
	p.wg.Wait()
	p.once.Do(func() { p.err = p.ctx.Err() })
	p.cancel()
	return p.err
}

// abort stops the workers, for a producer that failed itself.
func (p *loadPool) abort() {
	p.fail(context.Canceled)
	_ = p.wait()
}
