package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perchedge/perch/bundles"
)

const (
	testChartsSpec = "../../manifests/images/testdata/spec.yaml"
	testChartsSite = "../../manifests/images/testdata/site.yaml"
)

// TestBundleImagesCommand: `perch bundle images` on the test charts lists
// each image with how the bundle carries it and where it is named, and
// exits 1 while one is missing (k3s's own: the spec has no air-gap
// tarball); bundle build with the same --config refuses that bundle as
// bad input, and --allow-missing lets one through.
func TestBundleImagesCommand(t *testing.T) {
	out, errOut, code := perch(t, "", "bundle", "images", "--spec", testChartsSpec, "--config", testChartsSite, "-o", "json")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (k3s's images missing):\n%s%s", code, out, errOut)
	}
	var got struct{ Images []bundles.Supply }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	by := map[string]bundles.Supply{}
	for _, s := range got.Images {
		by[s.Image] = s
	}
	prom := by["quay.io/prometheus/prometheus:v3.16.0"]
	if prom.By != bundles.FromCharts || len(prom.From) == 0 || prom.From[0].Object != "StatefulSet monitoring/perch-monitoring-prometheus" {
		t.Errorf("prometheus: %+v, want pulled from charts, named by perch-monitoring's StatefulSet", prom)
	}
	if p := by["docker.io/rancher/mirrored-pause:3.6"]; p.By != bundles.Missing {
		t.Errorf("pause: %+v, want MISSING", p)
	}
	text, _, _ := perch(t, "", "bundle", "images", "--spec", testChartsSpec, "--config", testChartsSite)
	if !strings.Contains(text, "IMAGE") || !strings.Contains(text, "8 image(s) MISSING") || !strings.Contains(text, "k3s.airgapImages") {
		t.Errorf("text output:\n%s", text)
	}

	dir := t.TempDir()
	_, errOut, code = perch(t, "", "bundle", "build", "--spec", testChartsSpec, "--config", testChartsSite, "--out", filepath.Join(dir, "b"))
	if code != 2 || !strings.Contains(errOut, "docker.io/rancher/mirrored-pause:3.6") || !strings.Contains(errOut, "needed by k3s") {
		t.Errorf("build with the gate: exit %d, want 2 naming the missing pause image:\n%s", code, errOut)
	}
	_, errOut, code = perch(t, "", "bundle", "images", "--spec", testChartsSpec, "--allow-missing", "not a ref!")
	if code != 2 || !strings.Contains(errOut, "--allow-missing") {
		t.Errorf("bad --allow-missing: exit %d:\n%s", code, errOut)
	}
}
