package installer

import (
	"context"
	"fmt"
	"path"
	"strings"

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
func (s *gpuStep) runtime() string {
	for _, d := range RuntimeDirs {
		p := path.Join(d, "nvidia-container-runtime")
		if fi, err := s.host.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
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
