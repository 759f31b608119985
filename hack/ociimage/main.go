// Command ociimage writes a single-layer OCI image layout as a tar archive, the format that
// `ctr images import` reads. It exists because the development machines have no Docker engine
// and no registry: images are assembled from a root filesystem directory and a few extra files.
//
// The layout itself (oci-layout, index.json, blobs) is written by go-containerregistry's layout
// package. Its tarball package is not used for the archive: it writes `docker save`'s format,
// whose manifests containerd rewrites on import, so the digests built here would not be the
// ones the cluster runs.
//
// Usage:
//
//	ociimage --name localhost/myaas/manager:dev --output manager.tar \
//	  --add bin/myaas:/myaas:0755 --dir /tmp:1777 --entrypoint /myaas --user 65532:65532
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	rootfs     string
	adds       listFlag
	dirs       listFlag
	name       string
	entrypoint string
	cmd        string
	env        listFlag
	user       string
	workdir    string
	output     string
	compress   string
	epoch      int64
	refName    bool
}

func main() {
	var o options
	flag.StringVar(&o.rootfs, "rootfs", "", "directory whose tree becomes the image's root filesystem (ownership and modes kept)")
	flag.Var(&o.adds, "add", "SRC:DST[:MODE[:UID:GID]] file copied into the image, replacing a rootfs entry at DST (repeatable)")
	flag.Var(&o.dirs, "dir", "DST[:MODE[:UID:GID]] directory created in the image (repeatable)")
	flag.StringVar(&o.name, "name", "", "image reference recorded in index.json (org.opencontainers.image.ref.name)")
	flag.StringVar(&o.entrypoint, "entrypoint", "", "entrypoint: a JSON array, or words separated by spaces")
	flag.StringVar(&o.cmd, "cmd", "", "default arguments: a JSON array, or words separated by spaces")
	flag.Var(&o.env, "env", "KEY=VALUE environment variable (repeatable)")
	flag.StringVar(&o.user, "user", "", "user[:group] the container runs as")
	flag.StringVar(&o.workdir, "workdir", "", "working directory")
	flag.StringVar(&o.output, "output", "", "path of the OCI layout tar to write")
	flag.StringVar(&o.compress, "compress", "gzip", "layer compression: gzip or none")
	// containerd 1.6's `ctr images import --index-name N` fails ("content digest ...: not found")
	// when the index also names a manifest N: the manifest's record replaces the index's under
	// the same name, and unpacking the index then finds no content. Without the annotation,
	// --index-name alone names the image.
	flag.BoolVar(&o.refName, "ref-annotation", true, "name the manifest in index.json (org.opencontainers.image.ref.name); off when importing with ctr --index-name")
	flag.Int64Var(&o.epoch, "epoch", sourceDateEpoch(), "timestamp (Unix seconds) for every file and the image config, so rebuilds are byte-identical")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func sourceDateEpoch() int64 {
	if v, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return v
	}
	return 0
}

func run(o options) error {
	if o.name == "" || o.output == "" {
		return errors.New("--name and --output are required")
	}
	if o.rootfs == "" && len(o.adds) == 0 && len(o.dirs) == 0 {
		return errors.New("nothing to put in the image: give --rootfs, --add or --dir")
	}
	if o.compress != "gzip" && o.compress != "none" {
		return fmt.Errorf("--compress must be gzip or none, not %q", o.compress)
	}
	epoch := time.Unix(o.epoch, 0).UTC()

	entries, err := collect(o)
	if err != nil {
		return err
	}

	// The layer and the layout go to temporary files next to the output, so a large rootfs
	// never sits in memory and the final rename is atomic on the same filesystem.
	outDir := filepath.Dir(o.output)
	blob, err := os.CreateTemp(outDir, ".layer-*")
	if err != nil {
		return err
	}
	defer os.Remove(blob.Name())
	defer blob.Close()
	l, err := writeLayer(blob, entries, epoch, o.compress == "gzip")
	if err != nil {
		return fmt.Errorf("writing layer: %w", err)
	}

	img, err := buildImage(o, l, epoch)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp(outDir, ".layout-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	desc := []layout.Option{layout.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH})}
	if o.refName {
		desc = append(desc, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": o.name}))
	}
	if err := lp.AppendImage(img, desc...); err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}

	tmp, err := os.CreateTemp(outDir, ".image-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tarDir(tmp, dir, epoch); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), o.output)
}

// entry is one path of the layer; src is empty for directories made from --dir or implied
// as parents.
type entry struct {
	name     string // slash-separated, relative to the image root
	src      string
	fromRoot bool // ownership and mode come from src itself
	mode     fs.FileMode
	uid, gid int
}

func collect(o options) (map[string]*entry, error) {
	entries := map[string]*entry{}
	if o.rootfs != "" {
		root, err := filepath.Abs(o.rootfs)
		if err != nil {
			return nil, err
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil || rel == "." {
				return err
			}
			entries[filepath.ToSlash(rel)] = &entry{name: filepath.ToSlash(rel), src: p, fromRoot: true}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, spec := range o.dirs {
		f := strings.Split(spec, ":")
		e := &entry{name: clean(f[0]), mode: fs.ModeDir | 0o755}
		if err := parseModeOwner(e, f[1:]); err != nil {
			return nil, fmt.Errorf("--dir %s: %w", spec, err)
		}
		e.mode |= fs.ModeDir
		entries[e.name] = e
	}
	for _, spec := range o.adds {
		f := strings.Split(spec, ":")
		if len(f) < 2 {
			return nil, fmt.Errorf("--add %s: want SRC:DST[:MODE[:UID:GID]]", spec)
		}
		fi, err := os.Stat(f[0])
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("--add %s: only regular files can be added", spec)
		}
		e := &entry{name: clean(f[1]), src: f[0], mode: fi.Mode().Perm()}
		if err := parseModeOwner(e, f[2:]); err != nil {
			return nil, fmt.Errorf("--add %s: %w", spec, err)
		}
		entries[e.name] = e
	}
	// Runtimes create missing parents themselves, but with unpredictable ownership; listing
	// them keeps the layer self-describing.
	for name := range entries {
		for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if _, ok := entries[dir]; ok {
				break
			}
			entries[dir] = &entry{name: dir, mode: fs.ModeDir | 0o755}
		}
	}
	return entries, nil
}

func clean(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func parseModeOwner(e *entry, f []string) error {
	if len(f) > 0 && f[0] != "" {
		m, err := strconv.ParseUint(f[0], 8, 32)
		if err != nil {
			return fmt.Errorf("mode %q: %w", f[0], err)
		}
		e.mode = e.mode&fs.ModeType | unixToFileMode(uint32(m))
	}
	if len(f) == 3 {
		var err error
		if e.uid, err = strconv.Atoi(f[1]); err != nil {
			return err
		}
		if e.gid, err = strconv.Atoi(f[2]); err != nil {
			return err
		}
	} else if len(f) > 1 {
		return errors.New("owner must be given as UID:GID")
	}
	return nil
}

func unixToFileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func tarMode(mode fs.FileMode) int64 {
	m := int64(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

// layer is the written blob. It implements v1.Layer itself because the go-containerregistry
// tarball layers always gzip (and, from an uncompressed source, do so twice). With --compress
// none the blob is the tar itself, and its media type must say so: containerd picks the
// decompressor from the media type, not from the content.
type layer struct {
	path      string
	digest    v1.Hash
	diffID    v1.Hash
	size      int64
	mediaType types.MediaType
}

func (l *layer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *layer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *layer) Size() (int64, error)                { return l.size, nil }
func (l *layer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *layer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *layer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil || l.mediaType == types.OCIUncompressedLayer {
		return f, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func writeLayer(f *os.File, entries map[string]*entry, epoch time.Time, compress bool) (*layer, error) {
	blobHash := sha256.New()
	blobOut := &countWriter{w: io.MultiWriter(f, blobHash)}
	diffHash := blobHash
	var tarOut io.Writer = blobOut
	var zw *gzip.Writer
	if compress {
		diffHash = sha256.New()
		var err error
		// klauspost's gzip rather than compress/gzip: it is faster at the same level, and the
		// ~320 MB MariaDB rootfs is repacked on every build.
		if zw, err = gzip.NewWriterLevel(blobOut, gzip.DefaultCompression); err != nil {
			return nil, err
		}
		tarOut = io.MultiWriter(zw, diffHash)
	}
	tw := tar.NewWriter(tarOut)

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)

	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	for _, name := range names {
		e := entries[name]
		hdr, src, err := header(e, func(st *syscall.Stat_t) (string, bool) {
			key := inode{st.Dev, st.Ino}
			if first, ok := links[key]; ok {
				return first, true
			}
			links[key] = name
			return "", false
		})
		if err != nil {
			return nil, err
		}
		if hdr == nil {
			continue
		}
		hdr.ModTime = epoch
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if src != "" {
			if err := copyFile(tw, src, hdr.Size); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	l := &layer{
		path:      f.Name(),
		digest:    toHash(blobHash),
		diffID:    toHash(diffHash),
		size:      blobOut.n,
		mediaType: types.OCILayer,
	}
	if !compress {
		l.mediaType = types.OCIUncompressedLayer
	}
	return l, nil
}

// header returns the tar header of e and, for regular file content, the file to copy. A nil
// header means the entry is left out: device nodes and sockets, which runtimes provide.
func header(e *entry, seen func(*syscall.Stat_t) (string, bool)) (*tar.Header, string, error) {
	if !e.fromRoot {
		if e.mode.IsDir() {
			return &tar.Header{Typeflag: tar.TypeDir, Name: e.name + "/", Mode: tarMode(e.mode), Uid: e.uid, Gid: e.gid, Format: tar.FormatPAX}, "", nil
		}
		fi, err := os.Stat(e.src)
		if err != nil {
			return nil, "", err
		}
		return &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: tarMode(e.mode), Uid: e.uid, Gid: e.gid, Size: fi.Size(), Format: tar.FormatPAX}, e.src, nil
	}
	fi, err := os.Lstat(e.src)
	if err != nil {
		return nil, "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, "", fmt.Errorf("%s: no ownership information", e.src)
	}
	hdr := &tar.Header{Name: e.name, Mode: tarMode(fi.Mode()), Uid: int(st.Uid), Gid: int(st.Gid), Format: tar.FormatPAX}
	switch {
	case fi.Mode().IsRegular():
		if st.Nlink > 1 {
			if first, ok := seen(st); ok {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				return hdr, "", nil
			}
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Size = fi.Size()
		return hdr, e.src, nil
	case fi.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		return hdr, "", nil
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(e.src)
		if err != nil {
			return nil, "", err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
		return hdr, "", nil
	case fi.Mode()&fs.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
		return hdr, "", nil
	default:
		return nil, "", nil
	}
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s changed size while being archived", src)
	}
	return nil
}

func toHash(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

func words(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	if strings.HasPrefix(strings.TrimSpace(v), "[") {
		var out []string
		if err := json.Unmarshal([]byte(v), &out); err != nil {
			return nil, fmt.Errorf("%q: %w", v, err)
		}
		return out, nil
	}
	return strings.Fields(v), nil
}

func buildImage(o options, l *layer, epoch time.Time) (v1.Image, error) {
	entrypoint, err := words(o.entrypoint)
	if err != nil {
		return nil, fmt.Errorf("--entrypoint %w", err)
	}
	cmd, err := words(o.cmd)
	if err != nil {
		return nil, fmt.Errorf("--cmd %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   l,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "hack/ociimage " + o.name},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: epoch}
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Config = v1.Config{
		Entrypoint: entrypoint,
		Cmd:        cmd,
		Env:        o.env,
		User:       o.user,
		WorkingDir: o.workdir,
	}
	return mutate.ConfigFile(img, cf)
}

// tarDir archives the layout directory with fixed owners, modes and times, in name order, so
// that equal images give byte-identical archives.
func tarDir(w io.Writer, dir string, epoch time.Time) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: epoch})
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: fi.Size(), ModTime: epoch}); err != nil {
			return err
		}
		return copyFile(tw, p, fi.Size())
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
