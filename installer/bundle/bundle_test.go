package bundle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/host"
)

// Status says "not in the bundle" from the bundles installed: every one in
// place, none being staged or replaced.
func TestInstalledManifests(t *testing.T) {
	root := t.TempDir()
	h, err := host.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if ms, err := InstalledManifests(h); err != nil || len(ms) != 0 {
		t.Fatalf("no bundles dir: %v, %v", ms, err)
	}
	sum := strings.Repeat("0", 64)
	write := func(dir, name, version string) {
		t.Helper()
		m := &bundles.Manifest{APIVersion: bundles.APIVersion, Kind: bundles.ManifestKind, Name: name, Version: version, Arch: "amd64",
			K3s:   bundles.K3sInfo{Version: "v1.31.1+k3s1", Binary: "k3s"},
			Files: []bundles.File{{Path: "k3s", Size: 1, SHA256: sum}}}
		raw, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, Dir, dir)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, bundles.ManifestName), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("site-1.0.0", "site", "1.0.0")
	write("site-1.1.0", "site", "1.1.0")
	write(".staging-42", "staged", "9.9.9")
	write("site-1.1.0.old", "old", "0.0.1")
	ms, err := InstalledManifests(h)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name+" "+m.Version)
	}
	if strings.Join(got, ", ") != "site 1.0.0, site 1.1.0" {
		t.Errorf("installed = %q, want site 1.0.0 and 1.1.0", got)
	}
}
