package preflight

import (
	"strings"
	"testing"
)

func good() Facts {
	return Facts{
		Arch: "amd64", Kernel: "6.1.0-18-amd64",
		Controllers: map[string]bool{"cpu": true, "memory": true, "pids": true},
		Overlay:     true, BrNetfilter: true, IPForward: true,
		PortsInUse:    map[int]bool{},
		DiskFreeBytes: 100 << 30, MemTotalBytes: 16 << 30,
		Hostname: "edge-01",
	}
}

var agent = Needs{Agent: true, Ports: []int{6443, 10250}}

func TestGoodMachinePasses(t *testing.T) {
	for _, r := range Check(good(), agent) {
		if r.Severity != OK {
			t.Errorf("%s: %s %s", r.Check, r.Severity, r.Message)
		}
	}
}

// One row per way a machine can be unfit; each must be caught with a fix.
func TestEachProblemIsReportedWithAFix(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*Facts)
		needs Needs
		check string
		sev   Severity
		fix   string
	}{
		{"arch", func(f *Facts) { f.Arch = "386" }, agent, "arch", Error, "amd64 or arm64"},
		{"old kernel", func(f *Facts) { f.Kernel = "3.10.0-1160.el7.x86_64" }, agent, "kernel", Error, "4.15"},
		{"no memory cgroup", func(f *Facts) { delete(f.Controllers, "memory") }, agent, "cgroups", Error, "cgroup_memory=1"},
		{"no overlay", func(f *Facts) { f.Overlay = false }, agent, "overlay", Error, "modprobe overlay"},
		{"no br_netfilter", func(f *Facts) { f.BrNetfilter = false }, agent, "br_netfilter", Error, "modprobe br_netfilter"},
		{"ip_forward off", func(f *Facts) { f.IPForward = false }, agent, "ip_forward", Warn, "sysctl"},
		{"api port taken", func(f *Facts) { f.PortsInUse[6443] = true }, agent, "port 6443", Error, "ss -ltnp"},
		{"kubelet port taken", func(f *Facts) { f.PortsInUse[10250] = true }, agent, "port 10250", Error, "ss -ltnp"},
		{"tiny disk", func(f *Facts) { f.DiskFreeBytes = 1 << 30 }, agent, "disk", Error, "k3s.dataDir"},
		{"small disk", func(f *Facts) { f.DiskFreeBytes = 10 << 30 }, agent, "disk", Warn, "20 GiB"},
		{"tiny memory", func(f *Facts) { f.MemTotalBytes = 512 << 20 }, agent, "memory", Error, "more memory"},
		{"small memory", func(f *Facts) { f.MemTotalBytes = 1536 << 20 }, agent, "memory", Warn, "2 GiB"},
		{"swap", func(f *Facts) { f.SwapOn = true }, agent, "swap", Warn, "swapoff -a"},
		{"bad hostname", func(f *Facts) { f.Hostname = "Edge_01" }, agent, "hostname", Error, "node.hostname"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good()
			tt.mod(&f)
			var found *Result
			for _, r := range Check(f, tt.needs) {
				if r.Severity != OK && r.Check != tt.check {
					t.Errorf("unexpected %s: %s", r.Check, r.Message)
				}
				if r.Check == tt.check {
					r := r
					found = &r
				}
			}
			if found == nil || found.Severity != tt.sev || !strings.Contains(found.Fix, tt.fix) {
				t.Fatalf("want %s %s with fix mentioning %q, got %+v", tt.check, tt.sev, tt.fix, found)
			}
		})
	}
}

func TestServerWithoutAgentSkipsRuntimeChecks(t *testing.T) {
	f := good()
	f.Overlay, f.BrNetfilter = false, false
	if failed := Failed(Check(f, Needs{Ports: []int{6443}})); len(failed) != 0 {
		t.Fatalf("control-plane-only server failed on %v", failed)
	}
}

func TestOwnK3sHoldingPortsIsFine(t *testing.T) {
	f := good()
	f.PortsInUse[6443] = true
	if failed := Failed(Check(f, Needs{Ports: []int{6443}, OursRunning: true})); len(failed) != 0 {
		t.Fatalf("re-run failed on its own k3s: %v", failed)
	}
}

// Gather reads this very machine: whatever it is, the facts must be sane.
func TestGatherThisMachine(t *testing.T) {
	f := Gather(t.TempDir(), "test-host", nil)
	if f.Kernel == "" || f.MemTotalBytes == 0 || f.DiskFreeBytes == 0 || len(f.Controllers) == 0 {
		t.Fatalf("facts not read: %+v", f)
	}
}
