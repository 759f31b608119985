// Package agent is the part of myaas that runs inside the database pods: it imports a template's
// dumps (`agent import`), prepares a cloned datadir and execs the server (`agent start`), and logs
// in for the readiness probe (`agent probe`). It runs in the engine's own image, so it relies only
// on the server binaries that image ships.
package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/myaas/myaas/internal/agentapi"
)

// Run dispatches an agent subcommand.
func Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: myaas agent import|start|probe [flags]")
	}
	switch args[0] {
	case agentapi.CommandImport:
		return runImport(ctx, args[1:])
	case agentapi.CommandStart:
		return runStart(ctx, args[1:])
	case agentapi.CommandProbe:
		return runProbe(ctx, args[1:])
	}
	return fmt.Errorf("unknown agent command %q: want import, start or probe", args[0])
}

// Install copies the running binary to dst, atomically, so that a pod restart that finds a
// half-written file is impossible.
func Install(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install: locate myself: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".myaas-*")
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("install: copy to %s: %w", dst, err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return fmt.Errorf("install: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	return os.Rename(tmp.Name(), dst)
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// serverOptions turns --server-option=name=value into server command-line options. They come
// last, so the template's own settings win over the agent's defaults.
func serverOptions(opts []string) ([]string, error) {
	out := make([]string, 0, len(opts))
	for _, o := range opts {
		name, value, ok := strings.Cut(o, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--server-option %q: want name=value", o)
		}
		out = append(out, "--"+strings.TrimLeft(name, "-")+"="+value)
	}
	return out, nil
}

// bufferPoolSize takes the larger part of the container's memory: the rest is left for the
// server's other buffers and the agent. 128 MiB when the limit is unknown.
func bufferPoolSize() int64 {
	limit := memoryLimit()
	const unknown = 128 << 20
	// Without a limit the downward API reports the node's allocatable memory: not ours to take.
	if limit <= 0 || limit > 64<<30 {
		return unknown
	}
	return max(limit*6/10, 64<<20)
}

// memoryLimit is the container's memory limit in bytes, from the downward API; 0 when unknown.
func memoryLimit() int64 {
	limit, _ := strconv.ParseInt(os.Getenv(agentapi.EnvMemoryLimit), 10, 64)
	return limit
}

// redoLogSize is a large redo log (fewer checkpoints while loading) that still leaves most of the
// template volume to the data: an eighth of the file system, between 64 MiB and 1 GiB.
func redoLogSize(datadir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(datadir), &st); err != nil {
		return 0, fmt.Errorf("size of the volume holding %s: %w", datadir, err)
	}
	size := int64(st.Blocks) * st.Bsize
	if declared, _ := strconv.ParseInt(os.Getenv(agentapi.EnvVolumeBytes), 10, 64); declared > 0 {
		size = min(size, declared)
	}
	return logSizeFor(size), nil
}

func logSizeFor(volumeBytes int64) int64 {
	return min(max(volumeBytes/8, 64<<20), 1<<30) &^ (1<<20 - 1)
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("agent "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

// writeTerminationLog leaves a message where Kubernetes shows it as the container's
// termination message, which the controller copies into the template's status.
func writeTerminationLog(path, msg string) {
	if path == "" {
		return
	}
	const max = 4000 // Kubernetes keeps at most 4096 bytes
	if len(msg) > max {
		msg = msg[:max]
	}
	_ = os.WriteFile(path, []byte(msg), 0o644)
}
