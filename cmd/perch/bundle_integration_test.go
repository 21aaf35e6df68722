//go:build integration

package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/perchedge/perch/airgap"
	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/internal/testreg"
)

// notInTestBundles are the images a testdata/server.yaml node's config
// pulls that the tier's bundles do not carry: k3s's pause and helm job
// images and the pipeline's (no module builds them here, and a server
// without agent runs no pod that would pull them). The install's
// bundle-images check then warns instead of refusing.
const notInTestBundles = "  allowMissing: [docker.io/rancher/mirrored-pause:3.6, docker.io/rancher/klipper-helm:v0.9.3-build20241008, " +
	"docker.io/library/nats:2.10.22-alpine, docker.io/natsio/prometheus-nats-exporter:0.15.0, docker.io/bluenviron/mediamtx:1.9.3, docker.io/intel/dlstreamer:2024.2.0-ubuntu22]\n"

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
		must(t, os.WriteFile(s.cfg, []byte(cfg+"bundle:\n  source: "+src+"\n  publicKey: "+key+".pub\n"+notInTestBundles), 0o644))
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

// TestIntegrationRegistryFromBundle installs a server from a bundle that
// carries images: the appliance registry comes up before k3s, the images
// are loaded into it, skopeo pulls each one over TLS with the generated
// credentials and gets the bundle's digests, and k3s is told to mirror the
// images' registry to it.
func TestIntegrationRegistryFromBundle(t *testing.T) {
	s := newSandbox(t)
	up := testreg.Start(t)
	base := mustLayer(t, 1<<20)
	images := map[string]v1.Image{
		up.Addr + "/perch-test/app:1":  platformImage(t, types.DockerManifestSchema2, base, mustLayer(t, 64<<10)),
		up.Addr + "/perch-test/tool:2": platformImage(t, types.OCIManifestSchema1, base, mustLayer(t, 96<<10)),
	}
	var refs []string
	for ref, img := range images {
		must(t, remote.Write(mustParse(t, ref), img))
		refs = append(refs, ref)
	}
	slices.Sort(refs)

	dir, key := s.imageBundle("site-b", "2.0.0", refs)
	port := freePort(t)
	cfg := strings.Replace(readFile(t, s.cfg), "  binary: "+os.Getenv("PERCH_K3S_BIN")+"\n", "", 1)
	must(t, os.WriteFile(s.cfg, []byte(cfg+fmt.Sprintf("bundle:\n  source: %s\n  publicKey: %s.pub\n%sregistry:\n  port: %d\n", dir, key, notInTestBundles, port)), 0o644))

	out, took := s.install()
	t.Logf("install with registry and images: %s", took.Round(time.Millisecond))
	if !strings.Contains(out, "[registry-images] 2 images") {
		t.Errorf("install did not load the 2 images:\n%s", out)
	}

	certDir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(certDir, "ca.crt"), []byte(readFile(t, filepath.Join(s.root, "etc/perch/registry/ca.crt"))), 0o644))
	pw := strings.TrimSpace(readFile(t, filepath.Join(s.root, "etc/perch/secrets/registry-password")))
	for ref, img := range images {
		r := mustParse(t, ref)
		want, _ := img.Digest()
		src := fmt.Sprintf("docker://127.0.0.1:%d/%s:%s", port, airgap.Repository(r), r.Identifier())
		raw, err := exec.Command("skopeo", "inspect", "--cert-dir", certDir, "--creds", "perch:"+pw, src).Output()
		if err != nil {
			t.Errorf("skopeo inspect %s: %v\n%s", src, err, stderrOf(err))
			continue
		}
		var got struct{ Digest string }
		if json.Unmarshal(raw, &got) != nil || got.Digest != want.String() {
			t.Errorf("%s: digest %q, want %s", src, got.Digest, want)
		}
		if _, err := exec.Command("skopeo", "inspect", "--cert-dir", certDir, "--creds", "perch:wrong", src).Output(); err == nil {
			t.Errorf("%s: a wrong password was accepted", src)
		}
	}

	reg := readFile(t, filepath.Join(s.root, "etc/rancher/k3s/registries.yaml"))
	for _, want := range []string{
		"\n  " + up.Addr + ":\n    endpoint:",
		fmt.Sprintf("https://127.0.0.1:%d", port),
		airgap.RegistryPrefix(up.Addr) + "/$1",
		"password: " + pw,
	} {
		if !strings.Contains(reg, want) {
			t.Errorf("registries.yaml lacks %q:\n%s", want, reg)
		}
	}

	out, _ = s.install()
	if !strings.Contains(out, "no changes, the node already matched the config") {
		t.Errorf("rerun was not a no-op:\n%s", out)
	}
}

func mustLayer(t *testing.T, size int64) v1.Layer {
	t.Helper()
	l, err := random.Layer(size, types.DockerLayer)
	must(t, err)
	return l
}

// platformImage is an image for this host, as a bundle build requires.
func platformImage(t *testing.T, mt types.MediaType, layers ...v1.Layer) v1.Image {
	t.Helper()
	base := mutate.MediaType(empty.Image, mt)
	if mt == types.OCIManifestSchema1 {
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	}
	img, err := mutate.ConfigFile(base, &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH})
	must(t, err)
	img, err = mutate.AppendLayers(img, layers...)
	must(t, err)
	return img
}

func mustParse(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	must(t, err)
	return r
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// imageBundle builds a signed bundle directory with the fixture's k3s and
// the given images, with a key made for it; key is the path without
// .key/.pub.
func (s *sandbox) imageBundle(name, version string, images []string) (dir, key string) {
	t := s.t
	t.Helper()
	work := t.TempDir()
	key = filepath.Join(work, "site")
	if out, code := s.perch("bundle", "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	spec := filepath.Join(work, "spec.yaml")
	must(t, os.WriteFile(spec, []byte(`apiVersion: perch.dev/v1alpha1
kind: BundleSpec
name: `+name+`
version: `+version+`
arch: `+runtime.GOARCH+`
k3s:
  binary: `+os.Getenv("PERCH_K3S_BIN")+`
images: [`+strings.Join(images, ", ")+`]
`), 0o644))
	dir = filepath.Join(work, name)
	if out, code := s.perch("bundle", "build", "--spec", spec, "--out", dir, "--key", key+".key"); code != 0 {
		t.Fatalf("bundle build exited %d:\n%s", code, out)
	}
	return dir, key
}
