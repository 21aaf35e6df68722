//go:build integration

package main

import (
	"context"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/perchedge/perch/gpu"
)

// TestIntegrationGPULabelsOnNode puts the labels of go-nvml's mock DGX
// A100 (no GPU can be had here) on a Node of the real k3s, then takes them
// off again as if the GPUs were gone, leaving every other label alone. The
// server runs without an agent, so the test registers the Node object
// itself, as a kubelet would.
func TestIntegrationGPULabelsOnNode(t *testing.T) {
	s := newSandbox(t)
	s.install()
	cs := s.client()
	ctx := context.Background()
	_, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   "gpu-node",
		Labels: map[string]string{"perch.dev/site": "a", "nvidia.com/gpu.product": "Old-GPU", "nvidia.com/gpu.replicas": "4"},
	}}, metav1.CreateOptions{})
	must(t, err)

	mock := dgxa100.New()
	mock.InitFunc = func() nvml.Return { return nvml.SUCCESS }
	mock.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	inv, err := gpu.Detect(ctx, mock)
	must(t, err)
	want := gpu.Labels(inv)

	ch, err := gpu.ApplyLabels(ctx, cs, "gpu-node", want)
	must(t, err)
	if len(ch.Set) != len(want) || len(ch.Removed) != 1 || ch.Removed[0] != "nvidia.com/gpu.replicas" {
		t.Errorf("first apply: %+v", ch)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, "gpu-node", metav1.GetOptions{})
	must(t, err)
	for k, v := range want {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if n.Labels["perch.dev/site"] != "a" {
		t.Errorf("an unrelated label was touched: %v", n.Labels)
	}
	rv := n.ResourceVersion

	ch, err = gpu.ApplyLabels(ctx, cs, "gpu-node", want)
	must(t, err)
	n, _ = cs.CoreV1().Nodes().Get(ctx, "gpu-node", metav1.GetOptions{})
	if !ch.Empty() || n.ResourceVersion != rv {
		t.Errorf("second apply changed the node: %+v (resourceVersion %s -> %s)", ch, rv, n.ResourceVersion)
	}

	// the GPUs are gone: their labels go, the site label stays
	ch, err = gpu.ApplyLabels(ctx, cs, "gpu-node", gpu.Labels(&gpu.Inventory{}))
	must(t, err)
	n, _ = cs.CoreV1().Nodes().Get(ctx, "gpu-node", metav1.GetOptions{})
	if len(ch.Removed) != len(want) || len(n.Labels) != 1 || n.Labels["perch.dev/site"] != "a" {
		t.Errorf("after the GPUs went: %+v, labels %v", ch, n.Labels)
	}
}
