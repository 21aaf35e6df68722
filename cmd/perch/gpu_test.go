package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// This machine has no NVIDIA driver: the real NVML path (dlopen fails) must
// report zero GPUs and why, and exit 0. The mock-backed cases live in ./gpu.
func TestGPUDetectNoDriver(t *testing.T) {
	out, errOut, code := perch(t, "", "gpu", "detect", "--output", "json")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var r struct {
		GPUs   []json.RawMessage `json:"gpus"`
		Reason string            `json:"reason"`
		Labels map[string]string `json:"labels"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v in %q", err, out)
	}
	if r.GPUs == nil || len(r.GPUs) != 0 || !strings.Contains(r.Reason, "no NVIDIA driver") || len(r.Labels) != 0 {
		t.Errorf("got %s; want \"gpus\": [], a no-driver reason, no labels", out)
	}

	out, errOut, code = perch(t, "", "gpu", "detect")
	if code != exitOK || !strings.Contains(out, "gpus     0\n") || !strings.Contains(out, "no NVIDIA driver installed") {
		t.Errorf("text: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	if _, _, code = perch(t, "", "gpu", "detect", "--output", "yaml"); code != exitUsage {
		t.Errorf("--output yaml: exit %d, want %d", code, exitUsage)
	}
}
