package bundles

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"aead.dev/minisign"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// fixture is a small bundle built by Build from local sources. Its k3s is a
// stand-in script (the real binary is used by the integration tier), so
// that building it takes milliseconds; run, it leaves the file ran behind,
// which a build must never do.
type fixture struct {
	dir  string // inputs
	spec *Spec
	key  minisign.PrivateKey
	pub  minisign.PublicKey
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("k3s", "#!/bin/sh\ntouch '"+filepath.Join(dir, "ran")+"'\necho 'k3s version v1.31.1+k3s1 (536fa44e)'\n", 0o755)
	write("chart/Chart.yaml", "apiVersion: v2\nname: demo\nversion: 0.2.0\n", 0o644)
	write("chart/values.yaml", "image: registry.example/demo/gateway:1.0\n", 0o644)
	write("chart/templates/deploy.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: gw}
spec:
  template:
    spec:
      initContainers: [{name: init, image: "registry.example/demo/init:2"}]
      containers:
      - name: gw
        image: {{ .Values.image | quote }}
        env: [{name: image, value: not-an-image}]
`, 0o644)
	model := make([]byte, 5<<19)
	rand.Read(model)
	write("model.onnx", string(model), 0o644)
	write("labels.txt", "person\ncar\n", 0o644)
	f := &fixture{dir: dir, spec: &Spec{
		APIVersion: APIVersion, Kind: SpecKind, Name: "site-a", Version: "1.4.0", Arch: runtime.GOARCH,
		K3s:    SpecK3s{Binary: "./k3s"},
		Charts: []SpecChart{{Name: "demo", Source: "./chart"}},
		Files:  []SpecFile{{Source: "./model.onnx", Dest: "models/model.onnx"}, {Source: "file://" + filepath.Join(dir, "labels.txt"), Dest: "models/labels.txt"}},
	}}
	var err error
	if f.pub, f.key, err = minisign.GenerateKey(nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) build(t testing.TB, out string, split int64) *Result {
	t.Helper()
	res, err := Build(context.Background(), f.spec, BuildOptions{Out: out, Key: &f.key, Pwd: f.dir, Split: split})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return res
}

func TestBuildDirectory(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "site-a")
	res := f.build(t, out, 0)
	m := res.Manifest
	if m.K3s.Version != "v1.31.1+k3s1" {
		t.Errorf("k3s version = %q", m.K3s.Version)
	}
	// fetched content is read, never run: it would run with the key's password in its environment
	if _, err := os.Stat(filepath.Join(f.dir, "ran")); err == nil {
		t.Error("build ran the k3s binary it fetched")
	}
	var paths []string
	for _, fl := range m.Files {
		paths = append(paths, fl.Path)
	}
	want := []string{"charts/demo-0.2.0.tgz", "files/models/labels.txt", "files/models/model.onnx", "images/index.json", "images/oci-layout", "k3s/k3s"}
	if !slices.Equal(paths, want) {
		t.Errorf("files = %v, want %v", paths, want)
	}
	fi, err := os.Stat(filepath.Join(out, "k3s/k3s"))
	if err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("k3s binary not executable: %v %v", fi, err)
	}
	// nothing but the bundle is left beside it
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("build left %d entries beside the bundle", len(entries))
	}
	op, err := Open(context.Background(), out, OpenOptions{PublicKey: &f.pub, Arch: runtime.GOARCH})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if !op.Signed || op.Comment != "perch bundle site-a 1.4.0 "+runtime.GOARCH {
		t.Errorf("signed=%v comment=%q", op.Signed, op.Comment)
	}
}

func TestBuildRefusesToOverwrite(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "b.tar.zst")
	os.WriteFile(out, []byte("old"), 0o644)
	_, err := Build(context.Background(), f.spec, BuildOptions{Out: out, Pwd: f.dir})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("err = %v", err)
	}
}

func TestBuildFailureLeavesNothing(t *testing.T) {
	f := newFixture(t)
	f.spec.Files = append(f.spec.Files, SpecFile{Source: "./no-such-file", Dest: "x"})
	parent := t.TempDir()
	_, err := Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(parent, "b.tar.zst"), Pwd: f.dir})
	if err == nil || !strings.Contains(err.Error(), "files[2]") {
		t.Fatalf("err = %v, want one naming files[2]", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("failed build left %v", entries)
	}
}

func TestBuildWrongChartName(t *testing.T) {
	f := newFixture(t)
	f.spec.Charts[0].Name = "other"
	_, err := Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(t.TempDir(), "b"), Pwd: f.dir})
	if err == nil || !strings.Contains(err.Error(), `charts[0] other: the source holds chart "demo"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestBuildChecksum(t *testing.T) {
	f := newFixture(t)
	f.spec.K3s.Binary = "./k3s?checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000"
	_, err := Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(t.TempDir(), "b"), Pwd: f.dir})
	if err == nil || !strings.Contains(err.Error(), "k3s.binary") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("err = %v, want a checksum failure naming k3s.binary", err)
	}
}

func TestArchiveAndSplitMatchDirectory(t *testing.T) {
	f := newFixture(t)
	tmp := t.TempDir()
	dir := f.build(t, filepath.Join(tmp, "d"), 0).Manifest
	// the same chart touched later packs to the same bytes
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(f.dir, "chart/Chart.yaml"), later, later)
	arch := f.build(t, filepath.Join(tmp, "a.tar.zst"), 0)
	split := f.build(t, filepath.Join(tmp, "s.tar.zst"), 1<<20)
	if len(split.Paths) < 2 || !strings.HasSuffix(split.Paths[0], ".tar.zst.001") {
		t.Fatalf("split parts = %v", split.Paths)
	}
	a, _ := dir.Encode()
	b, _ := arch.Manifest.Encode()
	if !bytes.Equal(a, b) {
		t.Errorf("archive manifest differs from directory manifest:\n%s\n%s", a, b)
	}
	for _, src := range []string{filepath.Join(tmp, "a.tar.zst"), split.Paths[0], filepath.Join(tmp, "s.tar.zst")} {
		staging := filepath.Join(t.TempDir(), "staging")
		op, err := Open(context.Background(), src, OpenOptions{PublicKey: &f.pub, Staging: staging})
		if err != nil {
			t.Fatalf("open %s: %v", src, err)
		}
		got, err := os.ReadFile(filepath.Join(staging, "files/models/model.onnx"))
		want, _ := os.ReadFile(filepath.Join(f.dir, "model.onnx"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: staged model differs (%v)", src, err)
		}
		if op.Manifest.Name != "site-a" {
			t.Errorf("%s: name %q", src, op.Manifest.Name)
		}
	}
}

func TestSpecValidateListsEveryProblem(t *testing.T) {
	s := &Spec{APIVersion: "v1", Kind: SpecKind, Name: "Site_A", Version: "1.0", Arch: "386",
		Charts: []SpecChart{{Name: "a", Source: "x"}, {Name: "a"}},
		Images: []string{"UPPER CASE:!"},
		Files:  []SpecFile{{Source: "x", Dest: "../etc/passwd"}, {Source: "y", Dest: "/abs"}},
	}
	err := s.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"apiVersion", "name:", "arch:", "k3s.binary", "charts[1].name", "charts[1].source", "images[0]", "files[0].dest", "files[1].dest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestLoadSpecUnknownField(t *testing.T) {
	p := filepath.Join(t.TempDir(), "spec.yaml")
	os.WriteFile(p, []byte("apiVersion: perch.dev/v1alpha1\nkind: BundleSpec\nname: a\nversion: '1'\narch: amd64\nk3s: {binary: x}\nimagesFromChart: true\n"), 0o644)
	_, err := LoadSpec(p)
	if err == nil || !strings.Contains(err.Error(), "imagesFromChart") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"3900MiB": 3900 << 20, "4G": 4 << 30, "1000000": 1000000, "2 GB": 2e9, "1.5KiB": 1536, "10mb": 10e6} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1M", "3 parsecs", "MiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestK3sVersionFromBinaryText(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k3s")
	os.WriteFile(p, []byte("\x7fELF\x00\x01junk v1.31.1-k3s1 \x00github.com/k3s-io/k3s/pkg/version.Version=v1.31.1+k3s-536fa44e\x00 v1.31.1+k3s-536fa44e\x00"), 0o755)
	v, err := K3sVersion(p)
	if err != nil || v != "v1.31.1+k3s-536fa44e" {
		t.Errorf("version = %q, %v", v, err)
	}
	os.WriteFile(p, []byte("not k3s"), 0o755)
	if _, err := K3sVersion(p); err == nil {
		t.Error("a file without a k3s version was accepted")
	}
}

// TestOpenOverHTTP streams an archive from a web server (a USB stick's
// stand-in: an HTTP mirror on site), both plainly and through go-getter
// with a checksum.
func TestOpenOverHTTP(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	arch := filepath.Join(dir, "site-a.tar.zst")
	f.build(t, arch, 0)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()

	staging := filepath.Join(t.TempDir(), "staging")
	op, err := Open(context.Background(), srv.URL+"/site-a.tar.zst", OpenOptions{PublicKey: &f.pub, Staging: staging})
	if err != nil {
		t.Fatalf("open over http: %v", err)
	}
	if _, err := os.Stat(filepath.Join(staging, K3sBinaryPath)); err != nil || !op.Signed {
		t.Errorf("staged k3s missing (%v) or unsigned", err)
	}

	sum := sha256File(t, arch)
	if _, err := Open(context.Background(), srv.URL+"/site-a.tar.zst?checksum=sha256:"+sum, OpenOptions{PublicKey: &f.pub}); err != nil {
		t.Errorf("open through go-getter with checksum: %v", err)
	}
	_, err = Open(context.Background(), srv.URL+"/site-a.tar.zst?checksum=sha256:"+strings.Repeat("0", 64), OpenOptions{PublicKey: &f.pub})
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("a wrong checksum was accepted: %v", err)
	}
	if _, err := Open(context.Background(), srv.URL+"/missing.tar.zst", OpenOptions{PublicKey: &f.pub}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing URL: %v", err)
	}
}

// TestBuildRefusesUnverifiedHTTP: a download without a checksum is whatever
// the network said, and the bundle's signature would vouch for it.
func TestBuildRefusesUnverifiedHTTP(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(f.dir)))
	defer srv.Close()
	f.spec.Files[1].Source = srv.URL + "/labels.txt"
	parent := t.TempDir()
	_, err := Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(parent, "b"), Pwd: f.dir})
	if err == nil || !strings.Contains(err.Error(), "files[1].source") || !strings.Contains(err.Error(), "?checksum=") ||
		!strings.Contains(err.Error(), "--allow-unverified-sources") || !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("err = %v, want files[1].source refused for want of a checksum", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("refused build left %v", entries)
	}
	res, err := Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(parent, "b"), Pwd: f.dir, AllowUnverifiedSources: true})
	if err != nil {
		t.Fatalf("with AllowUnverifiedSources: %v", err)
	}
	if _, ok := res.Manifest.File("files/models/labels.txt"); !ok {
		t.Error("the unverified file is not in the bundle")
	}
	f.spec.Files[1].Source = srv.URL + "/labels.txt?checksum=sha256:" + sha256File(t, filepath.Join(f.dir, "labels.txt"))
	if _, err := Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(parent, "c"), Pwd: f.dir}); err != nil {
		t.Errorf("with a checksum: %v", err)
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// A connected site pulls through its own mirror; the bundle still names
// images as the charts ask for them.
func TestBuildThroughMirror(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH}); err != nil {
		t.Fatal(err)
	}
	if err := crane.Push(img, host+"/hub/library/nats:2.10"); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	f := newFixture(t)
	f.spec.Images = []string{"nats:2.10"}
	mirrors, err := ParseMirrors([]string{"docker.io=" + host + "/hub"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(t.TempDir(), "b"), Key: &f.key, Pwd: f.dir, Mirrors: mirrors})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if got := res.Manifest.Images; len(got) != 1 || got[0].Reference != "docker.io/library/nats:2.10" || got[0].Digest != want.String() {
		t.Errorf("images = %+v, want docker.io/library/nats:2.10 at %s", got, want)
	}

	f.spec.Images = []string{"quay.io/x/y:1"}
	_, err = Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(t.TempDir(), "c"), Pwd: f.dir, Mirrors: map[string]string{"quay.io": host + "/nothing"}})
	if err == nil || !strings.Contains(err.Error(), "through mirror "+host+"/nothing/x/y:1") {
		t.Errorf("missing image on the mirror: %v", err)
	}
	for _, bad := range []string{"docker.io", "docker.io=https://h/x", "=h"} {
		if _, err := ParseMirrors([]string{bad}); err == nil || !strings.Contains(err.Error(), "REGISTRY=MIRROR") {
			t.Errorf("ParseMirrors(%q) = %v", bad, err)
		}
	}
}

// TestSpecFileDests: one row per way files[].dest can go wrong, each
// refused by Validate, before anything is fetched, with its own message.
func TestSpecFileDests(t *testing.T) {
	for _, c := range []struct {
		name  string
		dests []string
		want  string // in the error about the last dest; "" accepts
	}{
		{"distinct", []string{"models/a", "models/b", "labels.txt"}, ""},
		{"a file and a directory above another", []string{"models", "models/a"}, `files[1].dest: "models/a" is inside files[0].dest "models"`},
		{"a directory above an earlier file", []string{"models/a", "models"}, `files[1].dest: "models" is a directory of files[0].dest "models/a"`},
		{"differ only in case", []string{"models/A", "models/a"}, `files[1].dest: "models/a" differs from files[0].dest "models/A" only in case`},
		{"directories differ in case", []string{"Models/a", "models/b"}, `files[1].dest: "models/b" and files[0].dest "Models/a" spell "models" in different cases`},
		{"dot element", []string{"models/./a"}, `files[0].dest: "models/./a" has a "." element`},
		{"trailing dot", []string{"models/."}, `files[0].dest: "models/." has a "." element`},
		{"dot-dot", []string{"models/../a"}, `files[0].dest: "models/../a" must be a relative file path without ".."`},
		{"twice", []string{"models/a", "models/a"}, `files[1].dest: "models/a" is used twice`},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Spec{APIVersion: APIVersion, Kind: SpecKind, Name: "site-a", Version: "1.0.0", Arch: "amd64", K3s: SpecK3s{Binary: "./k3s"}}
			for _, d := range c.dests {
				s.Files = append(s.Files, SpecFile{Source: "./x", Dest: d})
			}
			err := s.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("err = %v\nwant %s", err, c.want)
			}
		})
	}
}

// TestBuildRefusesLinksInSources: a link in a chart directory or a files[]
// source would put whatever it points to (/etc/shadow, all of /etc) into
// the signed bundle. Build refuses, naming the link, before fetching.
func TestBuildRefusesLinksInSources(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "shadow")
	must(t, os.WriteFile(secret, []byte("root:$6$secret"), 0o600))
	for _, c := range []struct {
		name, field, path string
		mutate            func(t *testing.T, f *fixture)
	}{
		{"link to a file in a chart", "charts[0].source", "chart/templates/shadow.yaml", func(t *testing.T, f *fixture) {
			must(t, os.Symlink(secret, filepath.Join(f.dir, "chart/templates/shadow.yaml")))
		}},
		{"link to a directory in a chart", "charts[0].source", "chart/etc", func(t *testing.T, f *fixture) {
			must(t, os.Symlink(filepath.Dir(secret), filepath.Join(f.dir, "chart/etc")))
		}},
		{"the chart directory is a link", "charts[0].source", "linked-chart", func(t *testing.T, f *fixture) {
			must(t, os.Symlink(filepath.Join(f.dir, "chart"), filepath.Join(f.dir, "linked-chart")))
			f.spec.Charts[0].Source = "./linked-chart"
		}},
		{"a pipe in a chart", "charts[0].source", "chart/pipe", func(t *testing.T, f *fixture) {
			must(t, syscall.Mkfifo(filepath.Join(f.dir, "chart/pipe"), 0o644))
		}},
		{"a files[] source is a link", "files[1].source", "labels.txt", func(t *testing.T, f *fixture) {
			must(t, os.Remove(filepath.Join(f.dir, "labels.txt")))
			must(t, os.Symlink(secret, filepath.Join(f.dir, "labels.txt")))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.mutate(t, f)
			parent := t.TempDir()
			_, err := Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(parent, "b.tar.zst"), Pwd: f.dir})
			if err == nil || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), filepath.Join(f.dir, c.path)) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("err = %v, want %s refused naming %s", err, c.field, c.path)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("refused build left %v", entries)
			}
		})
	}
}

// TestBuildOut: --out as the README writes it. A directory (site-a/, or an
// empty directory that exists) gets a directory bundle, NAME.tar.zst an
// archive; other archive names and non-empty directories are refused
// before anything is fetched, and a failed build leaves nothing it made.
func TestBuildOut(t *testing.T) {
	f := newFixture(t)
	build := func(out string) error {
		_, err := Build(context.Background(), f.spec, BuildOptions{Out: out, Key: &f.key, Pwd: f.dir})
		return err
	}
	opens := func(t *testing.T, src string) {
		t.Helper()
		if _, err := Open(context.Background(), src, OpenOptions{PublicKey: &f.pub}); err != nil {
			t.Errorf("the bundle at %s does not open: %v", src, err)
		}
	}
	t.Run("directory with a slash", func(t *testing.T) {
		parent := t.TempDir()
		if err := build(filepath.Join(parent, "site-a") + "/"); err != nil {
			t.Fatal(err)
		}
		opens(t, filepath.Join(parent, "site-a"))
		if entries, _ := os.ReadDir(parent); len(entries) != 1 {
			t.Errorf("build left %v beside the bundle", entries)
		}
	})
	t.Run("empty directory that exists", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "site-a")
		must(t, os.Mkdir(out, 0o755))
		if err := build(out); err != nil {
			t.Fatal(err)
		}
		opens(t, out)
	})
	t.Run("directory that is not empty", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "site-a")
		must(t, os.Mkdir(out, 0o755))
		must(t, os.WriteFile(filepath.Join(out, "keep"), []byte("x"), 0o644))
		f.spec.K3s.Binary = "./no-such-k3s" // refused before this is fetched
		defer func() { f.spec.K3s.Binary = "./k3s" }()
		err := build(out)
		if err == nil || !strings.Contains(err.Error(), "not empty") || !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("err = %v, want the non-empty --out refused first", err)
		}
		if entries, _ := os.ReadDir(out); len(entries) != 1 {
			t.Errorf("--out now holds %v", entries)
		}
	})
	for _, name := range []string{"site-a.tar.gz", "site-a.tgz", "site-a.zip", "site-a.tar"} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			err := build(filepath.Join(parent, name))
			if err == nil || !strings.Contains(err.Error(), ArchiveExt) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("err = %v, want %s refused, pointing at %s", err, name, ArchiveExt)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("refused build left %v", entries)
			}
		})
	}
	t.Run("failed build removes the directories it made", func(t *testing.T) {
		parent := t.TempDir()
		f.spec.Files = append(f.spec.Files, SpecFile{Source: "./no-such-file", Dest: "x"})
		defer func() { f.spec.Files = f.spec.Files[:2] }()
		for _, out := range []string{filepath.Join(parent, "new/deeper/site-a"), filepath.Join(parent, "new/site-a.tar.zst")} {
			if err := build(out); err == nil {
				t.Fatal("built with a missing file")
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("failed build of %s left %v", out, entries)
			}
		}
	})
}
