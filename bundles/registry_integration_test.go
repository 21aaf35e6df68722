//go:build integration

// Integration tier for air-gap bundles (issue 3): images built here are
// pushed to a real registry (Debian's docker-registry on loopback), some
// sharing layers and one multi-arch; the real perch binary builds, verifies
// and inspects a bundle of them; Debian's skopeo and minisign then check
// that the layout and the signature are the standard formats Perch claims.
// Run with `make integration`.
package bundles_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/perchedge/perch/internal/testreg"
	"io/fs"
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

	"github.com/perchedge/perch/bundles"
)

func TestIntegrationBundleFromRegistry(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Fatalf("bundles are for amd64 or arm64; this host is %s", runtime.GOARCH)
	}
	for _, bin := range []string{"docker-registry", "skopeo", "minisign"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed: run scripts/test-deps (as root), which installs Debian's docker-registry, skopeo and minisign", bin)
		}
	}
	ctx := t.Context()
	start := time.Now()
	lap := func(what string) {
		t.Logf("%-34s %6.2fs", what, time.Since(start).Seconds())
		start = time.Now()
	}

	perch := buildPerch(t)
	lap("go build perch")
	reg := testreg.Start(t).Addr
	lap("docker-registry up")
	imgs := pushImages(t, ctx, reg)
	lap("images built and pushed")

	in := t.TempDir()
	spec := writeSpec(t, in, imgs)
	pubKey, secKey, err := bundles.GenerateKey(filepath.Join(in, "site"))
	if err != nil {
		t.Fatal(err)
	}

	// the bundle is for a site that runs only the spec's chart: no
	// pipeline, monitoring or GPU apps, and no k3s component whose image
	// this registry lacks; k3s's pause and helm job images it does not
	// carry either, and says so
	site := filepath.Join(in, "site.yaml")
	if err := os.WriteFile(site, []byte(`apiVersion: perch.dev/v1alpha1
kind: Appliance
k3s: {disable: [coredns, servicelb, traefik, local-storage, metrics-server]}
gpu: {mode: "off"}
pipeline: {enabled: false}
monitoring: {enabled: false}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	gate := []string{"--config", site, "--allow-missing", "docker.io/rancher/mirrored-pause:3.6", "--allow-missing", "docker.io/rancher/klipper-helm:v0.9.3-build20241008"}
	out := t.TempDir()
	dir := filepath.Join(out, "bundle")
	stdout, stderr := perchOK(t, perch, append([]string{"bundle", "build", "--spec", spec, "--out", dir, "--key", secKey}, gate...)...)
	if strings.TrimSpace(stdout) != dir || !strings.Contains(stderr, "saved by shared layers") {
		t.Errorf("build printed\nstdout: %s\nstderr: %s\nwant the bundle path on stdout and the shared-layer saving on stderr", stdout, stderr)
	}
	lap("perch bundle build (dir)")
	archive := filepath.Join(out, "bundle.tar.zst")
	perchOK(t, perch, append([]string{"bundle", "build", "--spec", spec, "--out", archive, "--key", secKey}, gate...)...)
	lap("perch bundle build (.tar.zst)")

	perchOK(t, perch, "bundle", "verify", dir, "--pubkey", pubKey)
	lap("perch bundle verify (dir)")
	perchOK(t, perch, "bundle", "verify", archive, "--pubkey", pubKey)
	lap("perch bundle verify (.tar.zst)")

	m := inspectJSON(t, perch, dir, pubKey)
	text, _ := perchOK(t, perch, "bundle", "inspect", dir, "--pubkey", pubKey)
	for _, want := range []string{"signature good", "saved by shared layers", fmt.Sprintf("in %d blobs", m.Layout.Blobs)} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect does not say %q:\n%s", want, text)
		}
	}
	if a := inspectJSON(t, perch, archive, pubKey); !slices.Equal(a.Images, m.Images) || a.Layout != m.Layout {
		t.Errorf("the archive holds other images than the directory built from the same spec:\narchive: %+v %+v\ndir:     %+v %+v", a.Images, a.Layout, m.Images, m.Layout)
	}
	lap("perch bundle inspect")

	checkManifest(t, m, imgs)
	checkLayout(t, ctx, dir, m, imgs)
	lap("layout against the registry")

	// containers/image's oci: transport finds a name only among OCI-typed
	// manifests, and Perch keeps Docker-typed ones as they are (converting
	// them would change their digests): skopeo reads the OCI-typed images,
	// with shared layers, from the same layout
	read := 0
	for _, im := range m.Images {
		if strings.Contains(string(layoutMediaType(t, dir, im.Reference)), ".oci.") {
			checkSkopeo(t, dir, im)
			read++
		}
	}
	if read < 2 {
		t.Errorf("skopeo read %d images; the test means to read at least 2 OCI-typed ones", read)
	}
	lap("skopeo inspect oci:")

	checkMinisign(t, dir, pubKey)
	lap("minisign -V")

	checkTamperedBlob(t, perch, dir, m, pubKey)
	lap("tampered blob rejected")
}

// pushedImage is one reference the spec names, with what the registry must
// serve for it.
type pushedImage struct {
	ref string
	// digest is the host platform's manifest as built here; index the
	// multi-arch index it sits in, if any.
	digest v1.Hash
	index  v1.Hash
	// foreign is the other architecture's variant, which must stay out.
	foreign v1.Image
}

type testImages struct {
	apps      []pushedImage // app-a, app-b, app-a by digest: spec.images
	fromChart pushedImage   // app-c: named only by the chart
	multi     pushedImage   // multi-arch: spec.images
	// sidecarRef is app-a by digest as charts often spell it, with a tag:
	// the same image as apps[2], which must be bundled once.
	sidecarRef string
}

func (ti testImages) all() []pushedImage {
	return append(append([]pushedImage(nil), ti.apps...), ti.fromChart, ti.multi)
}

// pushImages builds three single-arch Docker images on two shared base
// layers, and an OCI index whose host variant shares them too, listed after
// a foreign-arch variant so that taking the first entry would be wrong.
func pushImages(t *testing.T, ctx context.Context, reg string) testImages {
	t.Helper()
	host := runtime.GOARCH
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[host]
	layer := func(size int64) v1.Layer {
		l, err := random.Layer(size, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	base := []v1.Layer{layer(512 << 10), layer(256 << 10)}
	push := func(repo string, img v1.Image) pushedImage {
		ref := reg + "/perch-test/" + repo
		if err := remote.Write(mustRef(t, ref), img, remote.WithContext(ctx)); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
		return pushedImage{ref: ref, digest: mustDigest(t, img)}
	}
	var ti testImages
	a := push("app-a:1.0", buildImage(t, host, false, append(base, layer(64<<10))...))
	ti.apps = append(ti.apps, a, push("app-b:1.0", buildImage(t, host, false, append(base, layer(96<<10))...)))
	// the same manifest by digest: another reference, no other blob
	ti.apps = append(ti.apps, pushedImage{ref: reg + "/perch-test/app-a@" + a.digest.String(), digest: a.digest})
	ti.sidecarRef = reg + "/perch-test/app-a:1.0@" + a.digest.String()
	ti.fromChart = push("app-c:2.1", buildImage(t, host, true, append(base, layer(128<<10))...))

	hostImg := buildImage(t, host, true, append(base, layer(80<<10))...)
	foreign := buildImage(t, other, true, layer(512<<10), layer(80<<10))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: hostImg, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: host}}},
	)
	ref := reg + "/perch-test/multi:3.0"
	if err := remote.WriteIndex(mustRef(t, ref), idx, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ti.multi = pushedImage{ref: ref, digest: mustDigest(t, hostImg), index: idxDigest, foreign: foreign}
	return ti
}

// buildImage is linux/arch with the given layers, in Docker's media types or
// OCI's. Build checks the config's architecture, so it must be right.
func buildImage(t *testing.T, arch string, oci bool, layers ...v1.Layer) v1.Image {
	t.Helper()
	mt, cfgMT, layerMT := types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	if oci {
		mt, cfgMT, layerMT = types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), cfgMT)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		OS: "linux", Architecture: arch,
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Entrypoint: []string{"/app"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var adds []mutate.Addendum
	for _, l := range layers {
		// the same blob may be a Docker layer in one image and an OCI layer in another
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: layerMT})
	}
	if img, err = mutate.Append(img, adds...); err != nil {
		t.Fatal(err)
	}
	if cf, err := img.ConfigFile(); err != nil || cf.Architecture != arch || cf.OS != "linux" {
		t.Fatalf("built image config: %+v, %v; want linux/%s", cf, err, arch)
	}
	return img
}

// writeSpec writes the BundleSpec and its local sources: a chart that names
// app-b (also in images), app-c (only there) and app-a by tag and digest
// (in images by digest alone), and a file.
func writeSpec(t *testing.T, dir string, ti testImages) string {
	t.Helper()
	write := func(rel, content string, mode os.FileMode) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The integration tier (make integration) sets PERCH_K3S_BIN to the real
	// k3s fixture; run alone, a stand-in that only answers --version will do.
	k3s := os.Getenv("PERCH_K3S_BIN")
	if k3s == "" {
		k3s = write("k3s", "#!/bin/sh\necho 'k3s version v1.31.1+k3s1 (abcdef)'\n", 0o755)
	}
	write("chart/Chart.yaml", "apiVersion: v2\nname: edge-app\nversion: 0.3.0\n", 0o644)
	write("chart/values.yaml", fmt.Sprintf("image: %s\ninit: %s\nsidecar: %s\n", ti.apps[1].ref, ti.fromChart.ref, ti.sidecarRef), 0o644)
	write("chart/templates/deploy.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: edge-app}
spec:
  selector: {matchLabels: {app: edge-app}}
  template:
    metadata: {labels: {app: edge-app}}
    spec:
      initContainers: [{name: init, image: {{ .Values.init | quote }}}]
      containers:
      - {name: app, image: {{ .Values.image | quote }}}
      - {name: sidecar, image: {{ .Values.sidecar | quote }}}
`, 0o644)
	write("model.bin", strings.Repeat("weights ", 4096), 0o644)
	var images strings.Builder
	for _, im := range append(append([]pushedImage(nil), ti.apps...), ti.multi) {
		fmt.Fprintf(&images, "- %s\n", im.ref)
	}
	return write("bundle.yaml", fmt.Sprintf(`apiVersion: %s
kind: BundleSpec
name: registry-it
version: 1.0.0
arch: %s
k3s:
  binary: %s
charts:
- name: edge-app
  source: ./chart
imagesFromCharts: true
images:
%sfiles:
- source: ./model.bin
  dest: models/model.bin
`, bundles.APIVersion, runtime.GOARCH, k3s, images.String()), 0o644)
}

// checkManifest compares the manifest with what was pushed.
func checkManifest(t *testing.T, m *bundles.Manifest, ti testImages) {
	t.Helper()
	all := ti.all()
	if len(m.Images) != len(all) {
		t.Errorf("manifest lists %d images, want %d (spec images and the chart's, once each by full reference):\n%s", len(m.Images), len(all), imageList(m.Images))
	}
	for _, want := range all {
		i := slices.IndexFunc(m.Images, func(im bundles.Image) bool { return im.Reference == want.ref })
		if i < 0 {
			t.Errorf("manifest lacks %s:\n%s", want.ref, imageList(m.Images))
			continue
		}
		got := m.Images[i]
		if got.Digest != want.digest.String() {
			t.Errorf("%s: digest %s, built and pushed as %s", want.ref, got.Digest, want.digest)
		}
		var wantIndex string
		if want.index != (v1.Hash{}) {
			wantIndex = want.index.String()
		}
		if got.IndexDigest != wantIndex {
			t.Errorf("%s: indexDigest %q, want %q", want.ref, got.IndexDigest, wantIndex)
		}
	}
	if len(m.Charts) != 1 {
		t.Fatalf("charts: %+v, want edge-app", m.Charts)
	}
	// chart images are recorded as the manifest names them: a tag beside a
	// digest is dropped, since the digest is what is pulled
	wantChart := []string{ti.apps[1].ref, ti.fromChart.ref, ti.apps[2].ref}
	slices.Sort(wantChart)
	if c := m.Charts[0]; c.Name != "edge-app" || c.Version != "0.3.0" || !slices.Equal(c.Images, wantChart) {
		t.Errorf("chart: %+v, want edge-app 0.3.0 with images %v", c, wantChart)
	}
	if _, ok := m.File("files/models/model.bin"); !ok {
		t.Errorf("files/models/model.bin is not in the manifest")
	}
	if !(m.Layout.Bytes < m.Layout.ImageBytes) || m.Layout.Saved() <= 0 {
		t.Errorf("layout %+v: shared layers are not stored once (bytes should be below imageBytes)", m.Layout)
	}
}

// checkLayout counts the layout's blobs against the unique blobs the
// registry serves for the host platform, and reads index.json.
func checkLayout(t *testing.T, ctx context.Context, dir string, m *bundles.Manifest, ti testImages) {
	t.Helper()
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	want := map[v1.Hash]int64{}
	var imageBytes int64
	for _, p := range ti.all() {
		ref := mustRef(t, p.ref)
		// what the registry says the reference is: the index, or the image
		desc, err := remote.Get(ref, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("registry: %s: %v", p.ref, err)
		}
		served := desc.Digest
		if desc.MediaType.IsIndex() {
			if p.index == (v1.Hash{}) || desc.Digest != p.index {
				t.Errorf("registry serves %s as index %s, pushed %v", p.ref, desc.Digest, p.index)
			}
			im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
			if err != nil {
				t.Fatal(err)
			}
			served = v1.Hash{}
			for _, d := range im.Manifests {
				if d.Platform != nil && d.Platform.Satisfies(platform) {
					served = d.Digest
				}
			}
		}
		if i := slices.IndexFunc(m.Images, func(im bundles.Image) bool { return im.Reference == p.ref }); i < 0 || m.Images[i].Digest != served.String() {
			t.Errorf("%s: the registry serves linux/%s manifest %s; the bundle holds\n%s", p.ref, runtime.GOARCH, served, imageList(m.Images))
		}

		img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(platform))
		if err != nil {
			t.Fatalf("registry: %s: %v", p.ref, err)
		}
		man, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := img.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		want[mustDigest(t, img)] = int64(len(raw))
		want[man.Config.Digest] = man.Config.Size
		imageBytes += int64(len(raw)) + man.Config.Size
		for _, l := range man.Layers {
			want[l.Digest] = l.Size
			imageBytes += l.Size
		}
	}
	var wantBytes int64
	for _, n := range want {
		wantBytes += n
	}

	blobDir := filepath.Join(dir, bundles.ImagesDir, "blobs", "sha256")
	entries, err := os.ReadDir(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	have := map[v1.Hash]bool{}
	for _, e := range entries {
		p := filepath.Join(blobDir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v (only blob files belong here)", p, err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("blob %s holds content with sha256 %x", e.Name(), sum)
		}
		have[v1.Hash{Algorithm: "sha256", Hex: e.Name()}] = true
	}
	if len(entries) != len(want) || m.Layout.Blobs != len(want) {
		t.Errorf("%d files in %s, manifest layout.blobs %d; the registry serves %d unique blobs for these images", len(entries), blobDir, m.Layout.Blobs, len(want))
	}
	for h := range want {
		if !have[h] {
			t.Errorf("layout lacks blob %s", h)
		}
	}
	if m.Layout.Bytes != wantBytes || m.Layout.ImageBytes != imageBytes {
		t.Errorf("layout bytes %d, imageBytes %d; the registry's blobs sum to %d unique, %d per image", m.Layout.Bytes, m.Layout.ImageBytes, wantBytes, imageBytes)
	}

	// the foreign variant must not have come along
	foreign := ti.multi.foreign
	fm, err := foreign.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []v1.Hash{mustDigest(t, foreign), fm.Config.Digest, fm.Layers[0].Digest} {
		if have[h] {
			t.Errorf("layout holds %s of the foreign-arch variant of %s", h, ti.multi.ref)
		}
	}

	raw, err := os.ReadFile(filepath.Join(dir, bundles.ImagesDir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != len(m.Images) {
		t.Errorf("index.json lists %d manifests, the bundle %d images:\n%s", len(idx.Manifests), len(m.Images), raw)
	}
	names := map[string]int{}
	for _, d := range idx.Manifests {
		names[d.Annotations["org.opencontainers.image.ref.name"]]++
	}
	for n, count := range names {
		if count > 1 {
			t.Errorf("index.json names %s %d times; tools find only one of them", n, count)
		}
	}
	for _, im := range m.Images {
		i := slices.IndexFunc(idx.Manifests, func(d v1.Descriptor) bool {
			return d.Annotations["org.opencontainers.image.ref.name"] == im.Reference
		})
		if i < 0 {
			t.Errorf("index.json has no org.opencontainers.image.ref.name %s:\n%s", im.Reference, raw)
			continue
		}
		d := idx.Manifests[i]
		if d.Digest.String() != im.Digest || d.Annotations["io.containerd.image.name"] != im.Reference {
			t.Errorf("index.json entry for %s: %+v, want digest %s and io.containerd.image.name %s", im.Reference, d, im.Digest, im.Reference)
		}
	}
}

// checkSkopeo reads an image back from the layout with skopeo, which finds
// it by org.opencontainers.image.ref.name.
func checkSkopeo(t *testing.T, dir string, im bundles.Image) {
	t.Helper()
	src := "oci:" + filepath.Join(dir, bundles.ImagesDir) + ":" + im.Reference
	out, err := exec.Command("skopeo", "inspect", src).Output()
	if err != nil {
		var why string
		if mt := layoutMediaType(t, dir, im.Reference); !mt.IsImage() || !strings.Contains(string(mt), ".oci.") {
			// containers/image's oci: transport looks a name up only among
			// OCI-typed manifests (Debian's skopeo: "no descriptor found";
			// newer: "matches unsupported manifest MIME types")
			why = fmt.Sprintf("\nindex.json lists it as %s; skopeo finds only OCI-typed manifests by name", mt)
		}
		t.Errorf("skopeo inspect %s: %v\n%s%s", src, err, stderrOf(err), why)
		return
	}
	var got struct {
		Digest       string
		Architecture string
		Os           string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", src, err, out)
	}
	if got.Digest != im.Digest || got.Architecture != runtime.GOARCH || got.Os != "linux" {
		t.Errorf("skopeo inspect %s: digest %s, %s/%s; want %s, linux/%s", src, got.Digest, got.Os, got.Architecture, im.Digest, runtime.GOARCH)
	}
}

// checkMinisign verifies with Debian's minisign: the signature, then a
// modified manifest beside the same signature.
func checkMinisign(t *testing.T, dir, pubKey string) {
	t.Helper()
	manifest := filepath.Join(dir, bundles.ManifestName)
	out, err := exec.Command("minisign", "-Vm", manifest, "-p", pubKey).CombinedOutput()
	if err != nil {
		t.Fatalf("minisign -Vm %s -p %s: %v\n%s", manifest, pubKey, err, out)
	}
	if !strings.Contains(string(out), "perch bundle registry-it 1.0.0 "+runtime.GOARCH) {
		t.Errorf("minisign shows no trusted comment naming the bundle:\n%s", out)
	}

	cp := t.TempDir()
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, bundles.SignatureName))
	if err != nil {
		t.Fatal(err)
	}
	modified := bytes.Replace(raw, []byte(`"version": "1.0.0"`), []byte(`"version": "1.0.1"`), 1)
	if bytes.Equal(modified, raw) {
		t.Fatalf("the manifest has no \"version\": \"1.0.0\" to modify:\n%s", raw)
	}
	copyManifest := filepath.Join(cp, bundles.ManifestName)
	if err := os.WriteFile(copyManifest, modified, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cp, bundles.SignatureName), sig, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("minisign", "-Vm", copyManifest, "-p", pubKey).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("minisign accepted a modified manifest (err %v):\n%s", err, out)
	}
}

// checkTamperedBlob changes one byte of a shared layer in a copy of the
// bundle: verify must fail and name the blob.
func checkTamperedBlob(t *testing.T, perch, dir string, m *bundles.Manifest, pubKey string) {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "bundle")
	// hard links: the k3s binary is large; the tampered file is rewritten, not edited
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(cp, rel), 0o755)
		}
		return os.Link(p, filepath.Join(cp, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
	// the biggest blob: a base layer every single-arch image shares
	var victim bundles.File
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, bundles.ImagesDir+"/blobs/") && f.Size > victim.Size {
			victim = f
		}
	}
	p := filepath.Join(cp, filepath.FromSlash(victim.Path))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runPerch(t, perch, "bundle", "verify", cp, "--pubkey", pubKey)
	if code != 1 || !strings.Contains(stderr, victim.Path) {
		t.Errorf("verify of a bundle with %s tampered: exit %d, want 1 and the blob named\nstdout: %s\nstderr: %s", victim.Path, code, stdout, stderr)
	}
}

// layoutMediaType is the media type index.json gives a reference.
func layoutMediaType(t *testing.T, dir, ref string) types.MediaType {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, bundles.ImagesDir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range idx.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == ref {
			return d.MediaType
		}
	}
	return ""
}

func imageList(images []bundles.Image) string {
	var b strings.Builder
	for _, im := range images {
		fmt.Fprintf(&b, "  %s %s\n", im.Reference, im.Digest)
	}
	return b.String()
}

func inspectJSON(t *testing.T, perch, src, pubKey string) *bundles.Manifest {
	t.Helper()
	out, _ := perchOK(t, perch, "bundle", "inspect", src, "--pubkey", pubKey, "--output", "json")
	var m bundles.Manifest
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("inspect --output json: %v\n%s", err, out)
	}
	return &m
}

// buildPerch builds the real binary from the repository root.
func buildPerch(t *testing.T) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" {
		t.Fatalf("go env GOMOD: %v %s", err, gomod)
	}
	bin := filepath.Join(t.TempDir(), "perch")
	build := exec.Command("go", "build", "-o", bin, "./cmd/perch")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/perch: %v\n%s", err, out)
	}
	return bin
}

func runPerch(t *testing.T, perch string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(perch, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("perch %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

func perchOK(t *testing.T, perch string, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, code := runPerch(t, perch, args...)
	if code != 0 {
		t.Fatalf("perch %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout, stderr
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
