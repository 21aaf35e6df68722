// Package gpunode gives pods the node's GPUs: a check before anything is
// written that the node can (gpu), the node's GPU labels once it has
// registered (gpu-labels), and proof that a pod gets a GPU (gpu-validate).
package gpunode

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/node"
)

// Check refuses, before anything is written, a node that cannot give pods
// the GPUs the config asks for: gpu.mode required refuses a node without a
// GPU or without the NVIDIA container runtime; auto warns and installs
// CPU-only.
func Check(n *node.Node) engine.Step { return &checkStep{n} }

type checkStep struct{ n *node.Node }

func (s *checkStep) Name() string { return "gpu" }

func (s *checkStep) Plan(ctx context.Context) ([]engine.Change, error) {
	cfg := s.n.Cfg
	rt := gpu.FindRuntime(s.n.Host.Stat)
	if cfg.K3s.DefaultRuntime == "nvidia" && rt == "" {
		return nil, fmt.Errorf("k3s.defaultRuntime is nvidia, but nvidia-container-runtime is not installed (looked in %s); install the NVIDIA container toolkit first, or unset k3s.defaultRuntime", strings.Join(gpu.RuntimeDirs, ", "))
	}
	inv, why, err := s.n.GPUs(ctx)
	switch {
	case err != nil:
		return nil, err
	case inv == nil && why != "":
		return []engine.Change{{Action: engine.Warn, Kind: engine.Check, Target: "gpu", Detail: why + "; installing CPU-only (gpu.mode: off silences this)"}}, nil
	case inv == nil:
		return nil, nil
	}
	what := fmt.Sprintf("%d× %s", len(inv.GPUs), inv.GPUs[0].Name)
	if rt == "" {
		msg := what + " found, but nvidia-container-runtime is not installed, so pods cannot use them; install the NVIDIA container toolkit and run perch install again"
		if cfg.GPU.Mode == config.GPURequired {
			return nil, fmt.Errorf("gpu.mode is required: %s", msg)
		}
		return []engine.Change{{Action: engine.Warn, Kind: engine.Check, Target: "gpu", Detail: msg}}, nil
	}
	return nil, nil
}

func (s *checkStep) Apply(context.Context, []engine.Change, *engine.Reporter) error { return nil }

// Labels makes the node's GPU labels (GPU Feature Discovery's names and
// perch.dev/gpu.*) match its GPUs once the node has registered: the device
// plugin schedules only on nvidia.com/gpu.present nodes, and a GPU that is
// gone takes its labels with it.
func Labels(n *node.Node) engine.Step { return &labelsStep{n} }

type labelsStep struct{ n *node.Node }

func (s *labelsStep) Name() string { return "gpu-labels" }

func (s *labelsStep) want(ctx context.Context) map[string]string {
	inv, _, _ := s.n.GPUs(ctx) // the gpu step said what is wrong
	if inv == nil {
		return map[string]string{}
	}
	return gpu.Labels(inv)
}

func (s *labelsStep) client() (kubernetes.Interface, error) {
	rc, err := s.n.NodeRESTConfig()
	if err != nil {
		return nil, err
	}
	rc.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(rc)
}

func (s *labelsStep) Plan(ctx context.Context) ([]engine.Change, error) {
	want := s.want(ctx)
	target := "node " + s.n.Name + " GPU labels"
	var have map[string]string
	if cs, err := s.client(); err == nil {
		if n, err := cs.CoreV1().Nodes().Get(ctx, s.n.Name, metav1.GetOptions{}); err == nil {
			have = n.Labels
		}
	}
	if have == nil {
		if len(want) == 0 {
			return nil, nil
		}
		return []engine.Change{{Action: engine.Update, Kind: engine.Node, Target: target, Detail: fmt.Sprintf("%d labels, once the node has registered", len(want))}}, nil
	}
	ch := gpu.DiffLabels(have, want)
	if ch.Empty() {
		return nil, nil
	}
	return []engine.Change{{Action: engine.Update, Kind: engine.Node, Target: target, Detail: describeLabels(ch)}}, nil
}

func (s *labelsStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	cs, err := s.client()
	if err != nil {
		return fmt.Errorf("gpu labels: %w", err)
	}
	ch, err := gpu.ApplyLabels(ctx, cs, s.n.Name, s.want(ctx))
	if err != nil {
		return err
	}
	if !ch.Empty() {
		r.Logf("node %s: %s", s.n.Name, describeLabels(ch))
	}
	return nil
}

func describeLabels(ch gpu.LabelChange) string {
	var parts []string
	if len(ch.Set) > 0 {
		keys := slices.Sorted(maps.Keys(ch.Set))
		parts = append(parts, "set "+strings.Join(keys, ", "))
	}
	if len(ch.Removed) > 0 {
		parts = append(parts, "remove "+strings.Join(ch.Removed, ", "))
	}
	return strings.Join(parts, "; ")
}
