package driver

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCapacityFor(t *testing.T) {
	const mi = 1 << 20
	tests := []struct {
		name            string
		required, limit int64
		source          int64
		want            int64
		code            codes.Code
	}{
		{name: "nothing asked", want: defaultCapacity},
		{name: "required", required: 64 * mi, want: 64 * mi},
		{name: "limit below default", limit: 16 * mi, want: 16 * mi},
		{name: "limit above default", limit: 4 * defaultCapacity, want: defaultCapacity},
		{name: "exact", required: 64 * mi, limit: 64 * mi, want: 64 * mi},
		{name: "clone grows to source", required: 64 * mi, source: 128 * mi, want: 128 * mi},
		{name: "clone keeps larger request", required: 256 * mi, source: 128 * mi, want: 256 * mi},
		{name: "clone without size", source: 2 * defaultCapacity, want: 2 * defaultCapacity},
		{name: "source beyond limit", limit: 64 * mi, source: 128 * mi, code: codes.OutOfRange},
		{name: "required beyond limit", required: 2 * mi, limit: mi, code: codes.OutOfRange},
		{name: "negative", required: -1, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capacityFor(&csi.CapacityRange{RequiredBytes: tt.required, LimitBytes: tt.limit}, tt.source)
			if status.Code(err) != tt.code {
				t.Fatalf("err = %v, want code %v", err, tt.code)
			}
			if err == nil && got != tt.want {
				t.Errorf("capacity = %d, want %d", got, tt.want)
			}
		})
	}
	if got, err := capacityFor(nil, 0); err != nil || got != defaultCapacity {
		t.Errorf("capacityFor(nil) = %d, %v", got, err)
	}
}

func TestFits(t *testing.T) {
	tests := []struct {
		size, required, limit int64
		want                  bool
	}{
		{size: 100, want: true},
		{size: 100, required: 100, limit: 100, want: true},
		{size: 100, required: 50, want: true},
		{size: 100, required: 200, want: false},
		{size: 100, limit: 50, want: false},
		{size: 100, required: 200, limit: 200, want: false},
	}
	for _, tt := range tests {
		if got := fits(tt.size, &csi.CapacityRange{RequiredBytes: tt.required, LimitBytes: tt.limit}); got != tt.want {
			t.Errorf("fits(%d, required %d, limit %d) = %t, want %t", tt.size, tt.required, tt.limit, got, tt.want)
		}
	}
}

func TestPaginate(t *testing.T) {
	var ids []string
	for i := range 5 {
		ids = append(ids, fmt.Sprintf("vol-%020d", i))
	}
	id := func(s string) string { return s }
	valid := func(s string) bool { return validID(kindVolume, s) }
	tests := []struct {
		name     string
		items    []string
		token    string
		max      int32
		want     []string
		wantNext string
		code     codes.Code
	}{
		{name: "all", items: ids, want: ids},
		{name: "first page", items: ids, max: 2, want: ids[:2], wantNext: ids[1]},
		{name: "middle page", items: ids, token: ids[1], max: 2, want: ids[2:4], wantNext: ids[3]},
		{name: "last page exactly", items: ids, token: ids[2], max: 2, want: ids[3:]},
		{name: "max beyond end", items: ids, max: 10, want: ids},
		{name: "token of a deleted entry", items: append(ids[:2:2], ids[3:]...), token: ids[2], want: ids[3:]},
		{name: "token after the end", items: ids, token: ids[4], want: nil},
		{name: "empty", items: nil, max: 3, want: nil},
		{name: "invalid token", items: ids, token: "invalid-token", code: codes.Aborted},
		{name: "path-like token", items: ids, token: "../etc", code: codes.Aborted},
		{name: "negative max", items: ids, max: -1, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := paginate(tt.items, id, valid, tt.token, tt.max)
			if status.Code(err) != tt.code {
				t.Fatalf("err = %v, want code %v", err, tt.code)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") || next != tt.wantNext {
				t.Errorf("page = %v next %q, want %v next %q", got, next, tt.want, tt.wantNext)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		kind, id string
		want     bool
	}{
		{kindVolume, idFor(kindVolume, "pvc-1"), true},
		{kindSnapshot, idFor(kindSnapshot, "snapshot-1"), true},
		{kindSnapshot, idFor(kindVolume, "pvc-1"), false},
		{kindVolume, "vol-../../../../etc/x", false},
		{kindVolume, "vol-", false},
		{kindVolume, "", false},
		{kindVolume, "vol-zzzzzzzzzzzzzzzzzzzz", false},
	}
	for _, tt := range tests {
		if got := validID(tt.kind, tt.id); got != tt.want {
			t.Errorf("validID(%s, %q) = %t, want %t", tt.kind, tt.id, got, tt.want)
		}
	}
}

func TestCheckCapabilities(t *testing.T) {
	mount := &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}
	mode := func(m csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability_AccessMode {
		return &csi.VolumeCapability_AccessMode{Mode: m}
	}
	tests := []struct {
		name string
		caps []*csi.VolumeCapability
		ok   bool
	}{
		{"none", nil, false},
		{"single node writer", []*csi.VolumeCapability{{AccessType: mount, AccessMode: mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}}, true},
		{"single node reader", []*csi.VolumeCapability{{AccessType: mount, AccessMode: mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)}}, true},
		{"multi node", []*csi.VolumeCapability{{AccessType: mount, AccessMode: mode(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}}, false},
		{"block", []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
			AccessMode: mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER),
		}}, false},
		{"no access type", []*csi.VolumeCapability{{AccessMode: mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}}, false},
		{"no access mode", []*csi.VolumeCapability{{AccessType: mount}}, false},
	}
	for _, tt := range tests {
		err := checkCapabilities(tt.caps)
		if (err == nil) != tt.ok || (err != nil && status.Code(err) != codes.InvalidArgument) {
			t.Errorf("%s: err = %v, want ok %t", tt.name, err, tt.ok)
		}
	}
}

func TestParseReferenced(t *testing.T) {
	tests := []struct {
		name, out string
		want      int64
		wantErr   bool
	}{
		{name: "btrfs-progs 6.2", out: `Qgroupid    Referenced    Exclusive  Max referenced   Path 
--------    ----------    ---------  --------------   ---- 
0/256          3162112      3162112        67108864   volumes/vol-1
`, want: 3162112},
		{name: "no limit column", out: "qgroupid         rfer         excl \n--------         ----         ---- \n0/257           16384        16384 \n", want: 16384},
		{name: "no qgroup line", out: "Qgroupid Referenced Exclusive\n-------- ---------- ---------\n", wantErr: true},
		{name: "empty", out: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseReferenced(tt.out)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: parseReferenced = %d, %v; want %d, error %t", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFindMount(t *testing.T) {
	const table = `22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw
95 30 7:0 /volumes/vol-1 /var/lib/kubelet/pods/a/volumes/kubernetes.io~csi/pvc-1/mount rw,relatime shared:50 - btrfs /dev/loop0 rw,space_cache=v2
96 30 7:0 /volumes/vol-2 /mnt/with\040space rw,relatime - btrfs /dev/loop0 rw
97 95 7:0 /volumes/vol-3 /var/lib/kubelet/pods/a/volumes/kubernetes.io~csi/pvc-1/mount ro,relatime shared:50 - btrfs /dev/loop0 rw
`
	tests := []struct {
		target string
		want   *mountEntry
	}{
		{"/var/lib/kubelet/pods/a/volumes/kubernetes.io~csi/pvc-1/mount", &mountEntry{root: "/volumes/vol-3", readOnly: true}},
		{"/mnt/with space", &mountEntry{root: "/volumes/vol-2"}},
		{"/proc", &mountEntry{root: "/"}},
		{"/not/mounted", nil},
	}
	for _, tt := range tests {
		got, err := findMount(strings.NewReader(table), tt.target)
		if err != nil {
			t.Fatal(err)
		}
		if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
			t.Errorf("findMount(%q) = %+v, want %+v", tt.target, got, tt.want)
		}
	}
}

func TestSocketPath(t *testing.T) {
	tests := []struct {
		endpoint, want string
		wantErr        bool
	}{
		{endpoint: "unix:///var/lib/kubelet/plugins/btrfs.csi.myaas.io/csi.sock", want: "/var/lib/kubelet/plugins/btrfs.csi.myaas.io/csi.sock"},
		{endpoint: "/run/csi.sock", want: "/run/csi.sock"},
		{endpoint: "tcp://127.0.0.1:10000", wantErr: true},
		{endpoint: "csi.sock", wantErr: true},
	}
	for _, tt := range tests {
		got, err := socketPath(tt.endpoint)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("socketPath(%q) = %q, %v", tt.endpoint, got, err)
		}
	}
}

func TestParseNodeRoots(t *testing.T) {
	tests := []struct {
		value   string
		want    map[string]string
		wantErr string
	}{
		{"", nil, ""},
		{"node-2=/pools/node-2,node-3=/pools/node-3", map[string]string{"node-2": "/pools/node-2", "node-3": "/pools/node-3"}, ""},
		{"node-2=/pools/node-2,node-3", nil, `--node-roots entry "node-3": want NAME=DIR`},
		{"=/pools/x", nil, `--node-roots entry "=/pools/x": want NAME=DIR`},
		{"node-2=pools/node-2", nil, `--node-roots entry "node-2=pools/node-2": directory must be absolute`},
		{"Node_2=/pools/node-2", nil, `--node-roots entry "Node_2=/pools/node-2": node name "Node_2" is invalid`},
		{"shared=/pools/shared", nil, `--node-roots entry "shared=/pools/shared": node name "shared" is reserved for the shared pool`},
		{"node-2=/a,node-2=/b", nil, `--node-roots entry "node-2=/b": node node-2 is listed twice`},
	}
	for _, tt := range tests {
		got, err := ParseNodeRoots(tt.value)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseNodeRoots(%q) err = %v, want %q", tt.value, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tt.want) {
			t.Errorf("ParseNodeRoots(%q) = %v, %v; want %v", tt.value, got, err, tt.want)
		}
	}
}

// TestPoolConfigErrors checks that a driver refuses pools it could mix up before touching any
// filesystem.
func TestPoolConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"own node elsewhere", Config{NodeID: "node-1", Root: "/p/1", NodeRoots: map[string]string{"node-1": "/p/other"}},
			"--node-roots entry node-1=/p/other: node-1 is this node (--node-id), whose pool is --root /p/1"},
		{"shared pool on a node's disk", Config{NodeID: "node-1", Root: "/p/1", SharedRoot: "/p/1/"},
			"--shared-root and --root are both /p/1/"},
		{"two nodes on one disk", Config{NodeID: "node-1", Root: "/p/1", NodeRoots: map[string]string{"node-2": "/p/2", "node-3": "/p/2"}},
			"--node-roots entry node-3=/p/2 and --node-roots entry node-2=/p/2 are both /p/2"},
		{"node ID of the shared pool", Config{NodeID: "shared", Root: "/p/1"}, `--node-id: node name "shared" is reserved`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Endpoint = "unix://" + filepath.Join(t.TempDir(), "csi.sock")
			err := Run(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run: err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestUnqualifiedIDs checks that IDs made before pools existed still name this node's pool.
func TestUnqualifiedIDs(t *testing.T) {
	own, _, pools, err := newPools(Config{NodeID: "node-1", Root: "/p/1", NodeRoots: map[string]string{"node-2": "/p/2"}})
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{own: own, pools: pools}
	legacy := idFor(kindVolume, "pvc-1")
	r, ok, err := d.resolve(kindVolume, legacy)
	if err != nil || !ok || r.pool != own || r.id() != legacy+"@node-1" {
		t.Errorf("resolve(%s) = %v %t %v, want node-1's pool", legacy, r, ok, err)
	}
	r, ok, err = d.resolve(kindVolume, legacy+"@node-2")
	if err != nil || !ok || r.pool.node != "node-2" {
		t.Errorf("resolve(%s@node-2) = %v %t %v, want node-2's pool", legacy, r, ok, err)
	}
	if _, _, err := d.resolve(kindVolume, legacy+"@node-9"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("resolve on an unknown node: err = %v, want FailedPrecondition", err)
	}
}
