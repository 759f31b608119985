package driver

import (
	"sort"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultCapacity applies when a request names no size: a qgroup needs some limit, and 1 GiB
// is plenty for test databases while keeping a runaway writer from filling the node.
const defaultCapacity int64 = 1 << 30

// capacityFor decides a new volume's size. A clone is never smaller than its source, because
// its qgroup would otherwise be over the limit from the start and refuse every write.
func capacityFor(rng *csi.CapacityRange, sourceSize int64) (int64, error) {
	required, limit := rng.GetRequiredBytes(), rng.GetLimitBytes()
	if required < 0 || limit < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "capacity range must not be negative: required %d, limit %d", required, limit)
	}
	if limit > 0 && required > limit {
		return 0, status.Errorf(codes.OutOfRange, "required bytes %d exceed limit bytes %d", required, limit)
	}
	size := required
	if size == 0 {
		size = defaultCapacity
		if limit > 0 && limit < size {
			size = limit
		}
	}
	size = max(size, sourceSize)
	if limit > 0 && size > limit {
		return 0, status.Errorf(codes.OutOfRange, "source needs %d bytes, more than limit bytes %d", sourceSize, limit)
	}
	return size, nil
}

// fits tells whether an existing volume answers a repeated CreateVolume: the CO may retry with
// the same range, and only a range the existing size violates is a conflict.
func fits(size int64, rng *csi.CapacityRange) bool {
	if r := rng.GetRequiredBytes(); r > 0 && size < r {
		return false
	}
	if l := rng.GetLimitBytes(); l > 0 && size > l {
		return false
	}
	return true
}

// paginate pages through items sorted by ID. The token is the last ID already returned rather
// than an offset, so volumes deleted or added between calls neither shift nor duplicate entries.
func paginate[T any](items []T, id func(T) string, valid func(string) bool, token string, maxEntries int32) ([]T, string, error) {
	if maxEntries < 0 {
		return nil, "", status.Errorf(codes.InvalidArgument, "max_entries must not be negative, got %d", maxEntries)
	}
	start := 0
	if token != "" {
		if !valid(token) {
			return nil, "", status.Errorf(codes.Aborted, "invalid starting_token %q", token)
		}
		start = sort.Search(len(items), func(i int) bool { return id(items[i]) > token })
	}
	items = items[start:]
	if maxEntries == 0 || int(maxEntries) >= len(items) {
		return items, "", nil
	}
	page := items[:maxEntries]
	return page, id(page[len(page)-1]), nil
}

// checkCapabilities accepts what a bind-mounted directory on one node can honour.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	for _, c := range caps {
		if c.GetBlock() != nil {
			return status.Error(codes.InvalidArgument, "block access is not supported: volumes are directories")
		}
		if c.GetMount() == nil {
			return status.Error(codes.InvalidArgument, "volume capability needs an access type")
		}
		switch m := c.GetAccessMode().GetMode(); m {
		case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		default:
			return status.Errorf(codes.InvalidArgument, "access mode %s is not supported: volumes live on one node", m)
		}
	}
	return nil
}
