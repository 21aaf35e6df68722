package bundles

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// needsOf is a NeedsFunc that says the given images are needed by the
// chart it is handed, and records what it was handed.
func needsOf(got *[]LocalChart, version *string, images ...string) NeedsFunc {
	return func(_ context.Context, charts []LocalChart, k3s string) ([]Need, error) {
		*got, *version = charts, k3s
		var out []Need
		for _, im := range images {
			out = append(out, Need{Image: im, From: []Origin{{App: "demo-app", Chart: "demo-0.2.0", Object: "Deployment demo/gw", Field: "spec.template.spec.containers[gw].image", Site: "site.yaml, GPU node"}}})
		}
		return out, nil
	}
}

// TestGateRefusesMissingImage: with the sites' configs given, a bundle
// that lacks an image they need is refused before anything is pulled,
// naming the image and where it is needed; --allow-missing lets it.
func TestGateRefusesMissingImage(t *testing.T) {
	f := newFixture(t)
	var charts []LocalChart
	var k3s string
	o := BuildOptions{Out: filepath.Join(t.TempDir(), "site-a"), Key: &f.key, Pwd: f.dir, Gate: true,
		Needs: needsOf(&charts, &k3s, "nvcr.io/nvidia/deepstream:7.1-triton-multiarch")}
	_, err := Build(context.Background(), f.spec, o)
	var me *MissingError
	if !errors.As(err, &me) || !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("err = %v, want the gate's refusal, as bad input", err)
	}
	for _, want := range []string{"nvcr.io/nvidia/deepstream:7.1-triton-multiarch", "demo-app (chart demo-0.2.0), Deployment demo/gw, spec.template.spec.containers[gw].image [site.yaml, GPU node]", "--allow-missing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(o.Out); !os.IsNotExist(err) {
		t.Errorf("refused build left %s", o.Out)
	}
	if len(charts) != 1 || charts[0].Name != "demo" || charts[0].Version != "0.2.0" || k3s != "v1.31.1+k3s1" {
		t.Errorf("discovery was handed %+v, k3s %q", charts, k3s)
	}
	if _, err := os.Stat(charts[0].Path); err == nil {
		t.Errorf("the fetched chart %s outlived the failed build", charts[0].Path)
	}

	o.AllowMissing = []string{"nvcr.io/nvidia/deepstream:7.1-triton-multiarch"}
	res, err := Build(context.Background(), f.spec, o)
	if err != nil {
		t.Fatalf("allowed missing: %v", err)
	}
	if c := res.Manifest.Charts[0]; !slices.Equal(c.Images, []string{"nvcr.io/nvidia/deepstream:7.1-triton-multiarch"}) {
		t.Errorf("chart images %v: want what its renderings need", c.Images)
	}
}

// TestNoGateWarns: without configs a miss is said, and the bundle built.
func TestNoGateWarns(t *testing.T) {
	f := newFixture(t)
	var charts []LocalChart
	var k3s, log string
	o := BuildOptions{Out: filepath.Join(t.TempDir(), "site-a"), Key: &f.key, Pwd: f.dir,
		Needs: needsOf(&charts, &k3s, "quay.io/prometheus/prometheus:v3.1.0"),
		Log:   func(format string, a ...any) { log += fmt.Sprintf(format, a...) + "\n" }}
	if _, err := Build(context.Background(), f.spec, o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, "warning: the bundle would miss 1 image(s)") || !strings.Contains(log, "quay.io/prometheus/prometheus:v3.1.0") {
		t.Errorf("log does not warn of the miss:\n%s", log)
	}
}

// TestImagesFromChartsNeedsDiscovery: imagesFromCharts without discovery
// is refused rather than pulling nothing.
func TestImagesFromChartsNeedsDiscovery(t *testing.T) {
	f := newFixture(t)
	f.spec.ImagesFromCharts = true
	_, err := Build(context.Background(), f.spec, BuildOptions{Out: filepath.Join(t.TempDir(), "x"), Pwd: f.dir})
	if err == nil || !strings.Contains(err.Error(), "imagesFromCharts") {
		t.Fatalf("err = %v", err)
	}
}

func TestSupply(t *testing.T) {
	chart := []Origin{{App: "perch-analytics"}}
	needs := []Need{
		{Image: "docker.io/library/nats:2.10", From: chart}, {Image: "docker.io/rancher/mirrored-pause:3.6", From: []Origin{{App: K3sApp + "v1.31.1+k3s1"}}},
		{Image: "quay.io/prometheus/prometheus:v3.1.0", From: chart}, {Image: "nvcr.io/nvidia/deepstream:7.1", From: chart},
		{Image: "docker.io/rancher/klipper-helm:v0.9.3", From: []Origin{{App: K3sApp + "v1.31.1+k3s1"}}},
	}
	spec := []string{"nats:2.10", "registry.example/extra:1"}
	airgap := []string{"docker.io/rancher/mirrored-pause:3.6"}
	allow := []string{"nvcr.io/nvidia/deepstream:7.1"}
	got, pull := supply(needs, spec, false, airgap, allow)
	by := map[string]string{}
	for _, s := range got {
		by[s.Image] = s.By
	}
	want := map[string]string{"docker.io/library/nats:2.10": FromSpec, "docker.io/rancher/mirrored-pause:3.6": FromK3s,
		"quay.io/prometheus/prometheus:v3.1.0": Missing, "nvcr.io/nvidia/deepstream:7.1": Allowed, "docker.io/rancher/klipper-helm:v0.9.3": Missing}
	for im, w := range want {
		if by[im] != w {
			t.Errorf("%s by %q, want %q", im, by[im], w)
		}
	}
	if !slices.Equal(pull, spec) {
		t.Errorf("pull %v, want the spec's images only", pull)
	}
	got, pull = supply(needs, spec, true, airgap, allow)
	if !slices.Contains(pull, "quay.io/prometheus/prometheus:v3.1.0") || !slices.Contains(pull, "nvcr.io/nvidia/deepstream:7.1") || slices.Contains(pull, "docker.io/rancher/mirrored-pause:3.6") {
		t.Errorf("imagesFromCharts pulls %v: want every need the air-gap tarball lacks", pull)
	}
	// k3s's own images come with k3s, not from charts
	if m := missing(got); len(m) != 1 || m[0].Image != "docker.io/rancher/klipper-helm:v0.9.3" || slices.Contains(pull, m[0].Image) {
		t.Errorf("imagesFromCharts: missing %v, pull %v; want only k3s's helm job image missing, and not pulled", m, pull)
	}
}

// TestAirgapNames: the names inside k3s's air-gap tarball, docker save's
// manifest.json or an OCI index, plain, gzip or zstd.
func TestAirgapNames(t *testing.T) {
	docker := `[{"Config":"c.json","RepoTags":["rancher/mirrored-pause:3.6","docker.io/rancher/klipper-helm:v0.9.3-build20241008"],"Layers":[]}]`
	oci := `{"schemaVersion":2,"manifests":[{"digest":"sha256:00","annotations":{"io.containerd.image.name":"docker.io/rancher/mirrored-coredns-coredns:1.11.3","org.opencontainers.image.ref.name":"1.11.3"}}]}`
	dir := t.TempDir()
	tarOf := func(name, body string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "blobs/x", Mode: 0o644, Size: 3})
		tw.Write([]byte("abc"))
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
		tw.Close()
		return b.Bytes()
	}
	gz := func(b []byte) []byte {
		var o bytes.Buffer
		w := gzip.NewWriter(&o)
		w.Write(b)
		w.Close()
		return o.Bytes()
	}
	zst := func(b []byte) []byte {
		w, _ := zstd.NewWriter(nil)
		return w.EncodeAll(b, nil)
	}
	for _, c := range []struct {
		file string
		data []byte
		want []string
	}{
		{"a.tar", tarOf("manifest.json", docker), []string{"docker.io/rancher/klipper-helm:v0.9.3-build20241008", "docker.io/rancher/mirrored-pause:3.6"}},
		{"b.tar.gz", gz(tarOf("./manifest.json", docker)), []string{"docker.io/rancher/klipper-helm:v0.9.3-build20241008", "docker.io/rancher/mirrored-pause:3.6"}},
		{"c.tar.zst", zst(tarOf("index.json", oci)), []string{"docker.io/rancher/mirrored-coredns-coredns:1.11.3"}},
	} {
		p := filepath.Join(dir, c.file)
		os.WriteFile(p, c.data, 0o644)
		got, ok, err := airgapNames(p)
		if err != nil || !ok || !slices.Equal(got, c.want) {
			t.Errorf("%s: %v %v %v, want %v", c.file, got, ok, err, c.want)
		}
	}
	p := filepath.Join(dir, "d.tar")
	os.WriteFile(p, tarOf("other.json", "{}"), 0o644)
	if _, _, err := airgapNames(p); err == nil {
		t.Error("a tarball without an image index passed")
	}
	p = filepath.Join(dir, "e.tar.lz4")
	os.WriteFile(p, []byte("x"), 0o644)
	if _, ok, err := airgapNames(p); ok || err != nil {
		t.Errorf("lz4: ok %v err %v, want not read", ok, err)
	}
}
