package apps

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"slices"
	"testing"
	"time"

	helmfake "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned/fake"
	helmv1client "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned/typed/helm.cattle.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
	"github.com/perchedge/perch/manifests"
	"github.com/perchedge/perch/manifests/render"
)

// The placer through a GPU node's loss and return, against what a
// server's install renders: it changes nothing an install just rendered;
// a lost node's streams, and only those, move to the Ready node's slots;
// an install that follows renders the same values; the node's return
// gives it slots again; and Mirror keeps a server's manifest file equal
// to the deployed values, so k3s re-applying it at start undoes nothing.
func TestPlacerFollowsGPUNodes(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	kube := fake.NewClientset(
		clusterNode("srv-1", t0, map[string]string{controlPlaneLabel: "true"}),
		clusterNode("gpu-a", t0.Add(time.Hour), gpuLabels(t, 2)),
		clusterNode("gpu-b", t0.Add(time.Hour), gpuLabels(t, 1)),
	)
	helm := helmfake.NewSimpleClientset()
	h, err := host.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Node.Hostname = "srv-1"
	cfg.GPU.Sharing.Replicas = 2
	for i := 1; i <= 9; i++ {
		cfg.Pipeline.Streams = append(cfg.Pipeline.Streams, config.Stream{Name: fmt.Sprintf("cam-%d", i), URL: fmt.Sprintf("rtsp://user:planted-pw@192.0.2.%d/live", i)})
	}
	a := New(&node.Node{Cfg: &cfg, Host: h, Name: "srv-1", GPU: noGPU{}})
	a.kube = &clients{kube, helm}
	install := func() render.App {
		t.Helper()
		apps, _, err := (&appsStep{a: a}).desired(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		return find(t, apps, render.Analytics)
	}
	hcs := helm.HelmV1().HelmCharts(render.HelmChartNamespace)
	deployed := func() string {
		t.Helper()
		hc, err := hcs.Get(ctx, render.Analytics, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return hc.Spec.ValuesContent
	}
	manifest := path.Join(cfg.K3s.DataDir, render.ManifestsDir, render.Analytics+".yaml")

	an := install()
	if _, err := hcs.Create(ctx, an.HelmChart, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteFile(manifest, an.YAML, 0o600); err != nil {
		t.Fatal(err)
	}
	p := NewPlacer(kube, helm)
	pl, err := p.Place(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Changed || len(pl.Moves) != 0 || len(pl.Slots) != 6 {
		t.Fatalf("Place after an install: changed %v, moves %v, %d slots; want nothing changed on 6 slots", pl.Changed, pl.Moves, len(pl.Slots))
	}
	onNode := func(slots []manifests.Slot) map[string]string {
		out := map[string]string{}
		for _, s := range slots {
			out[s.Name] = s.Node
		}
		return out
	}
	nodeOf := onNode(pl.Slots)
	// two streams on gpu-a swapped by hand: only where the deployed values
	// have them, not the chart's ranking, keeps them there
	swapOnGPUA(t, hcs, nodeOf)
	if pl, err := p.Place(ctx); err != nil || pl.Changed {
		t.Fatalf("Place after a swap that keeps balance: changed %v, %v", pl.Changed, err)
	}
	before := assignedIn(deployed())

	setReady(t, kube, "gpu-b", corev1.ConditionUnknown)
	pl, err = p.Place(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !pl.Changed || len(pl.Slots) != 4 {
		t.Fatalf("gpu-b lost: changed %v, %d slots %v; want gpu-a's 4", pl.Changed, len(pl.Slots), pl.Slots)
	}
	after := assignedIn(deployed())
	if len(after) != len(cfg.Pipeline.Streams) {
		t.Fatalf("%d of %d streams placed after gpu-b was lost: %v", len(after), len(cfg.Pipeline.Streams), after)
	}
	for name, slot := range before {
		switch {
		case nodeOf[slot] == "gpu-a" && after[name] != slot:
			t.Errorf("%s moved from %s on gpu-a, which stayed, to %s", name, slot, after[name])
		case onNode(pl.Slots)[after[name]] != "gpu-a":
			t.Errorf("%s is on %s, not a slot of gpu-a", name, after[name])
		}
	}
	for _, m := range pl.Moves {
		if nodeOf[m.From] != "gpu-b" {
			t.Errorf("move %v is not off gpu-b", m)
		}
	}
	if !bytes.Contains([]byte(deployed()), []byte("planted-pw")) {
		t.Errorf("the camera URLs lost their credentials in the values")
	}

	// a server's install now renders what the placer deployed
	if got := install().HelmChart.Spec.ValuesContent; got != deployed() {
		t.Errorf("install renders other values than the placer deployed:\n%s\n---\n%s", got, deployed())
	}

	// this server's file follows, once
	for i, want := range []bool{true, false} {
		changed, err := Mirror(ctx, h, cfg.K3s.DataDir, helm)
		if err != nil || changed != want {
			t.Fatalf("Mirror %d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	// a camera changed by an install on this server, not applied yet:
	// that is no placement, and the file stays as install wrote it
	cfg.Pipeline.Streams[0].URL = "rtsp://192.0.2.200/changed"
	changedFile := install().YAML
	if _, err := h.WriteFile(manifest, changedFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := Mirror(ctx, h, cfg.K3s.DataDir, helm); err != nil || changed {
		t.Fatalf("Mirror over an install's change: changed %v, %v; want the file left alone", changed, err)
	}
	cfg.Pipeline.Streams[0].URL = "rtsp://user:planted-pw@192.0.2.1/live"
	if _, err := h.WriteFile(manifest, an.YAML, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := Mirror(ctx, h, cfg.K3s.DataDir, helm); err != nil || !changed {
		t.Fatalf("Mirror of a placement: changed %v, %v", changed, err)
	}
	raw, err := h.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if want := install().YAML; !bytes.Equal(raw, want) {
		t.Errorf("the mirrored manifest is not what an install writes:\n%s\n---\n%s", raw, want)
	}
	if fi, err := h.Stat(manifest); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("manifest %v, %v; want mode 0600", fi.Mode(), err)
	}

	// gpu-b back: its shares are slots again, and every stream is on one
	setReady(t, kube, "gpu-b", corev1.ConditionTrue)
	pl, err = p.Place(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !pl.Changed || len(pl.Slots) != 6 || slotNodes(pl.Slots)[1] != "gpu-b" {
		t.Fatalf("gpu-b back: changed %v, slots %v", pl.Changed, pl.Slots)
	}
	back := assignedIn(deployed())
	load := map[string]int{}
	for _, slot := range back {
		load[slot]++
	}
	for _, s := range pl.Slots {
		if load[s.Name] < 1 || load[s.Name] > 2 {
			t.Errorf("slot %s on %s carries %d of 9 streams over 6 slots", s.Name, s.Node, load[s.Name])
		}
	}
}

// A pipeline on the CPU profile has no GPU slots to follow.
func TestPlacerLeavesCPUProfile(t *testing.T) {
	ctx := context.Background()
	helm := helmfake.NewSimpleClientset()
	kube := fake.NewClientset(clusterNode("srv-1", time.Now(), map[string]string{controlPlaneLabel: "true"}))
	h, err := host.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Pipeline.Streams = []config.Stream{{Name: "cam-1", URL: "rtsp://192.0.2.1/live"}}
	a := New(&node.Node{Cfg: &cfg, Host: h, Name: "srv-1", GPU: noGPU{}})
	a.kube = &clients{kube, helm}
	apps, _, err := (&appsStep{a: a}).desired(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := helm.HelmV1().HelmCharts(render.HelmChartNamespace).Create(ctx, find(t, apps, render.Analytics).HelmChart, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pl, err := NewPlacer(kube, helm).Place(ctx)
	if err != nil || pl.Changed || pl.Slots != nil {
		t.Errorf("Place on the CPU profile: %+v, %v; want nothing", pl, err)
	}
}

// swapOnGPUA swaps the slots of two streams on different slots of gpu-a
// in the deployed values.
func swapOnGPUA(t *testing.T, hcs helmv1client.HelmChartInterface, nodeOf map[string]string) {
	t.Helper()
	ctx := context.Background()
	hc, err := hcs.Get(ctx, render.Analytics, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(hc.Spec.ValuesContent), &vals); err != nil {
		t.Fatal(err)
	}
	var first map[string]any
	for _, st := range vals["streams"].([]any) {
		m := st.(map[string]any)
		slot := m["slot"].(string)
		if nodeOf[slot] != "gpu-a" {
			continue
		}
		if first == nil {
			first = m
			continue
		}
		if first["slot"] != slot {
			first["slot"], m["slot"] = slot, first["slot"]
			out, _ := yaml.Marshal(vals)
			hc.Spec.ValuesContent = string(out)
			if _, err := hcs.Update(ctx, hc, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("no two streams on different slots of gpu-a")
}

func setReady(t *testing.T, kube *fake.Clientset, name string, status corev1.ConditionStatus) {
	t.Helper()
	n, err := kube.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}
	if _, err := kube.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// slotNodes are the nodes the slots are on, each once, in order.
func slotNodes(slots []manifests.Slot) []string {
	var out []string
	for _, s := range slots {
		if !slices.Contains(out, s.Node) {
			out = append(out, s.Node)
		}
	}
	return out
}
