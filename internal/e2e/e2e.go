// Package e2e builds the bundle the end-to-end tier and `make demo`
// install: every image a whole appliance runs, built here from source (no
// registry on the internet is reachable), pushed into a local upstream
// registry, and bundled and signed by `perch bundle build` itself, pulling
// through that registry as a connected site's mirror.
package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"helm.sh/helm/v3/pkg/chart"

	"github.com/perchedge/perch/internal/testimages"
	"github.com/perchedge/perch/manifests"
	"github.com/perchedge/perch/manifests/render"
)

// The k3s images testdata/e2e.yaml names by flag (--pause-image,
// --helm-job-image): ours are not upstream's, so they do not take
// upstream's names.
const (
	PauseRef   = "perch.test/pause:1"
	HelmJobRef = "perch.test/helm-job:1"
)

// Image is one image of the bundle and what it is.
type Image struct {
	Ref string
	// StandsInFor names the upstream image a stand-in replaces; "" when
	// the image runs the upstream program itself.
	StandsInFor string
	build       func(dir string) (v1.Image, error)
}

// Images are the appliance's images: k3s's own (pause, helm job, CoreDNS),
// the CPU profile of perch-analytics and perch-monitoring without Grafana
// (its Go module is AGPL and never linked), under the references their
// charts render.
func Images() ([]Image, error) {
	ch, err := render.LoadChartFS(manifests.AnalyticsChart())
	if err != nil {
		return nil, err
	}
	ref := func(path ...string) string { return chartImage(ch, path...) }
	mon, err := render.LoadChartFS(manifests.MonitoringChart())
	if err != nil {
		return nil, err
	}
	monRef := func(path ...string) string { return chartImage(mon, path...) }
	return []Image{
		{PauseRef, "rancher/mirrored-pause", testimages.Pause},
		{HelmJobRef, "rancher/klipper-helm", testimages.HelmJob},
		// k3s's coredns manifest; CoreDNS v1.15.0 under the tag k3s asks for
		{"docker.io/rancher/mirrored-coredns-coredns:1.11.3", "", testimages.CoreDNS},
		{ref("nats", "image"), "", testimages.NATS},
		{ref("nats", "exporter", "image"), "natsio/prometheus-nats-exporter", testimages.NATSExporterStandIn},
		{ref("gateway", "image"), "bluenviron/mediamtx", testimages.MediaMTXStandIn},
		{ref("inference", "cpuProfile", "image"), "intel/dlstreamer (gst-launch-1.0)", testimages.WorkerStandIn},
		// perch-monitoring: the upstream programs from their Go modules
		{monRef("prometheus", "image"), "", testimages.Prometheus},
		{monRef("alertmanager", "image"), "", testimages.Alertmanager},
		{monRef("nodeExporter", "image"), "", testimages.NodeExporter},
		{monRef("kubeStateMetrics", "image"), "", testimages.KubeStateMetrics},
	}, nil
}

// chartImage is the reference an image block of the chart's values
// renders to without a registry override.
func chartImage(ch *chart.Chart, path ...string) string {
	v := ch.Values
	for _, p := range path {
		v, _ = v[p].(map[string]any)
	}
	return fmt.Sprintf("%v/%v:%v", v["registry"], v["repository"], v["tag"])
}

// Options are what Build needs.
type Options struct {
	Perch string // the perch binary
	K3s   string // the k3s binary the bundle carries
	Out   string // bundle directory to write (must not exist)
	Key   string // signing key path without .key/.pub; made if missing
	// Config is the appliance the bundle is for (testdata/e2e.yaml): the
	// build refuses a bundle that misses one of its images.
	Config string
	Log    io.Writer
	// Work is where the images are built, kept for the caller (the e2e
	// runs the Prometheus built there); empty: a temporary dir, removed.
	Work string
}

// NotBuilt are images the appliance's config may need that no module
// builds here, so the bundle is allowed to lack them: DeepStream is the
// worker of a GPU node, and this machine's tiers run CPU-only nodes.
var NotBuilt = []string{"nvcr.io/nvidia/deepstream:7.1-triton-multiarch"}

// Build builds the images, serves them from a local registry and runs
// `perch bundle build` with that registry as mirror of docker.io and
// perch.test. It returns the images as bundled.
func Build(ctx context.Context, o Options) ([]Image, error) {
	images, err := Images()
	if err != nil {
		return nil, err
	}
	work := o.Work
	if work == "" {
		if work, err = os.MkdirTemp("", "perch-e2e-build"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
	}

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	up := strings.TrimPrefix(reg.URL, "http://")
	var refs []string
	for _, im := range images {
		start := time.Now()
		img, err := im.build(work)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Ref, err)
		}
		if err := crane.Push(img, up+"/"+im.Ref, crane.WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("push %s: %w", im.Ref, err)
		}
		what := "built from source"
		if im.StandsInFor != "" {
			what = "stand-in for " + im.StandsInFor
		}
		fmt.Fprintf(o.Log, "e2e: image %s (%s) in %s\n", im.Ref, what, time.Since(start).Round(time.Millisecond))
		refs = append(refs, im.Ref)
	}

	if _, err := os.Stat(o.Key + ".key"); err != nil {
		if err := run(ctx, o.Log, o.Perch, "bundle", "keygen", "--out", o.Key); err != nil {
			return nil, err
		}
	}
	spec := filepath.Join(work, "spec.yaml")
	err = os.WriteFile(spec, []byte(fmt.Sprintf(`apiVersion: perch.dev/v1alpha1
kind: BundleSpec
name: perch-e2e
version: 1.0.0
arch: %s
k3s:
  binary: %s
images: [%s]
`, runtime.GOARCH, o.K3s, strings.Join(refs, ", "))), 0o644)
	if err != nil {
		return nil, err
	}
	if o.Config == "" {
		return nil, fmt.Errorf("e2e bundle: no appliance config to check the bundle against")
	}
	gate := []string{"--config", o.Config}
	for _, im := range NotBuilt {
		gate = append(gate, "--allow-missing", im)
	}
	// what the bundle carries for the appliance and why, in the log; it
	// exits 1 if an image is missing
	if err := run(ctx, o.Log, o.Perch, append([]string{"bundle", "images", "--spec", spec}, gate...)...); err != nil {
		return nil, err
	}
	args := append([]string{"bundle", "build", "--spec", spec, "--out", o.Out, "--key", o.Key + ".key",
		"--mirror", "docker.io=" + up + "/docker.io", "--mirror", "perch.test=" + up + "/perch.test",
		"--mirror", "quay.io=" + up + "/quay.io", "--mirror", "registry.k8s.io=" + up + "/registry.k8s.io"}, gate...)
	return images, run(ctx, o.Log, o.Perch, args...)
}

func run(ctx context.Context, w io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args[:2], " "), err)
	}
	return nil
}
