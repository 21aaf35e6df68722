package apps

import (
	"context"
	"fmt"
	"path"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	helmv1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
	"github.com/perchedge/perch/manifests/render"
)

// gpuNode is go-nvml's mock DGX A100: eight GPUs.
func gpuNode() *dgxa100.Server {
	s := dgxa100.New()
	s.InitFunc = func() nvml.Return { return nvml.SUCCESS }
	s.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	return s
}

// TestRedeployKeepsStreamsWhereTheyAre: the next render reads where the
// deployed HelmChart put each stream, so a camera added moves no other,
// whatever the ranking alone would have chosen.
func TestRedeployKeepsStreamsWhereTheyAre(t *testing.T) {
	h, err := host.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.GPU.Mode = config.GPUAuto
	for i := 1; i <= 12; i++ {
		cfg.Pipeline.Streams = append(cfg.Pipeline.Streams, config.Stream{Name: fmt.Sprintf("cam-%02d", i), URL: fmt.Sprintf("rtsp://192.0.2.%d/live", i)})
	}
	s := &appsStep{a: New(&node.Node{Cfg: &cfg, Host: h, GPU: gpuNode()})}
	slots := func() map[string]string {
		apps, _, err := s.desired(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range apps {
			if a.Name != render.Analytics {
				continue
			}
			if err := h.MkdirAll(path.Dir(s.dataPath(a.File)), 0o755); err != nil {
				t.Fatal(err)
			}
			if _, err := h.WriteFile(s.dataPath(a.File), a.YAML, 0o600); err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, st := range a.Values["streams"].([]any) {
				m := st.(map[string]any)
				out[m["name"].(string)] = m["slot"].(string)
			}
			return out
		}
		t.Fatal("no pipeline app rendered")
		return nil
	}
	first := slots()
	if len(first) != 12 {
		t.Fatalf("assigned %v", first)
	}
	// where an earlier config left them differs from the ranking's choice:
	// swap two streams' slots in the deployed manifest
	a, b := "cam-02", "cam-03"
	for i := 4; first[a] == first[b]; i++ {
		b = fmt.Sprintf("cam-%02d", i) // one on another slot
	}
	file := s.dataPath(path.Join(render.ManifestsDir, render.Analytics+".yaml"))
	raw, err := h.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var hc helmv1.HelmChart
	if err := yaml.Unmarshal(raw, &hc); err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(hc.Spec.ValuesContent), &vals); err != nil {
		t.Fatal(err)
	}
	for _, st := range vals["streams"].([]any) {
		m := st.(map[string]any)
		switch m["name"] {
		case a:
			m["slot"] = first[b]
		case b:
			m["slot"] = first[a]
		}
	}
	vc, err := yaml.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	hc.Spec.ValuesContent = string(vc)
	out, err := render.Encode(&hc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for k, v := range first {
		before[k] = v
	}
	before[a], before[b] = first[b], first[a]
	cfg.Pipeline.Streams = append(cfg.Pipeline.Streams[1:], config.Stream{Name: "cam-new", URL: "rtsp://192.0.2.99/live"})
	after := slots()
	for name, slot := range before {
		if name != "cam-01" && after[name] != slot {
			t.Errorf("%s moved from %s to %s when cam-01 left and cam-new came", name, slot, after[name])
		}
	}
	if after["cam-new"] == "" {
		t.Error("cam-new has no slot")
	}
}
