package render

import (
	"fmt"
	"os"
	"path"

	"github.com/perchedge/perch/installer/host"
)

// WriteDir writes every app under dir in the layout of the k3s data dir
// (dir/server/manifests/NAME.yaml, dir/server/static/charts/NAME-VERSION.tgz),
// for review or GitOps, through the same host layer an install writes
// with: a file that already holds the same bytes is left alone, so an
// unchanged app keeps its modification time; the others are replaced
// atomically. Manifests are 0600, since their values hold camera URLs.
// Files of apps no longer rendered stay: dir may hold files that are not
// Perch's.
func WriteDir(dir string, apps []App) (written []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	h, err := host.Open(dir)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	for _, a := range apps {
		for _, f := range []struct {
			rel  string
			data []byte
			mode os.FileMode
		}{{a.Chart.Path, a.Chart.Data, 0o644}, {a.File, a.YAML, 0o600}} {
			changed, err := h.WriteFile(path.Join("/", f.rel), f.data, f.mode)
			if err != nil {
				return written, fmt.Errorf("app %s: %w", a.Name, err)
			}
			if changed {
				written = append(written, f.rel)
			}
		}
	}
	return written, nil
}
