package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// TestImageReadsBackAsBuilt writes an image the way hack/build-images.sh does and reads it back as
// an OCI layout: the name containerd imports it under, the config the kubelet runs, and a layer
// that keeps modes, owners and links. Two builds must be byte-identical.
func TestImageReadsBackAsBuilt(t *testing.T) {
	rootfs := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(rootfs, "usr/sbin"), 0o755))
	must(t, os.WriteFile(filepath.Join(rootfs, "usr/sbin/server"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.Chmod(filepath.Join(rootfs, "usr/sbin/server"), 0o755|os.ModeSetuid))
	must(t, os.Symlink("usr/sbin", filepath.Join(rootfs, "sbin")))
	extra := filepath.Join(t.TempDir(), "tool")
	must(t, os.WriteFile(extra, []byte("binary"), 0o600))

	build := func(out string) {
		t.Helper()
		o := options{rootfs: rootfs, adds: listFlag{extra + ":/opt/tool:0755:999:999"}, dirs: listFlag{"/tmp:1777"},
			name: "localhost/test/image:1", entrypoint: `["/opt/tool"]`, cmd: "serve --fast", user: "999:999",
			env: listFlag{"PATH=/usr/sbin"}, output: out, compress: "gzip", refName: true}
		if err := run(o); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	first, second := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	build(first)
	build(second)
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same tree differ: image digests would change at every build")
	}

	unpacked := t.TempDir()
	untar(t, first, unpacked)
	idx, err := layout.ImageIndexFromPath(unpacked)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := idx.IndexManifest()
	if err != nil || len(manifest.Manifests) != 1 {
		t.Fatalf("index: %v %v", manifest, err)
	}
	if name := manifest.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; name != "localhost/test/image:1" {
		t.Fatalf("ref name %q: ctr would import the image under another name", name)
	}
	img, err := idx.Image(manifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/opt/tool"}) || !slices.Equal(cfg.Config.Cmd, []string{"serve", "--fast"}) ||
		cfg.Config.User != "999:999" || !slices.Contains(cfg.Config.Env, "PATH=/usr/sbin") {
		t.Fatalf("config %+v", cfg.Config)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	checks := []struct {
		name string
		ok   func(*tar.Header) bool
	}{
		{"usr/sbin/server", func(h *tar.Header) bool { return h.Mode&0o7777 == 0o4755 }},
		{"sbin", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "usr/sbin" }},
		{"opt/tool", func(h *tar.Header) bool { return h.Mode&0o777 == 0o755 && h.Uid == 999 && h.Gid == 999 }},
		{"tmp/", func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir && h.Mode&0o7777 == 0o1777 }},
	}
	for _, c := range checks {
		h, ok := got[c.name]
		if !ok || !c.ok(h) {
			t.Errorf("%s in the layer: %+v", c.name, h)
		}
	}
}

func TestRunRejectsIncompleteRequests(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.tar")
	for _, o := range []options{
		{output: out, dirs: listFlag{"/tmp"}},
		{name: "x", output: out},
		{name: "x", output: out, dirs: listFlag{"/tmp"}, compress: "brotli"},
	} {
		if err := run(o); err == nil {
			t.Errorf("%+v: accepted", o)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused request left an image behind")
	}
}

func untar(t *testing.T, file, dst string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, h.Name)
		if h.Typeflag == tar.TypeDir {
			must(t, os.MkdirAll(p, 0o755))
			continue
		}
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		b, err := io.ReadAll(tr)
		must(t, err)
		must(t, os.WriteFile(p, b, 0o644))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
