package render

import (
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"helm.sh/helm/v3/pkg/chart"

	"github.com/perchedge/perch/airgap"
)

// PullThrough returns values that point every image a chart's defaults
// name (its subcharts' too) at registry, under the repository airgap
// loaded it as (docker.io/grafana/grafana → REGISTRY/docker.io/grafana/grafana).
// It reads the chart's own values.yaml instead of a list of known keys, so
// a chart upgrade that adds an image is covered without a Perch release.
//
// An image is a map with a "repository" string, found under a key naming
// an image or beside a "tag". Where the map has a "registry" key (the
// kube-prometheus-stack family) the registry goes there; otherwise the
// repository gets it as a prefix. Images a chart builds from other keys
// (or hard-codes) keep their upstream names, which registries.yaml
// mirrors to the same registry.
func PullThrough(ch *chart.Chart, registry string) (map[string]any, error) {
	out, err := imageValues(ch.Values, "", registry)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", ch.Name(), err)
	}
	for _, dep := range ch.Metadata.Dependencies {
		var sub *chart.Chart
		for _, d := range ch.Dependencies() {
			if d.Name() == dep.Name {
				sub = d
			}
		}
		if sub == nil {
			continue // not vendored: it cannot be installed offline either
		}
		key := dep.Name
		if dep.Alias != "" {
			key = dep.Alias
		}
		sv, err := PullThrough(sub, registry)
		if err != nil {
			return nil, err
		}
		if len(sv) > 0 {
			// the parent's defaults for its subchart win, as in helm
			parent, _ := out[key].(map[string]any)
			out[key] = merge(sv, parent)
		}
	}
	return out, nil
}

func imageValues(vals map[string]any, key, registry string) (map[string]any, error) {
	out := map[string]any{}
	if repo, ok := vals["repository"].(string); ok && repo != "" && isImage(vals, key) {
		up, hasRegistry := vals["registry"].(string)
		full := repo
		if hasRegistry && up != "" {
			full = strings.TrimSuffix(up, "/") + "/" + repo
		}
		ref, err := name.NewRepository(full)
		if err != nil {
			return nil, fmt.Errorf("image %s (key %s): %w", full, key, err)
		}
		if hasRegistry {
			out["registry"] = registry
			out["repository"] = airgap.Repository(ref.Tag("latest"))
		} else {
			out["repository"] = registry + "/" + airgap.Repository(ref.Tag("latest"))
		}
		return out, nil
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys) // errors name the same key every run
	for _, k := range keys {
		m, ok := vals[k].(map[string]any)
		if !ok {
			continue
		}
		sub, err := imageValues(m, k, registry)
		if err != nil {
			return nil, err
		}
		if len(sub) > 0 {
			out[k] = sub
		}
	}
	return out, nil
}

func isImage(vals map[string]any, key string) bool {
	if strings.Contains(strings.ToLower(key), "image") {
		return true
	}
	_, tag := vals["tag"]
	return tag
}
