package wizard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/preflight"
)

// fakeBackend is a deterministic Backend for golden screens: fixed
// hardware, fixed bundles, scripted engine events with fixed times. Holds
// stop verification or the install half-way, so a screen can be captured
// mid-flight; closing them (or cancelling) lets the work finish.
type fakeBackend struct {
	found      []bundles.Found
	verifyHold chan struct{}
	verifyErr  error
	installErr error
	// installHold stops the install after the first half of its events.
	installHold chan struct{}

	mu    sync.Mutex
	saves map[string][]byte
}

func newFake() *fakeBackend { return &fakeBackend{saves: map[string][]byte{}} }

var t0 = time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)

func (f *fakeBackend) Discover(context.Context) (*Hardware, error) {
	return &Hardware{
		Hostname:      "edge-01",
		CPUModel:      "AMD EPYC 7313P 16-Core Processor",
		CPUs:          32,
		MemoryBytes:   64 << 30,
		DiskFreeBytes: 412 << 30,
		GPUs: []gpu.Device{
			{Index: 0, Name: "NVIDIA L4", MemoryMiB: 23034},
			{Index: 1, Name: "NVIDIA L4", MemoryMiB: 23034},
		},
		GPUDriver:     "550.54.15",
		NvidiaRuntime: "/usr/bin/nvidia-container-runtime",
		Preflight: []preflight.Result{
			{Check: "arch", Severity: preflight.OK, Message: "amd64"},
			{Check: "kernel", Severity: preflight.OK, Message: "6.1.0-18-amd64"},
			{Check: "cgroups", Severity: preflight.OK, Message: "cgroup v2"},
			{Check: "overlay", Severity: preflight.OK},
			{Check: "br_netfilter", Severity: preflight.Error, Message: "the br_netfilter module is not loaded: pod traffic would bypass iptables",
				Fix: "run: modprobe br_netfilter (and add br_netfilter to /etc/modules-load.d/k3s.conf)"},
			{Check: "ip_forward", Severity: preflight.Warn, Message: "net.ipv4.ip_forward is 0",
				Fix: "k3s turns it on at start; to keep it set: sysctl -w net.ipv4.ip_forward=1"},
			{Check: "port 6443", Severity: preflight.OK, Message: "free"},
			{Check: "port 10250", Severity: preflight.OK, Message: "free"},
			{Check: "disk", Severity: preflight.OK},
			{Check: "memory", Severity: preflight.OK},
			{Check: "hostname", Severity: preflight.OK},
		},
		Interfaces: []Interface{{Name: "eno1", IP: "192.0.2.21"}, {Name: "eno2", IP: "198.51.100.7"}},
		DefaultIP:  "192.0.2.21",
	}, nil
}

func (f *fakeBackend) FindBundles(context.Context) ([]bundles.Found, error) {
	return f.found, nil
}

func (f *fakeBackend) VerifyBundle(ctx context.Context, src, key string, progress func(done, total int64)) (*BundleInfo, error) {
	const total = 2_900 << 20
	progress(0, total)
	progress(total*45/100, total)
	if f.verifyHold != nil {
		select {
		case <-f.verifyHold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.verifyErr != nil {
		return nil, f.verifyErr
	}
	progress(total, total)
	return &BundleInfo{
		Source: src, Name: "site-a", Version: "1.4.0", Arch: "amd64", K3sVersion: "v1.31.1+k3s1",
		Images: []string{"docker.io/library/registry:2", "nvcr.io/nvidia/k8s-device-plugin:v0.16.2", "docker.io/perch/pipeline:1.4.0"},
		Charts: []string{"perch-pipeline 1.4.0", "nvidia-device-plugin 0.16.2"},
		Files:  214, Size: total, Signer: "timestamp:1793525400 file:perch-bundle.json",
	}, nil
}

func (f *fakeBackend) Save(p string, data []byte) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saves[p] = append([]byte(nil), data...)
	return "/target" + p, nil
}

func (f *fakeBackend) saved(p string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saves[p]
}

var fakeSteps = []string{"preflight", "gpu", "bundle", "perch-binary", "k3s-binary", "registry-tls", "registry-load", "k3s-config", "k3s-service", "k3s-ready", "kubeconfig"}

func (f *fakeBackend) Plan(_ context.Context, cfg config.Appliance) (*PlanResult, error) {
	p := engine.Plan{}
	for _, s := range fakeSteps {
		var cs []engine.Change
		switch s {
		case "preflight":
		case "gpu":
		case "k3s-ready":
			cs = []engine.Change{{Action: engine.Wait, Kind: engine.Node, Target: "node " + cfg.Node.Hostname + " to be Ready", Detail: "timeout 5m0s"}}
		case "k3s-service":
			cs = []engine.Change{{Action: engine.Create, Kind: engine.Service, Target: "k3s", Detail: "init systemd"}, {Action: engine.Start, Kind: engine.Service, Target: "k3s", Detail: "systemd"}}
		default:
			cs = []engine.Change{{Action: engine.Create, Kind: engine.File, Target: "/etc/perch/" + s, Detail: "mode 0600"}}
		}
		p.Steps = append(p.Steps, engine.StepPlan{Step: s, Changes: cs})
	}
	return &PlanResult{Node: fmt.Sprintf("node %s: %s, root /, init systemd", cfg.Node.Hostname, cfg.Node.Role), Plan: p}, nil
}

func (f *fakeBackend) Install(ctx context.Context, cfg config.Appliance, sink engine.Sink) error {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	const size = 2_900 << 20
	first := []engine.Event{
		{Time: at(0), Type: engine.Progress, Step: "bundle-verify", Message: "verifying site-a.tar.zst", Bytes: 0, Total: size},
		{Time: at(14), Type: engine.Progress, Step: "bundle-verify", Message: "verifying site-a.tar.zst", Bytes: size, Total: size, Rate: size / 14},
		{Time: at(14), Type: engine.Log, Step: "bundle-verify", Message: "site-a 1.4.0 verified: 214 files, 2.8 GiB"},
		{Time: at(14.1), Type: engine.RunStarted, Message: "install started"},
		{Time: at(14.1), Type: engine.StepStarted, Step: "preflight", Message: "checking"},
		{Time: at(14.2), Type: engine.StepSkipped, Step: "preflight"},
		{Time: at(14.2), Type: engine.StepStarted, Step: "gpu", Message: "checking"},
		{Time: at(14.3), Type: engine.StepSkipped, Step: "gpu"},
		{Time: at(14.3), Type: engine.StepStarted, Step: "bundle", Message: "checking"},
		{Time: at(14.5), Type: engine.Log, Step: "bundle", Message: "bundle /var/lib/perch/bundles/site-a-1.4.0 in place"},
		{Time: at(14.5), Type: engine.StepDone, Step: "bundle", Duration: 0.2},
		{Time: at(14.5), Type: engine.StepStarted, Step: "perch-binary", Message: "checking"},
		{Time: at(15.0), Type: engine.StepDone, Step: "perch-binary", Duration: 0.5},
		{Time: at(15.0), Type: engine.StepStarted, Step: "k3s-binary", Message: "checking"},
		{Time: at(15.0), Type: engine.StepDone, Step: "k3s-binary", Duration: 0.4},
		{Time: at(15.4), Type: engine.StepStarted, Step: "registry-tls", Message: "checking"},
		{Time: at(15.6), Type: engine.StepDone, Step: "registry-tls", Duration: 0.2},
		{Time: at(15.6), Type: engine.StepStarted, Step: "registry-load", Message: "checking"},
		{Time: at(21.6), Type: engine.Progress, Step: "registry-load", Message: "loading images", Bytes: 1_200 << 20, Total: 2_600 << 20, Rate: 200 << 20},
		{Time: at(21.6), Type: engine.Log, Step: "registry-load", Message: "docker.io/perch/pipeline:1.4.0: 41 blobs, 12 already there"},
	}
	for _, e := range first {
		sink(e)
	}
	if f.installHold != nil {
		select {
		case <-f.installHold:
		case <-ctx.Done():
			sink(engine.Event{Time: at(23), Type: engine.StepFailed, Step: "registry-load", Error: "interrupted; run the same command again to resume", Duration: 7.4})
			sink(engine.Event{Time: at(23), Type: engine.RunFailed, Message: "install failed in step registry-load; fix the cause and run it again: completed steps are not redone"})
			return &engine.StepError{Step: "registry-load", Err: errors.New("interrupted; run the same command again to resume")}
		}
	}
	rest := []engine.Event{
		{Time: at(28), Type: engine.StepDone, Step: "registry-load", Duration: 12.4},
		{Time: at(28), Type: engine.StepStarted, Step: "k3s-config"},
		{Time: at(28.1), Type: engine.StepDone, Step: "k3s-config", Duration: 0.1},
		{Time: at(28.1), Type: engine.StepStarted, Step: "k3s-service"},
		{Time: at(29), Type: engine.StepDone, Step: "k3s-service", Duration: 0.9},
		{Time: at(29), Type: engine.StepStarted, Step: "k3s-ready"},
		{Time: at(41), Type: engine.StepDone, Step: "k3s-ready", Duration: 12},
		{Time: at(41), Type: engine.StepStarted, Step: "kubeconfig"},
		{Time: at(41.1), Type: engine.StepDone, Step: "kubeconfig", Duration: 0.1},
		{Time: at(41.1), Type: engine.RunDone, Message: "install complete: 15 created, 0 updated, 0 deleted, 2 started, 0 restarted"},
	}
	for _, e := range rest {
		sink(e)
	}
	return f.installErr
}
