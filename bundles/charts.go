package bundles

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

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
	rel := filepath.ToSlash(filepath.Join(chartsDir, ch.Name()+"-"+ch.Metadata.Version+".tgz"))
	out := filepath.Join(dir, filepath.FromSlash(rel))
	if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
		// a published archive is kept byte for byte: its digest is its identity
		return ch, rel, copyFile(src, out)
	}
	if err := SaveChart(ch, out); err != nil {
		return nil, "", err
	}
	return ch, rel, nil
}

// SaveChart packs a loaded chart as a .tgz at dst, reproducibly: the same
// chart always packs to the same bytes, so a bundle signs the same manifest
// and k3s sees an unchanged chart as unchanged.
func SaveChart(ch *chart.Chart, dst string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dst), ".chart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	saved, err := chartutil.Save(ch, tmp)
	if err != nil {
		return fmt.Errorf("package chart: %w", err)
	}
	if err := reproducibleTgz(saved, dst); err != nil {
		return fmt.Errorf("package chart: %w", err)
	}
	return nil
}

// reproducibleTgz rewrites helm's archive without its timestamps, so the
// same chart directory always packs to the same bytes and bundles built
// from the same inputs sign the same manifest.
func reproducibleTgz(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	zw := gzip.NewWriter(out)
	tr, tw := tar.NewReader(zr), tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		h.ModTime, h.AccessTime, h.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return out.Close()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ChartImages renders a chart with its default values, as helm install
// would, and returns every image the result references (collectImages).
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
			collectImages(doc, set)
		}
	}
	out := make([]string, 0, len(set))
	for im := range set {
		out = append(out, im)
	}
	sort.Strings(out)
	return out, nil
}

// collectImages finds every image a rendered object names: a field called
// image anywhere (containers at any depth, and custom resources such as an
// operator's Prometheus, whose spec.image no container spec shows), and
// references in args, command and env values (an operator's
// --prometheus-config-reloader=IMAGE). ConfigMaps and Secrets hold data,
// not fields, and are not read.
func collectImages(doc any, set map[string]bool) {
	if m, ok := doc.(map[string]any); ok && (m["kind"] == "ConfigMap" || m["kind"] == "Secret") {
		return
	}
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch t := v.(type) {
		case map[string]any:
			for k, child := range t {
				walk(child, k)
			}
		case []any:
			for _, child := range t {
				walk(child, key)
			}
		case string:
			switch key {
			case "image":
				if t != "" && !strings.ContainsAny(t, " \t\n{}") {
					set[t] = true
				}
			case "args", "command", "value":
				if ref := argImage(t); ref != "" {
					set[ref] = true
				}
			}
		}
	}
	walk(doc, "")
}

// imageArg is a whole reference with its registry host, path and tag or
// digest, alone or as a flag's value: strict enough that durations, paths
// and addresses in args (15d, /etc/x.yml, :9090) never match.
var imageArg = regexp.MustCompile(`^(?:--?[A-Za-z0-9][A-Za-z0-9._-]*=)?` +
	`((?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+)(?::[0-9]+)?` + // registry host
	`/[a-z0-9]+(?:[._/-][a-z0-9]+)*` + // repository path
	`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(?:@sha256:[a-f0-9]{64})?|@sha256:[a-f0-9]{64}))$`) // tag, digest or both

func argImage(s string) string {
	if m := imageArg.FindStringSubmatch(strings.TrimSpace(s)); m != nil {
		return m[1]
	}
	return ""
}
