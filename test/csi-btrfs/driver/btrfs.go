package driver

import (
	"context"
	"fmt"
	"os/exec"
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
