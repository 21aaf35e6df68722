package apps

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	helmv1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
	"github.com/perchedge/perch/manifests/render"
)

func noCharts(context.Context) ([]bundles.ChartFile, func(), bool, error) {
	return nil, func() {}, true, nil
}

// cpuNode is a node without NVML (go-nvml's mock reporting no driver).
func cpuNode() *dgxa100.Server {
	s := dgxa100.New()
	s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	s.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	return s
}

// the images of the pipeline's CPU profile and of k3s as testdata/e2e.yaml
// configures it
var e2eImages = []string{
	"perch.test/pause:1", "perch.test/helm-job:1", "docker.io/rancher/mirrored-coredns-coredns:1.11.3",
	"docker.io/library/nats:2.10.22-alpine", "docker.io/natsio/prometheus-nats-exporter:0.15.0",
	"docker.io/bluenviron/mediamtx:1.9.3", "docker.io/intel/dlstreamer:2024.2.0-ubuntu22",
}

func e2eManifest(drop string) *bundles.Manifest {
	m := &bundles.Manifest{Name: "perch-e2e", Version: "1.0.0", K3s: bundles.K3sInfo{Version: "v1.31.1+k3s-536fa44e"}}
	for _, im := range e2eImages {
		if im != drop {
			m.Images = append(m.Images, bundles.Image{Reference: im})
		}
	}
	return m
}

func e2eConfig(t *testing.T) config.Appliance {
	cfg, err := config.LoadBytes([]byte(`apiVersion: perch.dev/v1alpha1
kind: Appliance
k3s:
  binary: /usr/local/bin/k3s
  disable: [traefik, servicelb, metrics-server, local-storage]
  extraArgs: [--pause-image=perch.test/pause:1, --helm-job-image=perch.test/helm-job:1]
pipeline: {enabled: true}
monitoring: {enabled: false}
`), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestImagesCheck: before anything is written, a config that pulls an
// image the bundle lacks is refused as bad input, naming the image, what
// needs it and the fix; a complete bundle passes; without the appliance
// registry the miss is a warning.
func TestImagesCheck(t *testing.T) {
	cfg := e2eConfig(t)
	plan := func(m *bundles.Manifest) ([]engine.Change, error) {
		n := &node.Node{Cfg: &cfg, GPU: cpuNode(), Bundle: &node.Bundle{Manifest: m}}
		return New(n).Images(noCharts).Plan(context.Background())
	}
	if cs, err := plan(e2eManifest("")); err != nil || len(cs) != 0 {
		t.Fatalf("complete bundle: %v %v", cs, err)
	}
	_, err := plan(e2eManifest("docker.io/intel/dlstreamer:2024.2.0-ubuntu22"))
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("err = %v, want a refusal as bad input", err)
	}
	for _, want := range []string{"bundle.source", "perch-e2e 1.0.0 lacks 1 image", "docker.io/intel/dlstreamer:2024.2.0-ubuntu22, needed by perch-analytics", "worker", "perch bundle images"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q:\n%v", want, err)
		}
	}
	_, err = plan(e2eManifest("perch.test/pause:1"))
	if err == nil || !strings.Contains(err.Error(), "perch.test/pause:1, needed by k3s") {
		t.Errorf("k3s's pause missing: %v", err)
	}
	cfg.Bundle.AllowMissing = []string{"intel/dlstreamer:2024.2.0-ubuntu22"}
	cs, err := plan(e2eManifest("docker.io/intel/dlstreamer:2024.2.0-ubuntu22"))
	if err != nil || len(cs) != 1 || cs[0].Action != engine.Warn || !strings.Contains(cs[0].Detail, "bundle.allowMissing allows") {
		t.Errorf("allowed missing: %+v %v, want one warning", cs, err)
	}
	cfg.Bundle.AllowMissing = nil
	cfg.Registry.Enabled = false
	cs, err = plan(e2eManifest("docker.io/intel/dlstreamer:2024.2.0-ubuntu22"))
	if err != nil || len(cs) != 1 || cs[0].Action != engine.Warn || !strings.Contains(cs[0].Detail, "registry.enabled is false") {
		t.Errorf("without the registry: %+v %v, want one warning", cs, err)
	}
}

// TestMissingImagesUnreadTarball: a k3s air-gap tarball the build could
// not read counts as holding k3s's own images, and nothing else.
func TestMissingImagesUnreadTarball(t *testing.T) {
	m := &bundles.Manifest{K3s: bundles.K3sInfo{AirgapImages: "k3s/k3s-airgap-images-amd64.tar.lz4"}}
	needs := []bundles.Need{
		{Image: "docker.io/rancher/mirrored-pause:3.6", From: []bundles.Origin{{App: bundles.K3sApp + "v1.31.1+k3s1"}}},
		{Image: "docker.io/library/nats:2.10.22-alpine", From: []bundles.Origin{{App: "perch-analytics"}}},
	}
	got := MissingImages(m, needs)
	if len(got) != 1 || got[0].Image != "docker.io/library/nats:2.10.22-alpine" {
		t.Errorf("missing %+v, want only nats", got)
	}
}

// gpuNode is go-nvml's mock DGX A100: eight GPUs.
func gpuNode() *dgxa100.Server {
	s := dgxa100.New()
	s.InitFunc = func() nvml.Return { return nvml.SUCCESS }
	s.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	return s
}

// TestRedeployKeepsStreamsWhereTheyAre: the next render reads where the
// deployed HelmChart put each stream, so a camera added moves no other,
// whatever the ranking alone would have chosen.
func TestRedeployKeepsStreamsWhereTheyAre(t *testing.T) {
	h, err := host.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.GPU.Mode = config.GPUAuto
	for i := 1; i <= 12; i++ {
		cfg.Pipeline.Streams = append(cfg.Pipeline.Streams, config.Stream{Name: fmt.Sprintf("cam-%02d", i), URL: fmt.Sprintf("rtsp://192.0.2.%d/live", i)})
	}
	s := &appsStep{a: New(&node.Node{Cfg: &cfg, Host: h, GPU: gpuNode()})}
	slots := func() map[string]string {
		apps, _, err := s.desired(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range apps {
			if a.Name != render.Analytics {
				continue
			}
			if err := h.MkdirAll(path.Dir(s.dataPath(a.File)), 0o755); err != nil {
				t.Fatal(err)
			}
			if _, err := h.WriteFile(s.dataPath(a.File), a.YAML, 0o600); err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, st := range a.Values["streams"].([]any) {
				m := st.(map[string]any)
				out[m["name"].(string)] = m["slot"].(string)
			}
			return out
		}
		t.Fatal("no pipeline app rendered")
		return nil
	}
	first := slots()
	if len(first) != 12 {
		t.Fatalf("assigned %v", first)
	}
	// where an earlier config left them differs from the ranking's choice:
	// swap two streams' slots in the deployed manifest
	a, b := "cam-02", "cam-03"
	for i := 4; first[a] == first[b]; i++ {
		b = fmt.Sprintf("cam-%02d", i) // one on another slot
	}
	file := s.dataPath(path.Join(render.ManifestsDir, render.Analytics+".yaml"))
	raw, err := h.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var hc helmv1.HelmChart
	if err := yaml.Unmarshal(raw, &hc); err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(hc.Spec.ValuesContent), &vals); err != nil {
		t.Fatal(err)
	}
	for _, st := range vals["streams"].([]any) {
		m := st.(map[string]any)
		switch m["name"] {
		case a:
			m["slot"] = first[b]
		case b:
			m["slot"] = first[a]
		}
	}
	vc, err := yaml.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	hc.Spec.ValuesContent = string(vc)
	out, err := render.Encode(&hc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for k, v := range first {
		before[k] = v
	}
	before[a], before[b] = first[b], first[a]
	cfg.Pipeline.Streams = append(cfg.Pipeline.Streams[1:], config.Stream{Name: "cam-new", URL: "rtsp://192.0.2.99/live"})
	after := slots()
	for name, slot := range before {
		if name != "cam-01" && after[name] != slot {
			t.Errorf("%s moved from %s to %s when cam-01 left and cam-new came", name, slot, after[name])
		}
	}
	if after["cam-new"] == "" {
		t.Error("cam-new has no slot")
	}
}
