// Package images says which images an appliance pulls, and why. Each app
// is rendered as install renders it: the values Perch gives it, in the
// namespace it is installed to, with the API versions the cluster will
// serve (a chart that checks for the Prometheus Operator's CRDs renders
// its monitors), for every kind of site a config makes (a GPU node runs
// other workers than a CPU-only one). Every image reference in what that
// renders is collected: a field named image anywhere (containers at any
// depth, hooks, subcharts, and custom resources such as an operator's
// Prometheus, whose image no container spec shows) and whole references
// in args, command and env values. k3s's own images follow from its
// version and the components the config leaves on (k3s.go).
//
// Bundle build pulls this list and refuses a bundle that lacks one of its
// images; install checks a bundle against it before it writes anything.
package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/manifests"
	"github.com/perchedge/perch/manifests/render"
)

// Site is one kind of node an appliance config makes, rendered on its own.
type Site struct {
	// Name says which config and which kind of node, in provenance.
	Name      string
	Appliance *manifests.Appliance
	// GPU is the node's inventory; nil renders the CPU-only profile.
	GPU *gpu.Inventory
}

// anyGPU stands for a GPU node whose GPUs are not known yet: the images
// do not depend on which GPU it is, only that pods get one.
func anyGPU() *gpu.Inventory {
	return &gpu.Inventory{GPUs: []gpu.Device{{Index: 0, Name: "any NVIDIA GPU", UUID: "GPU-any"}}}
}

// placeholderStream makes the pipeline's workers render when a config has
// no camera yet: a camera added on site needs its worker's image.
var placeholderStream = manifests.Stream{Name: "camera-added-on-site", URL: "rtsp://camera.invalid/stream"}

// ConfigSites are the kinds of node one config makes: a GPU node and a
// CPU-only one unless gpu.mode decides (off: CPU only; required: GPU
// only), each with a camera when the config lists none.
func ConfigSites(label string, a *manifests.Appliance, gpuRequired bool) []Site {
	var out []Site
	if !a.GPU.Off {
		out = append(out, NodeSite(label+", GPU node", a, anyGPU()))
	}
	if !gpuRequired {
		out = append(out, NodeSite(label+", CPU-only node", a, nil))
	}
	return out
}

// NodeSite is the one kind of node an install knows it is: its config and
// its GPUs, with a camera when the config has none yet.
func NodeSite(label string, a *manifests.Appliance, inv *gpu.Inventory) Site {
	c := *a
	if c.Pipeline.Enabled && len(c.Pipeline.Streams) == 0 {
		c.Pipeline.Streams = []manifests.Stream{placeholderStream}
	}
	return Site{Name: label, Appliance: &c, GPU: inv}
}

// Everything are the sites that turn every optional component on: what a
// bundle needs when no config says what its sites run.
func Everything() []Site {
	a := &manifests.Appliance{
		GPU:        manifests.GPU{Replicas: 1},
		Pipeline:   manifests.Pipeline{Enabled: true},
		Monitoring: manifests.Monitoring{Enabled: true, Grafana: true, Alertmanager: true},
	}
	return ConfigSites("every component", a, false)
}

// Input is what Needs renders.
type Input struct {
	// Charts are the upstream charts, as the bundle will carry them.
	Charts []render.Chart
	// K3sVersion is the bundle's k3s, for its own images and the
	// Kubernetes version charts are rendered for.
	K3sVersion string
	Sites      []Site
}

// Needs renders every site and returns each image with every place that
// names it, sorted by image. A chart of the bundle that no app installs is
// rendered with its own defaults in a namespace of its name, since someone
// installs it by hand.
func Needs(in Input) ([]bundles.Need, error) {
	kube, err := kubeVersion(in.K3sVersion)
	if err != nil {
		return nil, err
	}
	c := &collector{byImage: map[string][]bundles.Origin{}}
	for _, s := range in.Sites {
		apps, err := render.Apps(s.Appliance, render.Inputs{GPU: s.GPU.Capacity(), Charts: in.Charts})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		monitoring := slices.ContainsFunc(apps, func(a render.App) bool { return a.Name == render.Monitoring })
		for _, a := range apps {
			ch, err := loader.LoadArchive(bytes.NewReader(a.Chart.Data))
			if err != nil {
				return nil, fmt.Errorf("%s: app %s: %w", s.Name, a.Name, err)
			}
			o := bundles.Origin{App: a.Name, Chart: ch.Name() + "-" + ch.Metadata.Version, Site: s.Name}
			if err := c.chart(ch, a.Values, a.Name, a.Namespace, caps(kube, monitoring), o); err != nil {
				return nil, fmt.Errorf("%s: app %s: %w", s.Name, a.Name, err)
			}
		}
		for _, n := range k3sNeeds(in.K3sVersion, s.Appliance.K3s) {
			n.origin.Site = s.Name
			c.add(n.image, n.origin)
		}
	}
	for _, rc := range in.Charts {
		if slices.Contains(appCharts, rc.Name) {
			continue // an app of Perch's that no site turns on
		}
		ch, err := loadChart(rc.Path)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", rc.Name, err)
		}
		o := bundles.Origin{App: "(not installed by perch)", Chart: ch.Name() + "-" + ch.Metadata.Version, Site: "its default values"}
		if err := c.chart(ch, map[string]any{}, ch.Name(), ch.Name(), caps(kube, false), o); err != nil {
			return nil, fmt.Errorf("chart %s: %w", rc.Name, err)
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	return c.needs(), nil
}

// appCharts are the upstream charts Perch installs as apps; any other
// chart in a bundle is someone else's.
var appCharts = []string{render.DevicePlugin, render.DCGMExporter, render.Monitoring}

// Func adapts Needs to bundle build: charts as fetched, k3s as read from
// its binary, the sites fixed beforehand.
func Func(sites []Site) bundles.NeedsFunc {
	return func(_ context.Context, charts []bundles.LocalChart, k3sVersion string) ([]bundles.Need, error) {
		in := Input{K3sVersion: k3sVersion, Sites: sites}
		for _, c := range charts {
			in.Charts = append(in.Charts, render.Chart{Name: c.Name, Version: c.Version, Path: c.Path})
		}
		return Needs(in)
	}
}

func loadChart(path string) (*chart.Chart, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return loader.LoadArchive(f)
}

var k3sKube = regexp.MustCompile(`^v?([0-9]+)\.([0-9]+)\.([0-9]+)`)

// kubeVersion is the Kubernetes version a k3s version runs: its charts'
// kubeVersion constraints and .Capabilities see it.
func kubeVersion(k3s string) (chartutil.KubeVersion, error) {
	if k3s == "" {
		return chartutil.DefaultCapabilities.KubeVersion, nil
	}
	m := k3sKube.FindStringSubmatch(k3s)
	if m == nil {
		return chartutil.KubeVersion{}, fmt.Errorf("k3s version %q is not vMAJOR.MINOR.PATCH+k3sN", k3s)
	}
	if _, err := strconv.Atoi(m[2]); err != nil {
		return chartutil.KubeVersion{}, err
	}
	return chartutil.KubeVersion{Version: "v" + m[1] + "." + m[2] + "." + m[3], Major: m[1], Minor: m[2]}, nil
}

// monitoringAPIs are what the Prometheus Operator's CRDs add, which
// kube-prometheus-stack installs: charts render their monitors only where
// the cluster serves these, as helm-controller's install Job finds it.
var monitoringAPIs = []string{
	"monitoring.coreos.com/v1",
	"monitoring.coreos.com/v1/ServiceMonitor",
	"monitoring.coreos.com/v1/PodMonitor",
	"monitoring.coreos.com/v1/PrometheusRule",
	"monitoring.coreos.com/v1/Prometheus",
	"monitoring.coreos.com/v1/Alertmanager",
}

func caps(kube chartutil.KubeVersion, monitoring bool) *chartutil.Capabilities {
	c := *chartutil.DefaultCapabilities
	c.KubeVersion = kube
	c.APIVersions = slices.Clone(chartutil.DefaultVersionSet)
	if monitoring {
		c.APIVersions = append(c.APIVersions, monitoringAPIs...)
	}
	return &c
}

type collector struct {
	byImage map[string][]bundles.Origin
	err     error
}

// chart renders ch as helm install would and collects what it names.
func (c *collector) chart(ch *chart.Chart, vals map[string]any, release, namespace string, capa *chartutil.Capabilities, o bundles.Origin) error {
	vals = copyValues(vals)
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return fmt.Errorf("dependencies: %w", err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: release, Namespace: namespace, Revision: 1, IsInstall: true,
	}, capa)
	if err != nil {
		return fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return fmt.Errorf("render in namespace %s: %w", namespace, err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") && !strings.HasSuffix(n, ".yml") {
			continue
		}
		dec := yaml.NewDecoder(strings.NewReader(files[n]))
		for {
			var doc any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("render: %s: %w", n, err)
			}
			for _, f := range Collect(doc, namespace) {
				oo := o
				oo.Object, oo.Field = f.Object, f.Field
				c.add(f.Image, oo)
			}
		}
	}
	return nil
}

func (c *collector) add(image string, o bundles.Origin) {
	ref, err := name.ParseReference(image)
	if err != nil {
		if c.err == nil {
			c.err = fmt.Errorf("%s names image %q, which is not an image reference: %v", o, image, err)
		}
		return
	}
	full := bundles.FullReference(ref)
	for i, have := range c.byImage[full] {
		if have.App == o.App && have.Chart == o.Chart && have.Object == o.Object && have.Field == o.Field {
			if !strings.Contains(have.Site, o.Site) {
				c.byImage[full][i].Site = have.Site + "; " + o.Site
			}
			return
		}
	}
	c.byImage[full] = append(c.byImage[full], o)
}

func (c *collector) needs() []bundles.Need {
	out := make([]bundles.Need, 0, len(c.byImage))
	for im, from := range c.byImage {
		out = append(out, bundles.Need{Image: im, From: from})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Image < out[j].Image })
	return out
}

// copyValues keeps helm's dependency processing, which writes into the
// map it is given, off the caller's values.
func copyValues(v map[string]any) map[string]any {
	out := make(map[string]any, len(v))
	for k, x := range v {
		if m, ok := x.(map[string]any); ok {
			x = copyValues(m)
		}
		out[k] = x
	}
	return out
}
