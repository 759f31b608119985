package agent

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/myaas/myaas/internal/agentapi"
)

// decompressor wraps r by the file name's extension: .gz and .zst are decompressed while
// streaming, anything else is read as plain SQL.
func decompressor(name string, r io.Reader) (io.ReadCloser, error) {
	return decompressAs(compression(name), r)
}

// decompressAs wraps r in the decompressor of a format compression names, "" for none.
func decompressAs(format string, r io.Reader) (io.ReadCloser, error) {
	switch format {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("not a gzip file: %w", err)
		}
		return zr, nil
	case "zstd":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(2))
		if err != nil {
			return nil, fmt.Errorf("not a zstd file: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

// compression names the format a file's extension announces, "" for plain SQL.
func compression(name string) string {
	switch {
	case strings.HasSuffix(name, ".gz"):
		return "gzip"
	case strings.HasSuffix(name, ".zst"), strings.HasSuffix(name, ".zstd"):
		return "zstd"
	}
	return ""
}

// readFailureReason tells a source that stopped sending, which another attempt may get past, from
// one that sent something wrong.
func readFailureReason(err error) string {
	if errors.Is(err, errSourceStalled) {
		return agentapi.ReasonSourceStalled
	}
	return agentapi.ReasonSourceError
}
