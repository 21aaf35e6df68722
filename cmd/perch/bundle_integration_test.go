//go:build integration

package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/host"
)

// TestIntegrationInstallFromBundle installs k3s from a signed bundle built
// by perch itself: a tampered copy is refused with the host untouched, the
// good one installs, and a rerun neither re-verifies nor changes anything.
func TestIntegrationInstallFromBundle(t *testing.T) {
	s := newSandbox(t)
	work := t.TempDir()
	key := filepath.Join(work, "site")
	if out, code := s.perch("bundle", "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	spec := filepath.Join(work, "spec.yaml")
	must(t, os.WriteFile(spec, []byte(`apiVersion: perch.dev/v1alpha1
kind: BundleSpec
name: site-a
version: 1.0.0
arch: `+runtime.GOARCH+`
k3s:
  binary: `+os.Getenv("PERCH_K3S_BIN")+`
`), 0o644))
	good := filepath.Join(work, "site-a.tar.zst")
	if out, code := s.perch("bundle", "build", "--spec", spec, "--out", good, "--key", key+".key"); code != 0 {
		t.Fatalf("bundle build exited %d:\n%s", code, out)
	}
	// the same bundle with one byte of k3s changed, as a directory
	bad := filepath.Join(work, "tampered")
	if out, code := s.perch("bundle", "build", "--spec", spec, "--out", bad, "--key", key+".key"); code != 0 {
		t.Fatalf("bundle build exited %d:\n%s", code, out)
	}
	flip(t, filepath.Join(bad, bundles.K3sBinaryPath))

	cfg := strings.Replace(readFile(t, s.cfg), "  binary: "+os.Getenv("PERCH_K3S_BIN")+"\n", "", 1)
	if strings.Contains(cfg, "binary:") {
		t.Fatal("could not drop k3s.binary from the test config")
	}
	useBundle := func(src string) {
		must(t, os.WriteFile(s.cfg, []byte(cfg+"bundle:\n  source: "+src+"\n  publicKey: "+key+".pub\n"), 0o644))
	}

	useBundle(bad)
	out, code := s.perch("install", "--config", s.cfg, "--root", s.root, "--init", "none", "--yes")
	if code != 1 || !strings.Contains(out, "k3s/k3s: sha256 is") {
		t.Fatalf("tampered bundle: exit %d, want 1 and the file named:\n%s", code, out)
	}
	if left := files(t, s.root); len(left) != 0 {
		t.Fatalf("a refused bundle changed the host: %v", left)
	}

	useBundle(good)
	out, _ = s.install()
	for _, want := range []string{"site-a 1.0.0 verified", "[bundle] done", "[k3s-ready] done"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}
	raw := readFile(t, filepath.Join(s.root, "var/lib/perch/bundles/site-a-1.0.0", bundles.ManifestName))
	m, err := bundles.ParseManifest([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := m.File(bundles.K3sBinaryPath)
	if got := sha256File(t, filepath.Join(s.root, "usr/local/bin/k3s")); got != f.SHA256 {
		t.Errorf("installed k3s sha256 %s, the bundle's is %s", got, f.SHA256)
	}

	out, _ = s.install()
	if strings.Contains(out, "verifying") || !strings.Contains(out, "no changes, the node already matched the config") {
		t.Errorf("rerun with the same bundle was not a no-op:\n%s", out)
	}
}

func files(t *testing.T, root string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func flip(t *testing.T, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, 4096)
	must(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, 4096)
	must(t, err)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	d, err := host.DigestFile(p)
	must(t, err)
	return strings.TrimPrefix(d, "sha256:")
}
