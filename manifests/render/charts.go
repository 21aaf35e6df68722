package render

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/perchedge/perch/bundles"
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

// embedded packs a chart embedded in the binary. Packing is reproducible,
// so the archive (and the manifest naming it) only changes when the chart
// does.
func embedded(fsys fs.FS) func() (ChartFile, *chartInfo, error) {
	return func() (ChartFile, *chartInfo, error) { return packFS(fsys) }
}

func packFS(fsys fs.FS) (ChartFile, *chartInfo, error) {
	ch, err := LoadChartFS(fsys)
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
