package bundles

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"aead.dev/minisign"
	"github.com/klauspost/compress/zstd"
)

// tarEntry is one entry of a hand-made archive.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

// entriesOf lists a directory bundle as the archive Build would write.
func entriesOf(t *testing.T, dir string) []tarEntry {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{ManifestName, SignatureName}
	for _, f := range m.Files {
		names = append(names, f.Path)
	}
	var out []tarEntry
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: n, Size: int64(len(b)), Mode: 0o644}, data: b})
	}
	return out
}

func writeTarZst(t *testing.T, path string, entries []tarEntry, opts ...zstd.EOption) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, err := zstd.NewWriter(f, opts...)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
			// a declared size larger than the data: zeros, cheap to compress
			for n := int64(len(e.data)); n < h.Size; {
				k := min(h.Size-n, 1<<20)
				tw.Write(make([]byte, k))
				n += k
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

func index(es []tarEntry, name string) int {
	for i, e := range es {
		if e.hdr.Name == name {
			return i
		}
	}
	panic("no entry " + name)
}

func reg(name string, data []byte) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644}, data: data}
}

const (
	model  = "files/models/model.onnx"
	labels = "files/models/labels.txt"
)

// resign replaces the manifest with edit(manifest), signed with the real key:
// what the verifier does with a well-signed but malicious manifest.
func (f *fixture) resign(t *testing.T, raw []byte, edit func(*Manifest)) (man, sig []byte) {
	t.Helper()
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(&m)
	man, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sig, err = Sign(f.key, bytes.NewReader(man), "tampered")
	if err != nil {
		t.Fatal(err)
	}
	return man, sig
}

// TestTamperedBundlesAreRejected is the corpus: every way a bundle can be
// damaged or malicious, as a directory and as an archive. Each is rejected
// with the file at fault named, and leaves nothing behind.
func TestTamperedBundlesAreRejected(t *testing.T) {
	f := newFixture(t)
	good := filepath.Join(t.TempDir(), "good")
	f.build(t, good, 0)
	manifestRaw, _ := os.ReadFile(filepath.Join(good, ManifestName))
	_, otherKey, _ := minisign.GenerateKey(nil)
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}

	dirCases := []struct {
		name, file string
		mutate     func(t *testing.T, dir string)
	}{
		{"missing signature", SignatureName, func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, SignatureName))) }},
		{"signed by another key", SignatureName, func(t *testing.T, d string) {
			sig, _ := Sign(otherKey, bytes.NewReader(manifestRaw), "")
			must(t, os.WriteFile(filepath.Join(d, SignatureName), sig, 0o644))
		}},
		{"manifest modified after signing", SignatureName, func(t *testing.T, d string) {
			must(t, os.WriteFile(filepath.Join(d, ManifestName), bytes.Replace(manifestRaw, []byte("1.4.0"), []byte("1.4.1"), 1), 0o644))
		}},
		{"missing file", labels, func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, labels))) }},
		{"extra file", "files/models/extra.bin", func(t *testing.T, d string) {
			must(t, os.WriteFile(filepath.Join(d, "files/models/extra.bin"), []byte("x"), 0o644))
		}},
		{"renamed file", "files/models/labels.old", func(t *testing.T, d string) {
			must(t, os.Rename(filepath.Join(d, labels), filepath.Join(d, "files/models/labels.old")))
		}},
		{"truncated file", model, func(t *testing.T, d string) { must(t, os.Truncate(filepath.Join(d, model), 1000)) }},
		{"modified file", model, func(t *testing.T, d string) { flipByte(t, filepath.Join(d, model)) }},
		{"larger file", model, func(t *testing.T, d string) { appendByte(t, filepath.Join(d, model)) }},
		{"symlink", labels, func(t *testing.T, d string) {
			must(t, os.Remove(filepath.Join(d, labels)))
			must(t, os.Symlink("/etc/passwd", filepath.Join(d, labels)))
		}},
		{"symlinked directory", "files/models", func(t *testing.T, d string) {
			must(t, os.Rename(filepath.Join(d, "files/models"), filepath.Join(d, "../elsewhere")))
			must(t, os.Symlink("../../elsewhere", filepath.Join(d, "files/models")))
		}},
		{"named pipe", "files/pipe", func(t *testing.T, d string) { must(t, syscall.Mkfifo(filepath.Join(d, "files/pipe"), 0o644)) }},
		{"signed manifest with ..", ManifestName, func(t *testing.T, d string) {
			man, sig := f.resign(t, manifestRaw, func(m *Manifest) { m.Files[0].Path = "../../etc/cron.d/evil" })
			writeSigned(t, d, man, sig)
		}},
		{"signed manifest with absolute path", ManifestName, func(t *testing.T, d string) {
			man, sig := f.resign(t, manifestRaw, func(m *Manifest) { m.Files[0].Path = "/etc/cron.d/evil" })
			writeSigned(t, d, man, sig)
		}},
		{"arch of another host", ManifestName, func(t *testing.T, d string) {
			man, sig := f.resign(t, manifestRaw, func(m *Manifest) { m.Arch = otherArch })
			writeSigned(t, d, man, sig)
		}},
		{"manifest is not a manifest", ManifestName, func(t *testing.T, d string) {
			sig, _ := Sign(f.key, strings.NewReader("{\"apiVersion\": 1}"), "")
			writeSigned(t, d, []byte("{\"apiVersion\": 1}"), sig)
		}},
		{"no manifest at all", ManifestName, func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, ManifestName))) }},
	}
	for _, c := range dirCases {
		t.Run("dir/"+c.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "bundle")
			must(t, os.CopyFS(dir, os.DirFS(good)))
			c.mutate(t, dir)
			expectRejected(t, dir, c.file, &f.pub)
		})
	}

	base := entriesOf(t, good)
	dup := func() []tarEntry { return append([]tarEntry(nil), base...) }
	archiveCases := []struct {
		name, file string
		entries    func() []tarEntry
		opts       []zstd.EOption
	}{
		{"missing signature", SignatureName, func() []tarEntry { e := dup(); return append(e[:1], e[2:]...) }, nil},
		{"signed by another key", SignatureName, func() []tarEntry {
			e := dup()
			sig, _ := Sign(otherKey, bytes.NewReader(manifestRaw), "")
			e[1] = reg(SignatureName, sig)
			return e
		}, nil},
		{"manifest modified after signing", SignatureName, func() []tarEntry {
			e := dup()
			e[0] = reg(ManifestName, bytes.Replace(manifestRaw, []byte(`"site-a"`), []byte(`"site-b"`), 1))
			return e
		}, nil},
		{"manifest not first", ManifestName, func() []tarEntry { e := dup(); e[0], e[2] = e[2], e[0]; return e }, nil},
		{"missing file", labels, func() []tarEntry { e := dup(); i := index(e, labels); return append(e[:i], e[i+1:]...) }, nil},
		{"extra file", "files/extra", func() []tarEntry { return append(dup(), reg("files/extra", []byte("x"))) }, nil},
		{"renamed file", "files/models/labels.old", func() []tarEntry {
			e := dup()
			e[index(e, labels)].hdr.Name = "files/models/labels.old"
			return e
		}, nil},
		{"truncated file", model, func() []tarEntry {
			e := dup()
			i := index(e, model)
			e[i] = reg(model, e[i].data[:1000])
			return e
		}, nil},
		{"modified file", model, func() []tarEntry {
			e := dup()
			i := index(e, model)
			d := bytes.Clone(e[i].data)
			d[len(d)/2] ^= 0xff
			e[i].data = d
			return e
		}, nil},
		{"larger file", model, func() []tarEntry {
			e := dup()
			i := index(e, model)
			e[i] = reg(model, append(bytes.Clone(e[i].data), 0))
			return e
		}, nil},
		{"dot-dot entry", "../../evil", func() []tarEntry { return insert(dup(), reg("../../evil", []byte("x"))) }, nil},
		{"absolute entry", "/tmp/evil", func() []tarEntry { return insert(dup(), reg("/tmp/evil", []byte("x"))) }, nil},
		{"symlink entry", labels, func() []tarEntry {
			e := dup()
			e[index(e, labels)] = tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: labels, Linkname: "/etc/shadow"}}
			return e
		}, nil},
		{"hardlink entry", labels, func() []tarEntry {
			e := dup()
			e[index(e, labels)] = tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: labels, Linkname: "/etc/shadow"}}
			return e
		}, nil},
		{"device entry", "files/sda", func() []tarEntry {
			return insert(dup(), tarEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "files/sda", Devmajor: 8}})
		}, nil},
		{"duplicate entry", labels, func() []tarEntry { e := dup(); return append(e, e[index(e, labels)]) }, nil},
		{"too many entries", "files", func() []tarEntry {
			e := dup()
			dirs := make([]tarEntry, 5000)
			for i := range dirs {
				dirs[i] = tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "files/", Mode: 0o755}}
			}
			return append(e[:3], append(dirs, e[3:]...)...)
		}, nil},
		{"decompression bomb in the manifest", ManifestName, func() []tarEntry {
			e := dup()
			e[0].hdr.Size = 64 << 20 // zeros after the real bytes
			return e
		}, nil},
		{"decompression bomb in a file", labels, func() []tarEntry {
			e := dup()
			e[index(e, labels)].hdr.Size = 64 << 20
			return e
		}, nil},
		{"zstd window too large", "bundle.tar.zst", dup, []zstd.EOption{zstd.WithWindowSize(256 << 20)}},
		{"arch of another host", ManifestName, func() []tarEntry {
			e := dup()
			man, sig := f.resign(t, manifestRaw, func(m *Manifest) { m.Arch = otherArch })
			e[0], e[1] = reg(ManifestName, man), reg(SignatureName, sig)
			return e
		}, nil},
	}
	for _, c := range archiveCases {
		t.Run("archive/"+c.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "bundle.tar.zst")
			writeTarZst(t, src, c.entries(), c.opts...)
			expectRejected(t, src, c.file, &f.pub)
		})
	}

	t.Run("archive/cut off", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "bundle.tar.zst")
		writeTarZst(t, src, base)
		fi, _ := os.Stat(src)
		must(t, os.Truncate(src, fi.Size()*2/3))
		expectRejected(t, src, model, &f.pub)
	})
	for _, missing := range []int{1, 2} {
		t.Run(fmt.Sprintf("split/part %d of 3 missing", missing+1), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "s.tar.zst")
			res := f.build(t, out, 1<<20)
			if len(res.Paths) != 3 {
				t.Fatalf("want 3 parts, got %v", res.Paths)
			}
			must(t, os.Remove(res.Paths[missing]))
			expectRejected(t, res.Paths[0], filepath.Base(res.Paths[missing]), &f.pub)
		})
	}
	// a part damaged on the way to the site is named, with what is wrong
	// with it, before the decoder can blame another one in its own words
	for _, c := range []struct {
		name string
		edit func(parts []string)
		part int
		want string
	}{
		{"middle part empty", func(p []string) { must(t, os.Truncate(p[1], 0)) }, 1, "is empty"},
		{"last part empty", func(p []string) { must(t, os.Truncate(p[2], 0)) }, 2, "is empty"},
		{"middle part cut short", func(p []string) { must(t, os.Truncate(p[1], 1000)) }, 1, "cut short"},
		{"first two swapped", func(p []string) { swapFiles(t, p[0], p[1]) }, 0, "does not start a bundle"},
		{"last two swapped", func(p []string) { swapFiles(t, p[1], p[2]) }, 1, "renamed out of order"},
	} {
		t.Run("split/"+c.name, func(t *testing.T) {
			res := f.build(t, filepath.Join(t.TempDir(), "s.tar.zst"), 1<<20)
			if len(res.Paths) != 3 {
				t.Fatalf("want 3 parts, got %v", res.Paths)
			}
			c.edit(res.Paths)
			err := expectRejected(t, res.Paths[0], filepath.Base(res.Paths[c.part]), &f.pub)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want it to say %q", err, c.want)
			}
		})
	}
	t.Run("unsigned without --insecure-skip-signature", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "u")
		if _, err := Build(context.Background(), f.spec, BuildOptions{Out: out, Pwd: f.dir}); err != nil {
			t.Fatal(err)
		}
		expectRejected(t, out, SignatureName, &f.pub)
		if _, err := Open(context.Background(), out, OpenOptions{InsecureSkipSignature: true}); err != nil {
			t.Errorf("unsigned bundle refused with --insecure-skip-signature: %v", err)
		}
	})
}

// expectRejected opens src into a staging directory and checks that it is
// refused, that the error names file, and that nothing is left behind.
func expectRejected(t *testing.T, src, file string, pub *minisign.PublicKey) error {
	t.Helper()
	parent := t.TempDir()
	staging := filepath.Join(parent, "staging")
	_, err := Open(context.Background(), src, OpenOptions{PublicKey: pub, Arch: runtime.GOARCH, Staging: staging})
	if err == nil {
		t.Fatal("accepted")
	}
	var re *RejectError
	if !errors.As(err, &re) || !errors.Is(err, ErrRejected) {
		t.Fatalf("error is not a rejection: %v", err)
	}
	if !strings.Contains(re.File, file) {
		t.Errorf("error names %q, want %q: %v", re.File, file, err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("rejected bundle left %v in the staging parent", entries)
	}
	t.Log(err)
	return err
}

func insert(es []tarEntry, e tarEntry) []tarEntry {
	return append(es[:3], append([]tarEntry{e}, es[3:]...)...)
}

func writeSigned(t *testing.T, dir string, man, sig []byte) {
	must(t, os.WriteFile(filepath.Join(dir, ManifestName), man, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, SignatureName), sig, 0o644))
}

func flipByte(t *testing.T, p string) {
	b, err := os.ReadFile(p)
	must(t, err)
	b[len(b)/2] ^= 0xff
	must(t, os.WriteFile(p, b, 0o644))
}

func appendByte(t *testing.T, p string) {
	fh, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = io.WriteString(fh, "!")
	must(t, err)
	must(t, fh.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSignedManifestNameAndVersionAreChecked: name and version become
// install paths (/var/lib/perch/bundles/NAME-VERSION); a manifest signed by
// the right key is still refused when they are not what a BundleSpec allows.
func TestSignedManifestNameAndVersionAreChecked(t *testing.T) {
	f := newFixture(t)
	good := filepath.Join(t.TempDir(), "good")
	f.build(t, good, 0)
	manifestRaw, _ := os.ReadFile(filepath.Join(good, ManifestName))
	for _, c := range []struct {
		field string
		edit  func(*Manifest)
	}{
		{"name", func(m *Manifest) { m.Name = "../../etc" }},
		{"name", func(m *Manifest) { m.Name = "" }},
		{"name", func(m *Manifest) { m.Name = "Site/A" }},
		{"version", func(m *Manifest) { m.Version = "1.4.0/../../../etc" }},
		{"version", func(m *Manifest) { m.Version = ".." }},
		{"version", func(m *Manifest) { m.Version = "" }},
	} {
		dir := filepath.Join(t.TempDir(), "bundle")
		must(t, os.CopyFS(dir, os.DirFS(good)))
		man, sig := f.resign(t, manifestRaw, c.edit)
		writeSigned(t, dir, man, sig)
		expectRejected(t, dir, ManifestName, &f.pub)
		_, err := ReadManifest(context.Background(), dir, OpenOptions{PublicKey: &f.pub})
		if err == nil || !strings.Contains(err.Error(), ": "+c.field+" ") {
			t.Errorf("err = %v, want one naming the field %s", err, c.field)
		}
	}
}

// TestTrailingDataIsRejected: "every byte" holds after the tar end marker
// too, both inside the zstd stream and in a zstd frame appended to it.
func TestTrailingDataIsRejected(t *testing.T) {
	f := newFixture(t)
	good := filepath.Join(t.TempDir(), "good")
	f.build(t, good, 0)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		edit func(t *testing.T, p string)
	}{
		{"a zstd frame after the archive", func(t *testing.T, p string) {
			zw, _ := zstd.NewWriter(nil)
			frame := zw.EncodeAll([]byte("#!/bin/sh\nevil\n"), nil)
			out, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			_, err = out.Write(frame)
			must(t, err)
			must(t, out.Close())
		}},
		{"garbage after the archive", func(t *testing.T, p string) {
			out, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			_, err = out.Write([]byte("not zstd at all"))
			must(t, err)
			must(t, out.Close())
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+ArchiveExt)
			writeTarZst(t, p, entriesOf(t, good))
			if _, err := Open(context.Background(), p, OpenOptions{PublicKey: &f.pub}); err != nil {
				t.Fatalf("the archive before the edit: %v", err)
			}
			c.edit(t, p)
			_, err := Open(context.Background(), p, OpenOptions{PublicKey: &f.pub})
			if err == nil || !strings.Contains(err.Error(), filepath.Base(p)) || !strings.Contains(err.Error(), "after the archive's end") {
				t.Fatalf("err = %v, want trailing data refused, naming %s", err, filepath.Base(p))
			}
		})
	}
}

func swapFiles(t *testing.T, a, b string) {
	t.Helper()
	tmp := a + ".swap"
	must(t, os.Rename(a, tmp))
	must(t, os.Rename(b, a))
	must(t, os.Rename(tmp, b))
}
