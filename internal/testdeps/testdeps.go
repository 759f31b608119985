// Package testdeps decides what a test does when something outside Go it needs is missing
// (a MariaDB or PostgreSQL server, btrfs, envtest's kube-apiserver and etcd).
//
// One convention for every such dependency: the test skips, unless MYAAS_REQUIRE_<DEP> is set,
// which `make test` and CI do for the dependencies they install themselves. There a missing
// dependency means a broken setup, and a skip would let it pass unnoticed.
package testdeps

import (
	"os"
	"strconv"
	"testing"
)

// Dep names a dependency; MYAAS_REQUIRE_<Dep> makes it required.
type Dep string

const (
	MariaDB    Dep = "MARIADB"
	PostgreSQL Dep = "POSTGRES"
	Btrfs      Dep = "BTRFS"
	Envtest    Dep = "ENVTEST"
)

// Env is the name of the variable that makes d required.
func (d Dep) Env() string { return "MYAAS_REQUIRE_" + string(d) }

// Required reports whether d must be present. Any value but an explicit false counts, so that a
// mistyped "yes" cannot turn failures back into skips.
func Required(d Dep) bool {
	v := os.Getenv(d.Env())
	if v == "" {
		return false
	}
	on, err := strconv.ParseBool(v)
	return err != nil || on
}

// Missing ends t because d is unavailable for the given reason: a failure when d is required,
// a skip otherwise.
func Missing(t testing.TB, d Dep, reason string) {
	t.Helper()
	if Required(d) {
		t.Fatalf("%s=%s but %s", d.Env(), os.Getenv(d.Env()), reason)
	}
	t.Skip(reason)
}
