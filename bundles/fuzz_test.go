package bundles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseManifest: a manifest is read before anything vouches for it
// (unsigned bundles, inspect without --pubkey); whatever it holds, parsing
// returns an error or a manifest whose paths are all clean.
func FuzzParseManifest(f *testing.F) {
	fx := newFixture(f)
	out := filepath.Join(f.TempDir(), "b")
	fx.build(f, out, 0)
	raw, err := os.ReadFile(filepath.Join(out, ManifestName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"apiVersion":"perch.dev/v1alpha1","kind":"Bundle","name":"a","version":"1","arch":"amd64","files":[{"path":"../x","size":1,"sha256":""}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		for _, fl := range m.Files {
			if checkPath(fl.Path) != nil {
				t.Fatalf("accepted path %q", fl.Path)
			}
		}
		if nameProblem(m.Name) != "" || versionProblem(m.Version) != "" {
			t.Fatalf("accepted name %q version %q", m.Name, m.Version)
		}
	})
}

// FuzzParseSpec: a BundleSpec is user input; whatever it holds, decoding
// returns an error or a spec that validates.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(readmeSpec))
	f.Add([]byte("apiVersion: perch.dev/v1alpha1\nkind: BundleSpec\nname: a\nversion: 1\narch: amd64\nk3s: {binary: ./k3s}\nfiles: [{source: x, dest: models}, {source: y, dest: Models/a}]\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSpec(b, "fuzz.yaml")
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed a spec that does not validate: %v", err)
		}
	})
}

// readmeSpec is the README's example.
const readmeSpec = `apiVersion: perch.dev/v1alpha1
kind: BundleSpec
name: site-a
version: 1.4.0
arch: amd64
k3s:
  binary: https://mirror.example/k3s?checksum=file:https://mirror.example/sha256sum-amd64.txt
  airgapImages: file:///srv/k3s/k3s-airgap-images-amd64.tar.zst   # optional
charts:
  - name: perch-analytics
    source: ./charts/perch-analytics          # a chart directory or a .tgz
images:
  - docker.io/bluenviron/mediamtx:1.9.3
imagesFromCharts: true
files:
  - source: ./models/model.onnx
    dest: models/model.onnx
`

func TestLoadSpecSizeLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "spec.yaml")
	big := append([]byte("apiVersion: perch.dev/v1alpha1\n#"), make([]byte, maxSpecSize)...)
	for i := range big[32:] {
		big[32+i] = 'x'
	}
	must(t, os.WriteFile(p, big, 0o644))
	if _, err := LoadSpec(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("err = %v, want a spec over %d bytes refused for its size", err, maxSpecSize)
	}
}
