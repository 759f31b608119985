package testdeps

import "testing"

func TestRequired(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, "1": true, "true": true, "yes": true} {
		t.Setenv(Btrfs.Env(), v)
		if got := Required(Btrfs); got != want {
			t.Errorf("%s=%q: required %v, want %v", Btrfs.Env(), v, got, want)
		}
	}
}
