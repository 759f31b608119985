package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/myaas/myaas/internal/agentapi"
)

// dumpFile is one file of a source, loaded in name order.
type dumpFile struct {
	// Name identifies the file in messages: a relative path, a URL or an S3 key.
	Name string
	// Size in bytes, 0 when unknown until opened.
	Size int64
	// Path is the file in a mounted volume, "" for a remote source: tools that seek need it.
	Path string
	Open func(ctx context.Context) (io.ReadCloser, int64, error)
	// Empty is the failure of a file that opens with 0 bytes, for a source where that is more
	// than an empty file (an HTTP server's answer); nil: an empty file.
	Empty func() error
	// Dir is set instead of Open for a directory holding a physical backup.
	Dir string
	// closeHeld closes a body opened ahead (to look at its content) that no one loaded.
	closeHeld func()
}

// emptyFailure is why f, opened with 0 bytes, is no dump.
func (f dumpFile) emptyFailure() error {
	if f.Empty != nil {
		return f.Empty()
	}
	return failWith(agentapi.ReasonEmptySource, fmt.Errorf("%s is empty: 0 bytes", f.Name))
}

// discard closes what was opened of f ahead of loading it.
func (f dumpFile) discard() {
	if f.closeHeld != nil {
		f.closeHeld()
	}
}

// sourceConfig is the template's source, as flags.
type sourceConfig struct {
	dir, glob string
	// format is one of agentapi's SourceFormat values.
	format             string
	url, authDir       string
	httpInsecure       bool
	s3Endpoint, bucket string
	s3Key, s3Prefix    string
	s3Region           string
	s3Insecure         bool
	// stallTimeout fails a remote source that sends nothing for this long.
	stallTimeout time.Duration
}

func (c sourceConfig) files(ctx context.Context) ([]dumpFile, error) {
	switch {
	case c.glob != "":
		backups := c.format != agentapi.SourceFormatSQL
		// A directory named alone is mydumper's, unless it holds a physical backup.
		if dir, ok := c.mydumperDir(); ok && (!backups || findFile(filepath.Join(c.dir, dir), checkpointsFiles) == "") {
			return dirFiles(c.dir, filepath.Join(dir, "*"), false)
		}
		return dirFiles(c.dir, c.glob, backups)
	case c.url != "":
		return httpFiles(c.url, c.authDir, c.httpInsecure, c.stallTimeout)
	case c.bucket != "":
		return s3Files(ctx, c)
	}
	return nil, fmt.Errorf("no source: set --source-glob, --source-url or --s3-bucket")
}

// dirFiles lists the files matching glob under dir, in name order, and the directories holding
// a physical backup if backups are wanted.
func dirFiles(dir, glob string, backups bool) ([]dumpFile, error) {
	matches, err := filepath.Glob(filepath.Join(dir, glob))
	if err != nil {
		return nil, fmt.Errorf("source path %q: %w", glob, err)
	}
	sort.Strings(matches)
	var files []dumpFile
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", m, err)
		}
		rel, _ := filepath.Rel(dir, m)
		if st.IsDir() {
			// A directory is a source only when it holds a physical backup.
			if backups && findFile(m, checkpointsFiles) != "" {
				files = append(files, dumpFile{Name: rel, Dir: m})
			}
			continue
		}
		p := m
		files = append(files, dumpFile{Name: rel, Size: st.Size(), Path: p, Open: func(context.Context) (io.ReadCloser, int64, error) {
			f, err := os.Open(p)
			return f, st.Size(), err
		}})
	}
	if len(files) == 0 {
		return nil, failWith(agentapi.ReasonNoSourceFile, fmt.Errorf("source path %q matches no file in the volume", glob))
	}
	return files, nil
}

// s3Files lists the object, or the objects under the prefix in name order.
func s3Files(ctx context.Context, c sourceConfig) ([]dumpFile, error) {
	client, err := minio.New(c.s3Endpoint, &minio.Options{
		Creds:  credentials.NewEnvAWS(),
		Secure: !c.s3Insecure,
		Region: c.s3Region,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %s: %w", c.s3Endpoint, err)
	}
	open := func(key string) func(ctx context.Context) (io.ReadCloser, int64, error) {
		return func(ctx context.Context) (io.ReadCloser, int64, error) {
			g := newStallGuard(ctx, c.stallTimeout)
			fail := func(err error) error {
				err = g.explain(err)
				g.release()
				reason := readFailureReason(err)
				if minio.ToErrorResponse(err).Code == "NoSuchKey" {
					reason = agentapi.ReasonNoSourceFile
				}
				return failWith(reason, fmt.Errorf("s3://%s/%s: %w", c.bucket, key, err))
			}
			obj, err := client.GetObject(g.ctx, c.bucket, key, minio.GetObjectOptions{})
			if err != nil {
				return nil, 0, fail(err)
			}
			g.arm()
			st, err := obj.Stat()
			g.disarm()
			if err != nil {
				obj.Close()
				return nil, 0, fail(err)
			}
			return &guardedBody{ReadCloser: obj, g: g}, st.Size, nil
		}
	}
	if c.s3Key != "" {
		return []dumpFile{{Name: c.s3Key, Open: open(c.s3Key)}}, nil
	}
	var files []dumpFile
	g := newStallGuard(ctx, c.stallTimeout)
	defer g.release()
	g.arm()
	for obj := range client.ListObjects(g.ctx, c.bucket, minio.ListObjectsOptions{Prefix: c.s3Prefix, Recursive: true}) {
		g.arm()
		if obj.Err != nil {
			err := g.explain(obj.Err)
			return nil, failWith(readFailureReason(err), fmt.Errorf("list s3://%s/%s: %w", c.bucket, c.s3Prefix, err))
		}
		if strings.HasSuffix(obj.Key, "/") {
			continue
		}
		files = append(files, dumpFile{Name: obj.Key, Size: obj.Size, Open: open(obj.Key)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	if len(files) == 0 {
		return nil, failWith(agentapi.ReasonNoSourceFile, fmt.Errorf("s3://%s/%s: no object under this prefix", c.bucket, c.s3Prefix))
	}
	return files, nil
}
