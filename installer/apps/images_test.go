package apps

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/node"
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
