package images

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/manifests"
	"github.com/perchedge/perch/manifests/render"
)

// testK3s is the version Perch knows k3s's own images for.
const testK3s = "v1.31.1+k3s-536fa44e"

// testCharts packs testdata/charts, which reproduce the patterns of the
// upstream charts a GPU site's bundle carries, as a bundle holds them.
func testCharts(t *testing.T) []render.Chart {
	t.Helper()
	dir := t.TempDir()
	var out []render.Chart
	for _, n := range []string{"nvidia-device-plugin", "dcgm-exporter", "site-tools"} {
		ch, err := loader.LoadDir(filepath.Join("testdata/charts", n))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, n+".tgz")
		if err := bundles.SaveChart(ch, p); err != nil {
			t.Fatal(err)
		}
		out = append(out, render.Chart{Name: n, Version: ch.Metadata.Version, Path: p})
	}
	return out
}

func gpuSite() *manifests.Appliance {
	return &manifests.Appliance{
		GPU:        manifests.GPU{Replicas: 4},
		Pipeline:   manifests.Pipeline{Enabled: true},
		Monitoring: manifests.Monitoring{Enabled: true, Grafana: true, RetentionSize: "8GB"},
	}
}

func needsOf(t *testing.T, sites []Site) map[string]bundles.Need {
	t.Helper()
	needs, err := Needs(Input{Charts: testCharts(t), K3sVersion: testK3s, Sites: sites})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bundles.Need{}
	for _, n := range needs {
		out[n.Image] = n
	}
	return out
}

func origin(t *testing.T, n bundles.Need, app, object, field string) bundles.Origin {
	t.Helper()
	for _, o := range n.From {
		if o.App == app && o.Object == object && o.Field == field {
			return o
		}
	}
	t.Errorf("%s: no origin %s %s %s in %+v", n.Image, app, object, field, n.From)
	return bundles.Origin{}
}

// TestNeedsGPUSite: a GPU site with time-slicing, monitoring and Grafana
// on, as the integrator built it. Every image the charts name
// with the values install gives them is found, with where: the CRs'
// spec.image, the reloader in an operator argument, the hook Job, the
// subcharts the values turn on, workers for GPU and CPU-only nodes
// though the config has no camera yet, and k3s's own. What the values
// leave off (Alertmanager, GPU Feature Discovery) is not.
func TestNeedsGPUSite(t *testing.T) {
	got := needsOf(t, ConfigSites("site.yaml", gpuSite(), false))
	want := []string{
		"nvcr.io/nvidia/k8s-device-plugin:v0.17.0",
		"nvcr.io/nvidia/k8s/dcgm-exporter:4.1.1-4.0.4-ubuntu22.04",
		"quay.io/prometheus/prometheus:v3.16.0",
		"quay.io/prometheus/node-exporter:v1.10.2",
		"docker.io/grafana/grafana:12.2.1",
		"registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.16.0",
		"docker.io/bluenviron/mediamtx:1.9.3",
		"nvcr.io/nvidia/deepstream:7.1-triton-multiarch",
		"docker.io/intel/dlstreamer:2024.2.0-ubuntu22",
		"docker.io/library/nats:2.10.22-alpine",
		"docker.io/natsio/prometheus-nats-exporter:0.15.0",
		"docker.io/rancher/mirrored-pause:3.6",
		"docker.io/rancher/klipper-helm:v0.9.3-build20241008",
		"docker.io/rancher/mirrored-coredns-coredns:1.11.3",
		"docker.io/rancher/klipper-lb:v0.4.9",
		"docker.io/rancher/local-path-provisioner:v0.0.30",
		"docker.io/rancher/mirrored-library-busybox:1.36.1",
		"docker.io/rancher/mirrored-library-traefik:2.11.10",
		"docker.io/rancher/mirrored-metrics-server:v0.7.2",
		"registry.example/site/tools:2.0",
	}
	for _, w := range want {
		if _, ok := got[w]; !ok {
			t.Errorf("missing %s", w)
		}
	}
	for im := range got {
		if !slices.Contains(want, im) {
			t.Errorf("unexpected %s: %+v", im, got[im].From)
		}
	}
	for _, not := range []string{"quay.io/prometheus/alertmanager:v0.35.0", "registry.k8s.io/nfd/node-feature-discovery:v0.16.4"} {
		if _, ok := got[not]; ok {
			t.Errorf("%s is needed, but the values install gives leave it off", not)
		}
	}
	if len(got) != len(want) {
		return
	}
	origin(t, got["quay.io/prometheus/prometheus:v3.16.0"], render.Monitoring,
		"StatefulSet monitoring/perch-monitoring-prometheus", "spec.template.spec.containers[prometheus].image")
	dp := origin(t, got["nvcr.io/nvidia/k8s-device-plugin:v0.17.0"], render.DevicePlugin,
		"DaemonSet nvidia-device-plugin/nvidia-device-plugin", "spec.template.spec.containers[nvidia-device-plugin-ctr].image")
	if dp.Chart != "nvidia-device-plugin-0.17.0-test" || dp.Site != "site.yaml, GPU node" {
		t.Errorf("device plugin origin %+v: want its chart and only the GPU node", dp)
	}
	for im, site := range map[string]string{
		"nvcr.io/nvidia/deepstream:7.1-triton-multiarch": "site.yaml, GPU node",
		"docker.io/intel/dlstreamer:2024.2.0-ubuntu22":   "site.yaml, CPU-only node",
	} {
		n := got[im]
		if len(n.From) != 1 || n.From[0].App != render.Analytics || n.From[0].Site != site {
			t.Errorf("%s: from %+v, want the pipeline's worker on %s only", im, n.From, site)
		}
	}
	if o := got["docker.io/rancher/mirrored-pause:3.6"].From[0]; o.App != "k3s "+testK3s || o.Site != "site.yaml, GPU node; site.yaml, CPU-only node" {
		t.Errorf("pause origin %+v: want k3s, on both kinds of node", o)
	}
	if o := got["registry.example/site/tools:2.0"].From[0]; o.App != "(not installed by perch)" || o.Object != "CronJob site-tools/site-tools" {
		t.Errorf("site-tools origin %+v: want its defaults, in a namespace of its name", o)
	}
}

// TestNeedsFollowTheConfig: what a config turns off is not needed, and
// what it names instead is: gpu.mode off drops the GPU apps and workers,
// alertmanager on adds its image, k3s.disable drops components and
// --pause-image replaces k3s's pause.
func TestNeedsFollowTheConfig(t *testing.T) {
	a := gpuSite()
	a.GPU.Off = true
	a.Monitoring.Grafana, a.Monitoring.Alertmanager = false, true
	a.K3s = manifests.K3s{Disable: []string{"traefik", "servicelb", "metrics-server", "local-storage"}, PauseImage: "perch.test/pause:1"}
	got := needsOf(t, ConfigSites("cpu.yaml", a, false))
	for _, im := range []string{"quay.io/prometheus/alertmanager:v0.35.0", "perch.test/pause:1", "docker.io/intel/dlstreamer:2024.2.0-ubuntu22", "docker.io/rancher/mirrored-coredns-coredns:1.11.3"} {
		if _, ok := got[full(t, im)]; !ok {
			t.Errorf("missing %s", im)
		}
	}
	for _, im := range []string{
		"nvcr.io/nvidia/k8s-device-plugin:v0.17.0", "nvcr.io/nvidia/deepstream:7.1-triton-multiarch", "docker.io/grafana/grafana:12.2.1",
		"docker.io/rancher/mirrored-pause:3.6", "docker.io/rancher/mirrored-library-traefik:2.11.10", "docker.io/rancher/klipper-lb:v0.4.9",
		"docker.io/rancher/local-path-provisioner:v0.0.30", "docker.io/rancher/mirrored-metrics-server:v0.7.2",
	} {
		if n, ok := got[im]; ok {
			t.Errorf("%s is needed (%+v), but the config turns it off", im, n.From)
		}
	}
	if o := got["perch.test/pause:1"].From[0]; o.Field != "k3s.extraArgs --pause-image" {
		t.Errorf("pause origin %+v: want the flag that names it", o)
	}
	// gpu.mode required: no CPU-only node, so no CPU worker
	req := needsOf(t, ConfigSites("gpu.yaml", gpuSite(), true))
	if _, ok := req["docker.io/intel/dlstreamer:2024.2.0-ubuntu22"]; ok {
		t.Error("gpu.mode required needs the CPU worker")
	}
	if _, ok := req["nvcr.io/nvidia/deepstream:7.1-triton-multiarch"]; !ok {
		t.Error("gpu.mode required does not need the GPU worker")
	}
}

// TestNeedsEverything: without a config, every component a config can
// turn on is needed.
func TestNeedsEverything(t *testing.T) {
	got := needsOf(t, Everything())
	for _, im := range []string{"quay.io/prometheus/alertmanager:v0.35.0", "docker.io/grafana/grafana:12.2.1",
		"nvcr.io/nvidia/deepstream:7.1-triton-multiarch", "docker.io/intel/dlstreamer:2024.2.0-ubuntu22", "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"} {
		if _, ok := got[im]; !ok {
			t.Errorf("missing %s", im)
		}
	}
}

// TestNamespaceGuard: the device plugin's chart refuses the default
// namespace, where a bundle build used to render every chart; rendered in
// the namespace install uses, it renders.
func TestNamespaceGuard(t *testing.T) {
	ch, err := loader.LoadDir("testdata/charts/nvidia-device-plugin")
	if err != nil {
		t.Fatal(err)
	}
	kube, _ := kubeVersion(testK3s)
	c := &collector{byImage: map[string][]bundles.Origin{}}
	if err := c.chart(ch, map[string]any{}, "nvidia-device-plugin", "default", caps(kube, false), bundles.Origin{}); err == nil || !strings.Contains(err.Error(), "default") {
		t.Fatalf("rendered in default: %v, want the chart's refusal", err)
	}
	if err := c.chart(ch, map[string]any{}, "nvidia-device-plugin", "nvidia-device-plugin", caps(kube, false), bundles.Origin{}); err != nil {
		t.Fatal(err)
	}
}

// TestUnknownK3sNeedsNothingListed: Perch lists k3s's own images only for
// the k3s it knows; another's come from its air-gap tarball.
func TestUnknownK3sNeedsNothingListed(t *testing.T) {
	if KnowsK3s("v1.99.0+k3s1") || len(k3sNeeds("v1.99.0+k3s1", manifests.K3s{})) != 0 {
		t.Error("an unknown k3s has a list")
	}
	if !KnowsK3s(testK3s) {
		t.Error("the pinned k3s has no list")
	}
}

func TestKubeVersion(t *testing.T) {
	kv, err := kubeVersion("v1.31.1+k3s1")
	if err != nil || kv.Version != "v1.31.1" || kv.Minor != "31" {
		t.Errorf("kubeVersion = %+v, %v", kv, err)
	}
	if _, err := kubeVersion("latest"); err == nil {
		t.Error("kubeVersion took latest")
	}
}

func full(t *testing.T, s string) string {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return bundles.FullReference(ref)
}
