package driver

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// fs runs btrfs-progs. Every volume is a subvolume and every snapshot a read-only snapshot of one,
// so clones and snapshots cost O(1) whatever the size: the point of this driver.
type fs struct{}

func (fs) run(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "btrfs", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("btrfs %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (f fs) enableQuota(ctx context.Context, root string) error {
	_, err := f.run(ctx, "quota", "enable", root)
	return err
}

func (f fs) create(ctx context.Context, path string) error {
	_, err := f.run(ctx, "subvolume", "create", path)
	return err
}

// snapshot makes dst a snapshot of src: read-only for VolumeSnapshots, writable for clones.
func (f fs) snapshot(ctx context.Context, src, dst string, readOnly bool) error {
	args := []string{"subvolume", "snapshot"}
	if readOnly {
		args = append(args, "-r")
	}
	_, err := f.run(ctx, append(args, src, dst)...)
	return err
}

func (f fs) delete(ctx context.Context, path string) error {
	_, err := f.run(ctx, "subvolume", "delete", path)
	return err
}

// limit caps what the subvolume may reference: the volume's size.
func (f fs) limit(ctx context.Context, path string, bytes int64) error {
	_, err := f.run(ctx, "qgroup", "limit", strconv.FormatInt(bytes, 10), path)
	return err
}

// referenced is what the subvolume's qgroup accounts: the bytes the volume uses as far as its
// limit is concerned, which plain statfs cannot tell because it reports the whole filesystem.
func (f fs) referenced(ctx context.Context, path string) (int64, error) {
	out, err := f.run(ctx, "qgroup", "show", "-rf", "--raw", path)
	if err != nil {
		return 0, err
	}
	return parseReferenced(out)
}

// parseReferenced reads the Referenced column of `btrfs qgroup show -rf --raw`, locating it by
// header because the set of columns depends on the flags and the btrfs-progs version.
func parseReferenced(out string) (int64, error) {
	col := -1
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "---") {
			continue
		}
		if col < 0 {
			// The first match: "Max referenced" comes later and spans two words.
			col = slices.IndexFunc(fields, func(f string) bool {
				return strings.EqualFold(f, "Referenced") || strings.EqualFold(f, "rfer")
			})
			if col < 0 {
				return 0, fmt.Errorf("no Referenced column in %q", strings.TrimSpace(out))
			}
			continue
		}
		if !strings.Contains(fields[0], "/") || len(fields) <= col {
			continue
		}
		n, err := strconv.ParseInt(fields[col], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing qgroup referenced bytes %q: %w", fields[col], err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("no qgroup line in %q", strings.TrimSpace(out))
}
