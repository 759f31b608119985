package agent

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// decompressor wraps r by the file name's extension: .gz and .zst are decompressed while
// streaming, anything else is read as plain SQL.
func decompressor(name string, r io.Reader) (io.ReadCloser, error) {
	switch {
	case strings.HasSuffix(name, ".gz"):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("not a gzip file: %w", err)
		}
		return zr, nil
	case strings.HasSuffix(name, ".zst"), strings.HasSuffix(name, ".zstd"):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(2))
		if err != nil {
			return nil, fmt.Errorf("not a zstd file: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

// describeReadError names what a failed read most likely means to a user.
func describeReadError(name string, err error) string {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of file: the file is truncated"
	case strings.HasSuffix(name, ".gz") || strings.HasSuffix(name, ".zst"):
		return "corrupt compressed data: " + err.Error()
	}
	return err.Error()
}
