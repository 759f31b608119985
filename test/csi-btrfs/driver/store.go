package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// record is what the driver keeps about a volume or snapshot, in a JSON file beside the subvolumes
// so that a restarted driver knows everything it created.
type record struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Capacity int64     `json:"capacity"`
	Source   string    `json:"source,omitempty"` // snapshot: its volume; volume: what it was cloned from
	Created  time.Time `json:"created"`
	// Namespace of the VolumeSnapshot a snapshot was taken for, when the sidecar says: it selects
	// the fault file that may stall the snapshot (see faults.go).
	Namespace string `json:"namespace,omitempty"`
}

// store is the on-disk layout under the btrfs mount.
type store struct{ root string }

const (
	kindVolume   = "volumes"
	kindSnapshot = "snapshots"
)

// idFor derives the ID from the request name, which makes creation idempotent by construction.
func idFor(kind, name string) string {
	sum := sha256.Sum256([]byte(kind + "/" + name))
	prefix := "vol-"
	if kind == kindSnapshot {
		prefix = "snap-"
	}
	return prefix + hex.EncodeToString(sum[:10])
}

func (s store) path(kind, id string) string { return filepath.Join(s.root, kind, id) }
func (s store) meta(kind, id string) string { return filepath.Join(s.root, "meta", kind, id+".json") }

func (s store) init() error {
	for _, d := range []string{kindVolume, kindSnapshot, "meta/" + kindVolume, "meta/" + kindSnapshot} {
		if err := os.MkdirAll(filepath.Join(s.root, d), 0o755); err != nil {
			return fmt.Errorf("creating store directory: %w", err)
		}
	}
	return nil
}

// validID accepts only IDs of the form idFor makes, so that no ID a caller sends can name a
// path outside the store.
func validID(kind, id string) bool {
	prefix := "vol-"
	if kind == kindSnapshot {
		prefix = "snap-"
	}
	hexPart, ok := strings.CutPrefix(id, prefix)
	if !ok || len(hexPart) != 20 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

func (s store) get(kind, id string) (*record, error) {
	if !validID(kind, id) {
		return nil, nil
	}
	b, err := os.ReadFile(s.meta(kind, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading metadata of %s: %w", id, err)
	}
	r := &record{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", id, err)
	}
	return r, nil
}

func (s store) put(kind string, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding metadata of %s: %w", r.ID, err)
	}
	tmp := s.meta(kind, r.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing metadata of %s: %w", r.ID, err)
	}
	if err := os.Rename(tmp, s.meta(kind, r.ID)); err != nil {
		return fmt.Errorf("committing metadata of %s: %w", r.ID, err)
	}
	return nil
}

func (s store) remove(kind, id string) error {
	err := os.Remove(s.meta(kind, id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing metadata of %s: %w", id, err)
	}
	return nil
}

// list returns every record of a kind, by ID, for stable pagination.
func (s store) list(kind string) ([]*record, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "meta", kind))
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", kind, err)
	}
	var out []*record
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		r, err := s.get(kind, id)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
