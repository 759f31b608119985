// Package engine holds what differs between database engines, so that the controllers and the agent
// stay engine-agnostic: adding an engine means adding one adapter here.
package engine

import (
	"fmt"
	"sort"
	"strings"
)

// Engine is one database server family (MariaDB, MySQL).
type Engine interface {
	// Name is the value users write in spec.engine.type.
	Name() string
	// DefaultVersion is used when the template names no version.
	DefaultVersion() string
	// DefaultImage is the official image for a version, used when the template names no image.
	DefaultImage(version string) string
	// Port is the TCP port the server listens on.
	Port() int32
}

var registry = map[string]Engine{}

func register(e Engine) { registry[e.Name()] = e }

// Lookup returns the engine called name.
func Lookup(name string) (Engine, error) {
	if e, ok := registry[name]; ok {
		return e, nil
	}
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("unknown engine %q: valid engines are %s", name, strings.Join(names, ", "))
}
