package render

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/manifests"
)

// chartInfo is what values need to know about the chart they configure.
type chartInfo struct {
	chart   *chart.Chart
	version string
}

// upstreamChart reads a bundle's chart archive. It is shipped byte for
// byte: the archive's digest is what the signed manifest vouched for.
func upstreamChart(c Chart) (ChartFile, *chartInfo, error) {
	data, err := os.ReadFile(c.Path)
	if err != nil {
		return ChartFile{}, nil, fmt.Errorf("chart %s: %w; is the bundle complete?", c.Name, err)
	}
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return ChartFile{}, nil, fmt.Errorf("chart %s: %s is not a Helm chart archive: %w", c.Name, c.Path, err)
	}
	if ch.Name() != c.Name {
		return ChartFile{}, nil, fmt.Errorf("chart %s: %s holds chart %q; the bundle lists it under the wrong name", c.Name, c.Path, ch.Name())
	}
	file := path.Join(ChartsDir, ch.Name()+"-"+ch.Metadata.Version+".tgz")
	return ChartFile{Path: file, Data: data}, &chartInfo{chart: ch, version: ch.Metadata.Version}, nil
}

// analyticsChart packs the chart embedded in the binary. Packing is
// reproducible, so the archive (and the manifest naming it) only changes
// when the chart does.
func analyticsChart() (ChartFile, *chartInfo, error) {
	ch, err := LoadChartFS(manifests.AnalyticsChart())
	if err != nil {
		return ChartFile{}, nil, fmt.Errorf("embedded chart: %w", err)
	}
	data, err := Pack(ch)
	if err != nil {
		return ChartFile{}, nil, fmt.Errorf("embedded chart: %w", err)
	}
	file := path.Join(ChartsDir, ch.Name()+"-"+ch.Metadata.Version+".tgz")
	return ChartFile{Path: file, Data: data}, &chartInfo{chart: ch, version: ch.Metadata.Version}, nil
}

// LoadChartFS loads a chart whose Chart.yaml is at the root of fsys.
func LoadChartFS(fsys fs.FS) (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: p, Data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return loader.LoadFiles(files)
}

// Pack archives a chart reproducibly, through the same packer bundles use.
func Pack(ch *chart.Chart) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "perch-chart-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, "chart.tgz")
	if err := bundles.SaveChart(ch, dst); err != nil {
		return nil, err
	}
	return os.ReadFile(dst)
}

// BundleCharts lists the charts of an installed (verified) bundle
// directory, as Inputs.Charts.
func BundleCharts(dir string) ([]Chart, error) {
	raw, err := os.ReadFile(filepath.Join(dir, bundles.ManifestName))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	m, err := bundles.ParseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	out := make([]Chart, 0, len(m.Charts))
	for _, c := range m.Charts {
		out = append(out, Chart{Name: c.Name, Version: c.Version, Path: filepath.Join(dir, filepath.FromSlash(c.Path))})
	}
	return out, nil
}

// OpenBundleCharts gets the charts of a bundle source for rendering. A
// local directory (a path or a file:// URL) is read in place: its signed
// manifest is checked, then only the chart archives are read and each
// checked against the manifest's sha256, never the gigabytes of images.
// Any other source (an archive, a URL) is verified in full into a
// temporary directory, which cleanup removes.
func OpenBundleCharts(ctx context.Context, src string, o bundles.OpenOptions) (charts []Chart, cleanup func(), err error) {
	staged, err := bundles.Stage(ctx, src, bundles.StageOptions{OpenOptions: o, InPlace: true, ChartsOnly: true})
	if err != nil {
		return nil, func() {}, err
	}
	files := staged.Charts()
	charts = make([]Chart, 0, len(files))
	for _, c := range files {
		charts = append(charts, Chart(c))
	}
	return charts, func() { staged.Close() }, nil
}
