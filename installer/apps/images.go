package apps

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/status"
	"github.com/perchedge/perch/manifests/images"
	"github.com/perchedge/perch/manifests/render"
)

// ChartsFunc gives the bundle's charts for a check made before install
// (bundle.Bundle.Charts): ok is false when they cannot be read yet.
type ChartsFunc func(ctx context.Context) (charts []bundles.ChartFile, done func(), ok bool, err error)

// Images checks, before the first host change, that the bundle carries
// every image this node's config pulls: each app as it will be rendered
// for this node's GPUs (and a camera, if the config has none yet), and
// k3s's own. With the appliance registry, the bundle is the only source
// and a missing image is refused; without it, images come from whatever
// registries the node reaches, and a miss is a warning.
func (a *Apps) Images(charts ChartsFunc) engine.Step { return &imagesStep{a, charts} }

type imagesStep struct {
	a      *Apps
	charts ChartsFunc
}

func (s *imagesStep) Name() string { return "bundle-images" }

func (s *imagesStep) Plan(ctx context.Context) ([]engine.Change, error) {
	n := s.a.n
	b := n.Bundle
	if b == nil {
		return nil, nil
	}
	inv, _, _ := n.GPUs(ctx) // the gpu step has said what is wrong with them
	in := images.Input{K3sVersion: b.Manifest.K3s.Version, Sites: []images.Site{images.NodeSite("this node", Spec(n.Cfg), inv)}}
	files, done, ok, err := s.charts(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	for _, c := range files {
		in.Charts = append(in.Charts, render.Chart(c))
	}
	needs, err := images.Needs(in)
	if err != nil {
		return nil, fmt.Errorf("bundle images: %w", err)
	}
	miss := MissingImages(b.Manifest, needs)
	var out []engine.Change
	var allowed []string
	miss = slices.DeleteFunc(miss, func(nd bundles.Need) bool {
		if slices.ContainsFunc(n.Cfg.Bundle.AllowMissing, func(a string) bool { return bundles.Canonical(a) == nd.Image }) {
			allowed = append(allowed, nd.Image)
			return true
		}
		return false
	})
	if len(allowed) > 0 {
		out = append(out, engine.Change{Action: engine.Warn, Kind: engine.Check, Target: "bundle-images",
			Detail: fmt.Sprintf("the bundle lacks %s, which bundle.allowMissing allows; pods that need it will not start unless it is loaded another way", strings.Join(allowed, ", "))})
	}
	if !ok {
		out = append(out, engine.Change{Action: engine.Warn, Kind: engine.Check, Target: "bundle-images",
			Detail: "the bundle is an archive: the images of its upstream charts are checked when it is unpacked at install, and were checked by bundle build --config"})
	}
	if len(miss) == 0 {
		return out, nil
	}
	msg := missingMessage(b.Manifest, miss)
	if !n.Cfg.Registry.Enabled {
		return append(out, engine.Change{Action: engine.Warn, Kind: engine.Check, Target: "bundle-images",
			Detail: msg + "; registry.enabled is false, so the node must pull them from a registry it reaches"}), nil
	}
	// the config and the bundle do not fit: bad input, as a config
	// problem is, named by the key that chose the bundle
	return nil, &config.InvalidError{Source: "config", Errs: config.FieldErrors{{Path: "bundle.source", Msg: msg}}}
}

func (s *imagesStep) Apply(context.Context, []engine.Change, *engine.Reporter) error { return nil }

// MissingImages are the needs the bundle does not carry: not among its
// images, nor inside k3s's air-gap tarball. A tarball whose names the
// build could not read is taken to hold k3s's own images.
func MissingImages(m *bundles.Manifest, needs []bundles.Need) []bundles.Need {
	have := status.NewBundleImages(nil, m)
	unread := m.K3s.AirgapImages != "" && len(m.K3s.Images) == 0
	var out []bundles.Need
	for _, n := range needs {
		if have.Has(n.Image) {
			continue
		}
		if unread && slices.ContainsFunc(n.From, func(o bundles.Origin) bool { return strings.HasPrefix(o.App, bundles.K3sApp) }) {
			continue
		}
		out = append(out, n)
	}
	return out
}

func missingMessage(m *bundles.Manifest, miss []bundles.Need) string {
	var b strings.Builder
	fmt.Fprintf(&b, "bundle %s %s lacks %d image(s) this node's config pulls:", m.Name, m.Version, len(miss))
	for _, n := range miss {
		fmt.Fprintf(&b, "\n  %s, needed by %s", n.Image, n.From[0])
	}
	b.WriteString("\nadd each to the bundle spec's images (`perch bundle images --spec SPEC --config CONFIG` lists them all) and rebuild the bundle, change the config so it does not need them, or list one under bundle.allowMissing if it is loaded another way")
	return b.String()
}
