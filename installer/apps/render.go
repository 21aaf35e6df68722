package apps

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/manifests"
	"github.com/perchedge/perch/manifests/render"
)

// Spec is what rendering reads of a config that validation accepted.
func Spec(cfg *config.Appliance) *manifests.Appliance {
	a := &manifests.Appliance{
		GPU:      manifests.GPU{Off: cfg.GPU.Mode == config.GPUOff, Replicas: cfg.GPU.Sharing.Replicas},
		Pipeline: manifests.Pipeline{Enabled: cfg.Pipeline.Enabled},
		Monitoring: manifests.Monitoring{
			Enabled:        cfg.Monitoring.Enabled,
			Grafana:        cfg.Monitoring.Grafana,
			Alertmanager:   cfg.Monitoring.Alertmanager,
			Retention:      cfg.Monitoring.Retention,
			RetentionSize:  cfg.Monitoring.RetentionSize,
			ScrapeInterval: cfg.Monitoring.ScrapeInterval,
			ExternalLabels: externalLabels(cfg),
		},
		K3s: manifests.K3s{
			Disable:      cfg.K3s.Disable,
			PauseImage:   extraArg(cfg.K3s.ExtraArgs, "pause-image"),
			HelmJobImage: extraArg(cfg.K3s.ExtraArgs, "helm-job-image"),
			EtcdMetrics:  cfg.EtcdMetrics(),
		},
	}
	for _, s := range cfg.Pipeline.Streams {
		a.Pipeline.Streams = append(a.Pipeline.Streams, manifests.Stream{Name: s.Name, URL: s.URL})
	}
	for i, rw := range cfg.Monitoring.RemoteWrite {
		a.Monitoring.RemoteWrite = append(a.Monitoring.RemoteWrite, manifests.RemoteWrite{
			Name: config.RemoteWriteName(i, rw), URL: rw.URL, Username: rw.Username,
			Password: rw.PasswordFile != "", BearerToken: rw.BearerTokenFile != "", CA: rw.CAFile != "",
		})
	}
	return a
}

// SiteLabel is the node label that names an appliance's site.
const SiteLabel = "perch.dev/site"

// externalLabels are monitoring.externalLabels, with site filled in when
// the config leaves it out (explicitSite), from the node's hostname: without
// one, a central store cannot tell this appliance from the next. On a
// cluster the deploy step puts the first server's name there instead.
func externalLabels(cfg *config.Appliance) map[string]string {
	out := map[string]string{}
	for k, v := range cfg.Monitoring.ExternalLabels {
		out[k] = v
	}
	site, set := explicitSite(cfg)
	if !set {
		site = cfg.Node.Hostname
	}
	if site != "" {
		out["site"] = site
	}
	return out
}

// explicitSite is the site the config names: monitoring.externalLabels'
// site, else the node's perch.dev/site label.
func explicitSite(cfg *config.Appliance) (string, bool) {
	if s, ok := cfg.Monitoring.ExternalLabels["site"]; ok {
		return s, true
	}
	s, ok := cfg.Node.Labels[SiteLabel]
	return s, ok && s != ""
}

// extraArg is the value of flag in k3s.extraArgs, which validation keeps
// to one --flag=value item each (k3s also takes a single dash); the last
// one wins, as it does for k3s.
func extraArg(args []string, flag string) string {
	v := ""
	for _, a := range args {
		k, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if ok && k == flag {
			v = val
		}
	}
	return v
}

// bundleCharts are the charts of an installed (verified) bundle directory
// on this host, from the manifest verified at plan time.
func bundleCharts(dir string, m *bundles.Manifest) []render.Chart {
	out := make([]render.Chart, 0, len(m.Charts))
	for _, c := range m.Charts {
		out = append(out, render.Chart{Name: c.Name, Version: c.Version, Path: filepath.Join(dir, filepath.FromSlash(c.Path))})
	}
	return out
}

// Review renders what install would deploy for a node with inv's GPUs,
// for `perch manifests render`: upstream charts come from cfg's bundle,
// whose signature is checked (a local directory is read in place, and of
// it only the charts). skipped says why each app left out is. close
// releases the staged bundle.
func Review(ctx context.Context, cfg *config.Appliance, inv *gpu.Inventory) (apps []render.App, skipped []string, err error) {
	in := render.Inputs{GPU: inv.Capacity()}
	if src := cfg.Bundle.Source; src != "" {
		var staged *bundles.Staged
		if staged, err = stageCharts(ctx, cfg); err != nil {
			return nil, nil, err
		}
		defer staged.Close()
		for _, c := range staged.Charts() {
			in.Charts = append(in.Charts, render.Chart(c))
		}
	}
	a := Spec(cfg)
	if apps, err = render.Apps(a, in); err != nil {
		return nil, nil, err
	}
	return apps, render.Skipped(a, in), nil
}

func stageCharts(ctx context.Context, cfg *config.Appliance) (*bundles.Staged, error) {
	invalid := func(path, msg string) error {
		return &config.InvalidError{Source: "config", Errs: config.FieldErrors{{Path: path, Msg: msg}}}
	}
	if cfg.Bundle.Source == config.BundleAuto {
		return nil, invalid("bundle.source", "auto finds a bundle on this machine's USB sticks at install; to render, pass the bundle's path with --bundle")
	}
	if cfg.Bundle.PublicKey == "" {
		return nil, invalid("bundle.publicKey", "required to check the bundle's signature; pass --pubkey NAME.pub")
	}
	pub, err := bundles.LoadPublicKey(cfg.Bundle.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("bundle.publicKey: %w", err)
	}
	staged, err := bundles.Stage(ctx, cfg.Bundle.Source, bundles.StageOptions{
		OpenOptions: bundles.OpenOptions{PublicKey: &pub, Arch: runtime.GOARCH},
		InPlace:     true,
		ChartsOnly:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("bundle.source: %w", err)
	}
	return staged, nil
}

// WriteDir writes every app under dir in the layout of the k3s data dir
// (dir/server/manifests/NAME.yaml, dir/server/static/charts/NAME-VERSION.tgz),
// for review or GitOps, through the same host layer an install writes
// with: a file that already holds the same bytes is left alone, so an
// unchanged app keeps its modification time; the others are replaced
// atomically. Manifests are 0600, since their values hold camera URLs.
// Files of apps no longer rendered stay: dir may hold files that are not
// Perch's.
func WriteDir(dir string, apps []render.App) (written []string, err error) {
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
