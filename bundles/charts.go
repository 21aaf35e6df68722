package bundles

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// packChart loads a fetched chart (a .tgz or a directory), checks it is the
// chart the spec names, and stores it as charts/NAME-VERSION.tgz under dir.
func packChart(src, want, dir string) (*chart.Chart, string, error) {
	ch, err := loader.Load(src)
	if err != nil {
		return nil, "", fmt.Errorf("not a Helm chart: %w", err)
	}
	if ch.Name() != want {
		return nil, "", fmt.Errorf("the source holds chart %q, not %q; fix the name or the source", ch.Name(), want)
	}
	dest := filepath.Join(dir, chartsDir)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, "", err
	}
	out, err := chartutil.Save(ch, dest)
	if err != nil {
		return nil, "", fmt.Errorf("package chart: %w", err)
	}
	return ch, filepath.ToSlash(filepath.Join(chartsDir, filepath.Base(out))), nil
}

// ChartImages renders a chart with its default values, as helm install
// would, and returns every container image the result references.
func ChartImages(ch *chart.Chart) ([]string, error) {
	vals := map[string]any{}
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return nil, fmt.Errorf("dependencies: %w", err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: ch.Name(), Namespace: "default", Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	set := map[string]bool{}
	for name, text := range files {
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			continue
		}
		dec := yaml.NewDecoder(bytes.NewReader([]byte(text)))
		for {
			var doc any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("render: %s: %w", name, err)
			}
			collectImages(doc, false, set)
		}
	}
	out := make([]string, 0, len(set))
	for im := range set {
		out = append(out, im)
	}
	sort.Strings(out)
	return out, nil
}

// collectImages finds "image" in anything that is a container: an element
// of containers, initContainers or ephemeralContainers, at any depth, so
// Deployments, CronJobs and custom resources that embed pod specs all count.
func collectImages(v any, inContainers bool, set map[string]bool) {
	switch t := v.(type) {
	case map[string]any:
		if inContainers {
			if im, ok := t["image"].(string); ok && im != "" {
				set[im] = true
			}
		}
		for k, child := range t {
			collectImages(child, k == "containers" || k == "initContainers" || k == "ephemeralContainers", set)
		}
	case []any:
		for _, child := range t {
			collectImages(child, inContainers, set)
		}
	}
}
