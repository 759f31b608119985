// Command kubectl-myaas is the kubectl plugin for myaas: throw-away databases for developers and
// CI pipelines, created, reached, reset and deleted in one command each.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}).ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	// A client's own exit status is passed through, so `connect -- -e ...` behaves as the client.
	var exit exitError
	if errors.As(err, &exit) {
		os.Exit(exit.code)
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}

// exitError carries the exit status of a database client run by connect.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("client exited with status %d", e.code) }
