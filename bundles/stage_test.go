package bundles

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// stageFixture builds the fixture once as a directory and once as an
// archive.
func stageFixture(t *testing.T) (f *fixture, dir, archive string) {
	t.Helper()
	f = newFixture(t)
	out := t.TempDir()
	dir = filepath.Join(out, "site-a")
	archive = filepath.Join(out, "site-a"+ArchiveExt)
	f.build(t, dir, 0)
	f.build(t, archive, 0)
	return f, dir, archive
}

func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%s holds %v, want nothing", dir, entries)
	}
}

func TestStageInPlace(t *testing.T) {
	f, dir, _ := stageFixture(t)
	parent := t.TempDir()
	for _, src := range []string{dir, "file://" + dir} {
		s, err := Stage(context.Background(), src, StageOptions{OpenOptions: OpenOptions{PublicKey: &f.pub, Arch: runtime.GOARCH}, Parent: parent, InPlace: true})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if s.Dir != dir || !s.Signed || s.Manifest.Name != "site-a" || len(s.ManifestRaw) == 0 {
			t.Errorf("%s: staged in %q (signed %v, %s), want in place in %s", src, s.Dir, s.Signed, s.Manifest.Name, dir)
		}
		charts := s.Charts()
		if len(charts) != 1 || charts[0] != (ChartFile{Name: "demo", Version: "0.2.0", Path: filepath.Join(dir, "charts", "demo-0.2.0.tgz")}) {
			t.Errorf("%s: charts %+v", src, charts)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		emptyDir(t, parent)
		if _, err := os.Stat(filepath.Join(dir, ManifestName)); err != nil {
			t.Errorf("%s: Close touched the source directory: %v", src, err)
		}
	}
	// in place means verified in full where it is
	flipByte(t, filepath.Join(dir, "files/models/model.onnx"))
	_, err := Stage(context.Background(), dir, StageOptions{OpenOptions: OpenOptions{PublicKey: &f.pub}, Parent: parent, InPlace: true})
	var re *RejectError
	if !errors.As(err, &re) || re.File != "files/models/model.onnx" {
		t.Errorf("a modified file in place: %v", err)
	}
	emptyDir(t, parent)
}

func TestStageArchiveIntoTemp(t *testing.T) {
	f, _, archive := stageFixture(t)
	parent := t.TempDir()
	// InPlace does not apply to an archive: it is staged all the same
	s, err := Stage(context.Background(), archive, StageOptions{OpenOptions: OpenOptions{PublicKey: &f.pub}, Parent: parent, InPlace: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Dir, parent+string(filepath.Separator)) {
		t.Errorf("staged in %s, want under %s", s.Dir, parent)
	}
	for _, c := range s.Charts() {
		if _, err := os.Stat(c.Path); err != nil {
			t.Errorf("chart %s not staged: %v", c.Name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	emptyDir(t, parent)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestStageInto(t *testing.T) {
	f, _, archive := stageFixture(t)
	into := filepath.Join(t.TempDir(), ".staging-1")
	o := StageOptions{OpenOptions: OpenOptions{PublicKey: &f.pub}, Into: into}
	s, err := Stage(context.Background(), archive, o)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir != into {
		t.Errorf("staged in %s, want %s", s.Dir, into)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(into, K3sBinaryPath)); err != nil {
		t.Errorf("Close removed what was staged Into: %v", err)
	}
	// an existing directory is never staged into, nor removed
	if _, err := Stage(context.Background(), archive, o); err == nil {
		t.Error("staged into a directory that exists")
	}
	if _, err := os.Stat(filepath.Join(into, K3sBinaryPath)); err != nil {
		t.Errorf("a refused Into was removed: %v", err)
	}
}

func TestStageFailureLeavesNothing(t *testing.T) {
	f, _, archive := stageFixture(t)
	other := newFixture(t)
	wrongKey := OpenOptions{PublicKey: &other.pub}
	parent := t.TempDir()
	if _, err := Stage(context.Background(), archive, StageOptions{OpenOptions: wrongKey, Parent: parent}); !errors.Is(err, ErrRejected) {
		t.Errorf("wrong key: %v", err)
	}
	emptyDir(t, parent)
	into := filepath.Join(parent, "staging")
	if _, err := Stage(context.Background(), archive, StageOptions{OpenOptions: wrongKey, Into: into}); !errors.Is(err, ErrRejected) {
		t.Errorf("wrong key, Into: %v", err)
	}
	emptyDir(t, parent)
	// a file cut short is found only after the staging began
	cut := filepath.Join(t.TempDir(), "cut"+ArchiveExt)
	b, err := os.ReadFile(archive)
	must(t, err)
	must(t, os.WriteFile(cut, b[:len(b)*3/4], 0o644))
	if _, err := Stage(context.Background(), cut, StageOptions{OpenOptions: OpenOptions{PublicKey: &f.pub}, Into: into}); !errors.Is(err, ErrRejected) {
		t.Errorf("cut archive: %v", err)
	}
	emptyDir(t, parent)
}

func TestStageChartsOnly(t *testing.T) {
	f, dir, _ := stageFixture(t)
	o := StageOptions{OpenOptions: OpenOptions{PublicKey: &f.pub}, Parent: t.TempDir(), InPlace: true, ChartsOnly: true}
	// what rendering does not read is not read
	flipByte(t, filepath.Join(dir, "files/models/model.onnx"))
	s, err := Stage(context.Background(), dir, o)
	if err != nil {
		t.Fatalf("a modified model failed a charts-only stage: %v", err)
	}
	if s.Dir != dir || !s.Signed {
		t.Errorf("staged in %s (signed %v), want in place in %s", s.Dir, s.Signed, dir)
	}
	emptyDir(t, o.Parent)
	flipByte(t, filepath.Join(dir, "charts/demo-0.2.0.tgz"))
	_, err = Stage(context.Background(), dir, o)
	if err == nil || !strings.Contains(err.Error(), "charts/demo-0.2.0.tgz differs from the signed manifest") {
		t.Errorf("a modified chart: %v", err)
	}
	// the signature is still checked
	other := newFixture(t)
	o.PublicKey = &other.pub
	if _, err := Stage(context.Background(), dir, o); !errors.Is(err, ErrRejected) {
		t.Errorf("wrong key: %v", err)
	}
}

func TestStagedImagesDir(t *testing.T) {
	s := &Staged{Opened: &Opened{Manifest: &Manifest{}, Dir: "b"}}
	if got := s.ImagesDir(); got != "" {
		t.Errorf("no images: %q", got)
	}
	s.Manifest.Images = []Image{{}}
	if got := s.ImagesDir(); got != filepath.Join("b", ImagesDir) {
		t.Errorf("default layout: %q", got)
	}
	s.Manifest.Layout.Path = "oci/layout"
	if got := s.ImagesDir(); got != filepath.Join("b", "oci", "layout") {
		t.Errorf("layout path: %q", got)
	}
}
