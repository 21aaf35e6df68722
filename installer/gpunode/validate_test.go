package gpunode

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
)

func TestValidationJobSpec(t *testing.T) {
	j := validationJob("edge-01", "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", "abc")
	pod := j.Spec.Template.Spec
	if pod.RuntimeClassName == nil || *pod.RuntimeClassName != "nvidia" {
		t.Errorf("runtimeClassName %v, want nvidia", pod.RuntimeClassName)
	}
	if q := pod.Containers[0].Resources.Limits[gpuResource]; q.Value() != 1 {
		t.Errorf("GPU limit %v, want 1", q.String())
	}
	if pod.NodeSelector[corev1.LabelHostname] != "edge-01" || pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("pod spec %+v", pod)
	}
	if j.Labels[validatedLabel] != "abc" {
		t.Errorf("labels %v", j.Labels)
	}
	long := jobName(strings.Repeat("n", 80))
	if len(long) > 52 || len(validation.IsDNS1123Label(long)) > 0 {
		t.Errorf("job name %q (%d): must leave room for the pod suffix", long, len(long))
	}
}

func TestValidationImageChoice(t *testing.T) {
	for _, tt := range []struct {
		refs []string
		want string
	}{
		{[]string{"nvcr.io/nvidia/k8s-device-plugin:v0.17.0", "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"}, "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"},
		{[]string{"docker.io/library/nats:2.10", "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"}, "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"},
		{[]string{"docker.io/library/nats:2.10"}, ""},
	} {
		if got := validationImage(tt.refs); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.refs, got, tt.want)
		}
	}
}

// With go-nvml's mock GPUs and the runtime but no image to run nvidia-smi
// in, auto warns and required refuses; without the runtime the gpu step
// has already spoken and this one says nothing.
func TestGPUValidatePlan(t *testing.T) {
	for _, tt := range []struct {
		mode    config.GPUMode
		runtime bool
		warn    bool
		err     string
	}{
		{config.GPUAuto, true, true, ""},
		{config.GPURequired, true, false, "cannot be validated"},
		{config.GPUAuto, false, false, ""},
		{config.GPUOff, true, false, ""},
	} {
		cfg := config.Default()
		cfg.GPU.Mode = tt.mode
		cfg.K3s.Binary = "/bin/true"
		h, err := host.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if tt.runtime {
			h.WriteFile("/usr/bin/nvidia-container-runtime", []byte("#!/bin/sh\n"), 0o755)
		}
		cs, err := Validate(&node.Node{Cfg: &cfg, Host: h, Name: "edge-01", GPU: mockGPUs(8)}).Plan(context.Background())
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.mode, err, tt.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.mode, err)
		case tt.warn != (len(cs) == 1 && cs[0].Action == engine.Warn):
			t.Errorf("%s runtime=%v: plan %v", tt.mode, tt.runtime, cs)
		}
	}
}

// The wait for the previous validation Job to go ends with the context: an
// API server that never answers (here: nothing listens on its port) or a
// finalizer that never finishes must not hang the install, and Ctrl-C
// must stop it.
func TestWaitForOldJobEndsWithTheContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	s := &validateStep{poll: 40 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.waitGone(ctx, cs.BatchV1().Jobs(validateNamespace), "perch-gpu-validate-edge-01") }()
	time.Sleep(200 * time.Millisecond) // it is waiting, not done
	select {
	case err := <-done:
		t.Fatalf("returned before the job was gone or the context ended: %v", err)
	default:
	}
	cancel() // Ctrl-C
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "was not deleted") || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want one naming the job and the cancellation", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the wait ignored its context: an install would hang here forever")
	}
}
