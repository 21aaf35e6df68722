package apps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"

	helmv1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	helmclient "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/manifests"
	"github.com/perchedge/perch/manifests/render"
)

// Placer keeps the pipeline's GPU workers on the cluster's Ready GPU
// nodes without a perch install: the in-cluster half of horizontal
// scaling. It changes only the placement in the deployed perch-analytics
// values (workers.slots and each stream's slot), from the same facts and
// with the same functions the apps step renders them with, so a server's
// install that follows renders the same bytes.
type Placer struct {
	c clients
}

// NewPlacer reaches the cluster through kube and helm.
func NewPlacer(kube kubernetes.Interface, helm helmclient.Interface) *Placer {
	return &Placer{clients{kube, helm}}
}

// Move is one stream that changed worker slot ("" when it had none or
// has none now).
type Move struct {
	Stream, From, To string
}

// Placement is what one Place found and did.
type Placement struct {
	Slots []manifests.Slot // the slots now, each on its node
	Moves []Move           // the streams that moved
	// Changed says the HelmChart was updated: slots or streams moved.
	Changed bool
}

// Place brings the deployed pipeline's placement to the cluster now: a
// node that joined adds its slots and takes only what balance needs; a
// node that is no longer Ready loses its slots, and only its streams
// move. A pipeline on the CPU profile, or none deployed, is left alone.
func (p *Placer) Place(ctx context.Context) (Placement, error) {
	hcs := p.c.helm.HelmV1().HelmCharts(render.HelmChartNamespace)
	hc, err := hcs.Get(ctx, render.Analytics, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Placement{}, nil
	}
	if err != nil {
		return Placement{}, fmt.Errorf("read HelmChart %s: %w", render.Analytics, err)
	}
	if len(hc.Spec.ValuesContent) > maxManifest {
		return Placement{}, fmt.Errorf("HelmChart %s: values over %d bytes", render.Analytics, maxManifest)
	}
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(hc.Spec.ValuesContent), &vals); err != nil {
		return Placement{}, fmt.Errorf("HelmChart %s: values: %w", render.Analytics, err)
	}
	g, _ := vals["gpu"].(map[string]any)
	if number(g["count"]) <= 0 {
		return Placement{}, nil // the CPU profile's workers go anywhere
	}
	f, err := readFacts(ctx, p.c)
	if err != nil {
		return Placement{}, err
	}
	slots := f.placement(max(int(number(g["sharingReplicas"])), 1))
	names := make([]string, 0, len(slots))
	placed := make([]any, 0, len(slots))
	for _, s := range slots {
		names = append(names, s.Name)
		placed = append(placed, map[string]any{"name": s.Name, "node": s.Node, "resource": s.Resource})
	}
	streams, _ := vals["streams"].([]any)
	var streamNames []string
	for _, st := range streams {
		if m, ok := st.(map[string]any); ok {
			if n, ok := m["name"].(string); ok {
				streamNames = append(streamNames, n)
			}
		}
	}
	assign := manifests.AssignTo(streamNames, names, f.assigned)
	var moves []Move
	for _, st := range streams {
		m, ok := st.(map[string]any)
		if !ok {
			continue
		}
		n, _ := m["name"].(string)
		was, _ := m["slot"].(string)
		if was != assign[n] {
			moves = append(moves, Move{n, was, assign[n]})
		}
		m["slot"] = assign[n]
	}
	vals["workers"] = map[string]any{"perNode": true, "slots": placed}
	out, err := yaml.Marshal(vals)
	if err != nil {
		return Placement{}, err
	}
	pl := Placement{Slots: slots, Moves: moves}
	if string(out) == hc.Spec.ValuesContent {
		return pl, nil
	}
	hc.Spec.ValuesContent = string(out)
	// the resourceVersion read above: a server's install that wrote the
	// HelmChart since makes this a conflict, and the next Place starts
	// from what it wrote
	if _, err := hcs.Update(ctx, hc, metav1.UpdateOptions{}); err != nil {
		return Placement{}, fmt.Errorf("update HelmChart %s: %w", render.Analytics, err)
	}
	pl.Changed = true
	return pl, nil
}

// number is a YAML number as JSON decodes it; 0 for anything else.
func number(v any) float64 {
	f, _ := v.(float64)
	return f
}

// Mirror writes the deployed placement into this server's own manifest,
// when the deployed values differ from the file's in the placement alone. k3s applies every file of
// server/manifests when it starts, whatever it applied before; a server
// whose file still held the placement before a Place would, at its next
// start, undo it. Only the values change; the rest is what install wrote.
// A server that has no manifest (install has not written it) gets none.
func Mirror(ctx context.Context, h *host.Host, dataDir string, helm helmclient.Interface) (bool, error) {
	p := path.Join(dataDir, render.ManifestsDir, render.Analytics+".yaml")
	fi, err := h.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	if fi.Size() > maxManifest {
		return false, fmt.Errorf("%s: over %d bytes", p, maxManifest)
	}
	raw, err := h.ReadFile(p)
	if err != nil {
		return false, err
	}
	var local helmv1.HelmChart
	if err := yaml.Unmarshal(raw, &local); err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	hc, err := helm.HelmV1().HelmCharts(render.HelmChartNamespace).Get(ctx, render.Analytics, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read HelmChart %s: %w", render.Analytics, err)
	}
	if hc.Spec.ValuesContent == local.Spec.ValuesContent {
		return false, nil
	}
	// only the placement is the controller's: values that differ in
	// anything else are an install's, on this server (not applied yet) or
	// another, and its next install brings this file along
	a, errA := withoutPlacement(hc.Spec.ValuesContent)
	b, errB := withoutPlacement(local.Spec.ValuesContent)
	if errA != nil || errB != nil || a != b {
		return false, nil
	}
	local.Spec.ValuesContent = hc.Spec.ValuesContent
	data, err := render.Encode(&local)
	if err != nil {
		return false, err
	}
	// 0600 as install writes it: the values hold camera URLs
	return h.WriteFile(p, data, 0o600)
}

// withoutPlacement is perch-analytics values less what Place changes.
func withoutPlacement(values string) (string, error) {
	var v map[string]any
	if err := yaml.Unmarshal([]byte(values), &v); err != nil {
		return "", err
	}
	delete(v, "workers")
	if streams, ok := v["streams"].([]any); ok {
		for _, st := range streams {
			if m, ok := st.(map[string]any); ok {
				delete(m, "slot")
			}
		}
	}
	out, err := yaml.Marshal(v)
	return string(out), err
}
