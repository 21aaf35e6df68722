package bundles

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// A Need is an image an appliance pulls, and every place that pulls it.
// manifests/images computes them by rendering each app as install would;
// the bundle build pulls them (imagesFromCharts) and refuses a bundle that
// lacks one (the gate), and install checks a bundle against them.
type Need struct {
	// Image is the full reference (FullReference).
	Image string   `json:"image"`
	From  []Origin `json:"from"`
}

// Origin is where an image is named: the app, its chart, the rendered
// object and the field in it; for k3s's own images the component and the
// flag that would change it.
type Origin struct {
	App    string `json:"app"`
	Chart  string `json:"chart,omitempty"`  // NAME-VERSION
	Object string `json:"object,omitempty"` // Kind namespace/name
	Field  string `json:"field"`
	// Site is which configs (or kinds of node) render it: a GPU node and
	// a CPU-only one render different workers.
	Site string `json:"site,omitempty"`
}

func (o Origin) String() string {
	var b strings.Builder
	b.WriteString(o.App)
	if o.Chart != "" {
		fmt.Fprintf(&b, " (chart %s)", o.Chart)
	}
	if o.Object != "" {
		fmt.Fprintf(&b, ", %s", o.Object)
	}
	if o.Field != "" {
		fmt.Fprintf(&b, ", %s", o.Field)
	}
	if o.Site != "" {
		fmt.Fprintf(&b, " [%s]", o.Site)
	}
	return b.String()
}

// LocalChart is a chart as a build fetched it: its .tgz on this machine.
type LocalChart struct {
	Name, Version, Path string
}

// NeedsFunc computes the images the charts and k3s version need. Build and
// Images call it once the charts are fetched; it reads only what it is
// given.
type NeedsFunc func(ctx context.Context, charts []LocalChart, k3sVersion string) ([]Need, error)

// Where an image in a bundle comes from, for `perch bundle images`.
const (
	FromSpec   = "images"           // the spec's images list
	FromCharts = "imagesFromCharts" // discovered and pulled
	FromK3s    = "k3s.airgapImages" // inside k3s's own image tarball
	Missing    = "MISSING"
	Allowed    = "allowed missing" // --allow-missing
)

// Supply is one needed image and how the bundle satisfies it.
type Supply struct {
	Need
	By string `json:"by"`
}

// supply decides, for every need, how the bundle satisfies it: pulled from
// the spec's images, pulled because imagesFromCharts, found in k3s's
// airgap tarball, allowed missing, or missing. pull is what the build then
// pulls: the spec's images and, with imagesFromCharts, every image a chart
// names that no airgap tarball already carries. k3s's own images come
// with k3s (k3s.airgapImages, the release's tarball) or the spec's images:
// imagesFromCharts is about charts, and a bundle that silently pulled
// k3s's images from Docker Hub would hide a forgotten tarball.
func supply(needs []Need, spec []string, fromCharts bool, airgap []string, allow []string) (out []Supply, pull []string) {
	in := func(list []string, im string) bool {
		return slices.ContainsFunc(list, func(s string) bool { return Canonical(s) == im })
	}
	pull = append(pull, spec...)
	for _, n := range needs {
		s := Supply{Need: n}
		switch {
		case in(spec, n.Image):
			s.By = FromSpec
		case in(airgap, n.Image):
			s.By = FromK3s
		case fromCharts && !onlyK3s(n):
			s.By = FromCharts
			pull = append(pull, n.Image)
		case in(allow, n.Image):
			s.By = Allowed
		default:
			s.By = Missing
		}
		out = append(out, s)
	}
	return out, pull
}

// K3sApp starts the App of an Origin that is k3s itself.
const K3sApp = "k3s "

func onlyK3s(n Need) bool {
	for _, o := range n.From {
		if !strings.HasPrefix(o.App, K3sApp) {
			return false
		}
	}
	return len(n.From) > 0
}

// MissingError is the gate's refusal: images the given configs need that
// the bundle would not carry.
type MissingError struct {
	Missing []Supply
}

func (e *MissingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the bundle would miss %d image(s) the appliance pulls:\n", len(e.Missing))
	for _, m := range e.Missing {
		fmt.Fprintf(&b, "  %s\n", m.Image)
		for i, o := range m.From {
			if i == 3 {
				fmt.Fprintf(&b, "      and %d more places\n", len(m.From)-3)
				break
			}
			fmt.Fprintf(&b, "      needed by %s\n", o)
		}
	}
	b.WriteString(FixMissing)
	return b.String()
}

// FixMissing is what to do about a missing image.
const FixMissing = "add each to the spec's images (a chart's image also comes with imagesFromCharts: true; k3s's own with k3s.airgapImages, the release's k3s-airgap-images tarball), or pass --allow-missing IMAGE for one no site will run"

func (e *MissingError) Is(target error) bool { return target == ErrInvalidInput }

func missing(s []Supply) []Supply {
	var out []Supply
	for _, x := range s {
		if x.By == Missing {
			out = append(out, x)
		}
	}
	return out
}
