package controllers

import (
	"testing"
	"time"
)

func TestStartingDialTimeoutGrowsWithTheWait(t *testing.T) {
	for _, tc := range []struct {
		name   string
		waited time.Duration
		want   time.Duration
	}{
		{"just started: a SYN without answer costs little", 0, 50 * time.Millisecond},
		{"a second in: still the floor", time.Second, 50 * time.Millisecond},
		{"a slow start: more time for a slow network", 4 * time.Second, 200 * time.Millisecond},
		{"the end of the grace", 10 * time.Second, 500 * time.Millisecond},
		{"long after: never more than a second", time.Minute, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := startingDialTimeout(tc.waited); got != tc.want {
				t.Errorf("startingDialTimeout(%s) = %s, want %s", tc.waited, got, tc.want)
			}
		})
	}
}
