package gpunode

import (
	"context"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
)

// The GPUs come from go-nvml's own mock (8× A100): no GPU can be had here.
func mockGPUs(n int) *dgxa100.Server {
	// n is 8 (the mock's machine) or 0 (no driver)
	s := dgxa100.New()
	s.InitFunc = func() nvml.Return { return nvml.SUCCESS }
	s.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	if n == 0 {
		s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	}
	return s
}

func TestGPUStepByModeAndRuntime(t *testing.T) {
	tests := []struct {
		name    string
		mode    config.GPUMode
		gpus    int
		runtime bool
		warn    string // a warning in the plan
		err     string // the plan is refused
	}{
		{"auto, GPUs and runtime", config.GPUAuto, 8, true, "", ""},
		{"auto, no driver", config.GPUAuto, 0, false, "no NVIDIA driver installed", ""},
		{"auto, GPUs without runtime", config.GPUAuto, 8, false, "nvidia-container-runtime is not installed", ""},
		{"required, GPUs and runtime", config.GPURequired, 8, true, "", ""},
		{"required, no driver", config.GPURequired, 0, false, "", "gpu.mode is required, but this node has no usable NVIDIA GPU"},
		{"required, GPUs without runtime", config.GPURequired, 8, false, "", "install the NVIDIA container toolkit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := host.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if tt.runtime {
				h.WriteFile("/usr/bin/nvidia-container-runtime", []byte("#!/bin/sh\n"), 0o755)
			}
			cfg := config.Default()
			cfg.GPU.Mode = tt.mode
			s := Check(&node.Node{Cfg: &cfg, Host: h, GPU: mockGPUs(tt.gpus)})
			cs, err := s.Plan(context.Background())
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
			case err != nil:
				t.Fatal(err)
			case tt.warn == "":
				if len(cs) != 0 {
					t.Errorf("plan %v, want nothing", cs)
				}
			default:
				if len(cs) != 1 || cs[0].Action != engine.Warn || !strings.Contains(cs[0].Detail, tt.warn) {
					t.Errorf("plan %v, want one warning with %q", cs, tt.warn)
				}
			}
		})
	}
}

func TestDefaultRuntimeNvidiaNeedsTheRuntime(t *testing.T) {
	h, _ := host.Open(t.TempDir())
	cfg := config.Default()
	cfg.K3s.DefaultRuntime = "nvidia"
	_, err := Check(&node.Node{Cfg: &cfg, Host: h, GPU: mockGPUs(8)}).Plan(context.Background())
	if err == nil || !strings.Contains(err.Error(), "k3s.defaultRuntime is nvidia") {
		t.Fatalf("err = %v", err)
	}
}
