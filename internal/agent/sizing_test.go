package agent

import "testing"

func TestLogSizeFor(t *testing.T) {
	for _, tc := range []struct {
		volume, want int64
	}{
		{volume: 1 << 30, want: 128 << 20},       // the template volume of the e2e suite
		{volume: 256 << 20, want: 64 << 20},      // small volumes still get a useful log
		{volume: 100 << 30, want: 1 << 30},       // capped: checkpoints are rare enough at 1 GiB
		{volume: 3<<30 + 12345, want: 384 << 20}, // whole MiB, as the servers require
	} {
		if got := logSizeFor(tc.volume); got != tc.want {
			t.Errorf("logSizeFor(%d) = %d, want %d", tc.volume, got, tc.want)
		}
	}
}
