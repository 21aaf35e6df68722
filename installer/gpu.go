package installer

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
)

// RuntimeDirs are where k3s looks for nvidia-container-runtime when it
// starts: the service PATH and the GPU Operator's toolkit directory.
var RuntimeDirs = []string{"/usr/local/nvidia/toolkit", "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// gpuStep checks, before anything is written, that the node can give pods
// the GPUs the config asks for: gpu.mode required refuses a node without a
// GPU or without the NVIDIA container runtime; auto warns and installs
// CPU-only.
type gpuStep struct {
	cfg  *config.Appliance
	host *host.Host
	lib  gpu.Library
}

func (s *gpuStep) Name() string { return "gpu" }

// runtime is the nvidia-container-runtime k3s will find, or "".
func (s *gpuStep) runtime() string { return nvidiaRuntime(s.host) }

func nvidiaRuntime(h *host.Host) string {
	for _, d := range RuntimeDirs {
		p := path.Join(d, "nvidia-container-runtime")
		if fi, err := h.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func (s *gpuStep) Plan(ctx context.Context) ([]engine.Change, error) {
	required := s.cfg.GPU.Mode == config.GPURequired
	rt := s.runtime()
	if s.cfg.K3s.DefaultRuntime == "nvidia" && rt == "" {
		return nil, fmt.Errorf("k3s.defaultRuntime is nvidia, but nvidia-container-runtime is not installed (looked in %s); install the NVIDIA container toolkit first, or unset k3s.defaultRuntime", strings.Join(RuntimeDirs, ", "))
	}
	inv, err := gpu.Detect(ctx, s.lib)
	if err != nil {
		if required {
			return nil, fmt.Errorf("gpu.mode is required, but the GPUs cannot be read: %w", err)
		}
		return []engine.Change{{Action: engine.Warn, Kind: engine.Check, Target: "gpu", Detail: err.Error() + "; installing CPU-only"}}, nil
	}
	if len(inv.GPUs) == 0 {
		if required {
			return nil, fmt.Errorf("gpu.mode is required, but this node has no usable NVIDIA GPU: %s; install the driver, or set gpu.mode: auto for a CPU-only appliance", inv.Reason)
		}
		return []engine.Change{{Action: engine.Warn, Kind: engine.Check, Target: "gpu", Detail: inv.Reason + "; installing CPU-only (gpu.mode: off silences this)"}}, nil
	}
	what := fmt.Sprintf("%d× %s", len(inv.GPUs), inv.GPUs[0].Name)
	if rt == "" {
		msg := what + " found, but nvidia-container-runtime is not installed, so pods cannot use them; install the NVIDIA container toolkit and run perch install again"
		if required {
			return nil, fmt.Errorf("gpu.mode is required: %s", msg)
		}
		return []engine.Change{{Action: engine.Warn, Kind: engine.Check, Target: "gpu", Detail: msg}}, nil
	}
	return nil, nil
}

func (s *gpuStep) Apply(context.Context, []engine.Change, *engine.Reporter) error { return nil }

// gpuLabelsStep makes the node's GPU labels (GPU Feature Discovery's
// names and perch.dev/gpu.*) match its GPUs once the node has
// registered: the device plugin schedules only on nvidia.com/gpu.present
// nodes, and a GPU that is gone takes its labels with it.
type gpuLabelsStep struct{ i *Installer }

func (s *gpuLabelsStep) Name() string { return "gpu-labels" }

func (s *gpuLabelsStep) want(ctx context.Context) map[string]string {
	if s.i.cfg.GPU.Mode == config.GPUOff {
		return map[string]string{}
	}
	inv, err := gpu.Detect(ctx, s.i.gpu)
	if err != nil {
		return map[string]string{} // the gpu step said why
	}
	return gpu.Labels(inv)
}

func (s *gpuLabelsStep) client() (kubernetes.Interface, error) {
	rc, err := s.i.env.NodeRESTConfig()
	if err != nil {
		return nil, err
	}
	rc.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(rc)
}

func (s *gpuLabelsStep) Plan(ctx context.Context) ([]engine.Change, error) {
	want := s.want(ctx)
	target := "node " + s.i.env.NodeName + " GPU labels"
	var have map[string]string
	if cs, err := s.client(); err == nil {
		if n, err := cs.CoreV1().Nodes().Get(ctx, s.i.env.NodeName, metav1.GetOptions{}); err == nil {
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

func (s *gpuLabelsStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	cs, err := s.client()
	if err != nil {
		return fmt.Errorf("gpu labels: %w", err)
	}
	ch, err := gpu.ApplyLabels(ctx, cs, s.i.env.NodeName, s.want(ctx))
	if err != nil {
		return err
	}
	if !ch.Empty() {
		r.Logf("node %s: %s", s.i.env.NodeName, describeLabels(ch))
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
