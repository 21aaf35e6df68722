package apps

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	helmfake "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
	"github.com/perchedge/perch/manifests/render"
)

// noGPU is an NVML without a driver: the node has no GPU.
type noGPU struct{ nvml.Interface }

func (noGPU) Init() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }

// clusterNode is a Ready node.
func clusterNode(name string, created time.Time, labels map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, CreationTimestamp: metav1.NewTime(created)},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

// gpuLabels are what a node's install labels it with for n mock A100s.
func gpuLabels(t *testing.T, n int) map[string]string {
	t.Helper()
	inv := &gpu.Inventory{}
	for i := range n {
		inv.GPUs = append(inv.GPUs, gpu.Device{Index: i, Name: "NVIDIA A100-SXM4-40GB", MemoryMiB: 40960})
	}
	return gpu.Labels(inv)
}

// TestServersRenderTheSameApps: two servers of one cluster with different
// hostnames and GPUs of their own render byte-identical apps from the
// cluster's facts, so neither undoes the other's HelmChart; the worker
// slots are every GPU agent's, not the rendering server's.
func TestServersRenderTheSameApps(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	kube := fake.NewClientset(
		clusterNode("srv-1", t0, map[string]string{controlPlaneLabel: "true"}),
		clusterNode("srv-2", t0.Add(time.Hour), map[string]string{controlPlaneLabel: "true"}),
		clusterNode("srv-3", t0.Add(2*time.Hour), map[string]string{controlPlaneLabel: "true"}),
		clusterNode("gpu-a", t0.Add(3*time.Hour), gpuLabels(t, 2)),
		clusterNode("gpu-b", t0.Add(3*time.Hour), gpuLabels(t, 1)),
		clusterNode("cpu-c", t0.Add(3*time.Hour), nil),
	)
	helm := helmfake.NewSimpleClientset()

	var streams []config.Stream
	for i := 1; i <= 7; i++ {
		streams = append(streams, config.Stream{Name: fmt.Sprintf("cam-%d", i), URL: fmt.Sprintf("rtsp://192.0.2.%d/live", i)})
	}
	server := func(name string, g nvml.Interface) *appsStep {
		h, err := host.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.Node.Hostname = name
		cfg.GPU.Sharing.Replicas = 2
		cfg.Pipeline.Streams = streams
		a := New(&node.Node{Cfg: &cfg, Host: h, Name: name, GPU: g})
		a.kube = &clients{kube, helm}
		return &appsStep{a: a}
	}
	// srv-2 has eight GPUs of its own, which its labels would count once
	// its install wrote them; srv-3 none
	s2, s3 := server("srv-2", gpuNode()), server("srv-3", noGPU{})

	ctx := context.Background()
	first, _, err := s2.desired(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	an := find(t, first, render.Analytics)
	if got := an.Values["gpu"].(map[string]any)["count"]; got != 3 {
		t.Errorf("gpu.count %v, want 3: the GPU agents' two and one", got)
	}
	slots := map[string]int{}
	for _, st := range an.Values["streams"].([]any) {
		slots[st.(map[string]any)["slot"].(string)]++
	}
	if len(slots) != 6 {
		t.Errorf("streams on %d slots %v, want 6 (3 GPUs x 2 replicas)", len(slots), slots)
	}
	mon := find(t, first, render.Monitoring)
	if site := mon.Values["externalLabels"].(map[string]any)["site"]; site != "srv-1" {
		t.Errorf("site %v, want srv-1, the first server", site)
	}

	// k3s applies srv-2's HelmChart; srv-3 renders next
	if _, err := helm.HelmV1().HelmCharts(render.HelmChartNamespace).Create(ctx, an.HelmChart, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	second, _, err := s3.desired(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(second) {
		t.Fatalf("srv-2 renders %d apps, srv-3 %d", len(first), len(second))
	}
	for i := range first {
		if first[i].Name != second[i].Name || !bytes.Equal(first[i].YAML, second[i].YAML) || !bytes.Equal(first[i].Chart.Data, second[i].Chart.Data) {
			t.Errorf("app %s: srv-2 and srv-3 render different bytes:\n%s\n---\n%s", first[i].Name, first[i].YAML, second[i].YAML)
		}
	}

	// streams that were placed stay where the deployed HelmChart has them,
	// whichever server renders: move one in the API by hand
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(an.HelmChart.Spec.ValuesContent), &vals); err != nil {
		t.Fatal(err)
	}
	st := vals["streams"].([]any)[0].(map[string]any)
	moved := map[string]string{"w0": "w5"}[st["slot"].(string)]
	if moved == "" {
		moved = "w0"
	}
	st["slot"] = moved
	vc, _ := yaml.Marshal(vals)
	hc := an.HelmChart.DeepCopy()
	hc.Spec.ValuesContent = string(vc)
	if _, err := helm.HelmV1().HelmCharts(render.HelmChartNamespace).Update(ctx, hc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	third, _, err := s3.desired(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := assignedIn(find(t, third, render.Analytics).HelmChart.Spec.ValuesContent)[st["name"].(string)]; got != moved {
		t.Errorf("%s is on %s after srv-3 rendered, want %s where the cluster's HelmChart has it", st["name"], got, moved)
	}
}

// A node label written by hand is input: a count that is not one stops
// the render with the node named, rather than guessing slots.
func TestClusterFactsRefuseBadLabels(t *testing.T) {
	l := gpuLabels(t, 1)
	l[gpu.LabelWhole] = "lots"
	s := &appsStep{a: New(&node.Node{Cfg: func() *config.Appliance { c := config.Default(); return &c }(), GPU: noGPU{}})}
	s.a.kube = &clients{fake.NewClientset(clusterNode("gpu-x", time.Now(), l)), helmfake.NewSimpleClientset()}
	h, err := host.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.a.n.Host = h
	_, err = s.clusterFacts(context.Background(), true)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("node gpu-x: label perch.dev/gpu.whole")) {
		t.Errorf("got %v, want the node and label named", err)
	}
}

func find(t *testing.T, apps []render.App, name string) render.App {
	t.Helper()
	for _, a := range apps {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no app %s rendered", name)
	return render.App{}
}
