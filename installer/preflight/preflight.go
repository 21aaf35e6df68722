// Package preflight checks that a machine can run k3s before anything is
// written, and says how to fix what it cannot.
package preflight

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Facts is what the checks look at. Gather reads them from the machine;
// tests write them down.
type Facts struct {
	Arch          string // GOARCH of this perch binary
	Kernel        string // 6.1.0-18-amd64
	CgroupV2      bool
	Controllers   map[string]bool // enabled cgroup controllers
	Overlay       bool
	BrNetfilter   bool
	IPForward     bool
	PortsInUse    map[int]bool
	DiskFreeBytes uint64 // at the k3s data dir
	MemTotalBytes uint64
	SwapOn        bool
	Hostname      string
}

// Needs says what the node is going to run, since a control-plane-only
// server needs no container runtime.
type Needs struct {
	Agent bool  // runs pods: needs overlay, br_netfilter, kubelet port
	Ports []int // ports that must be free
	// Ours are ports already held by the k3s Perch installed, which a
	// re-run must not report as conflicts.
	OursRunning bool
}

// Severity of a result: errors stop the install, warnings are shown.
type Severity string

const (
	OK    Severity = "ok"
	Warn  Severity = "warning"
	Error Severity = "error"
)

type Result struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
}

const (
	minMemory   = 1 << 30
	lowMemory   = 2 << 30
	minDisk     = 4 << 30
	lowDisk     = 20 << 30
	minKernelMj = 4
	minKernelMn = 15
)

// Check runs every check against the facts.
func Check(f Facts, n Needs) []Result {
	var rs []Result
	add := func(check string, sev Severity, msg, fix string) {
		rs = append(rs, Result{Check: check, Severity: sev, Message: msg, Fix: fix})
	}
	switch f.Arch {
	case "amd64", "arm64":
		add("arch", OK, f.Arch, "")
	default:
		add("arch", Error, fmt.Sprintf("%s is not supported", f.Arch), "use an amd64 or arm64 machine")
	}
	if mj, mn, ok := kernelVersion(f.Kernel); !ok {
		add("kernel", Warn, fmt.Sprintf("cannot read kernel version %q", f.Kernel), "")
	} else if mj < minKernelMj || (mj == minKernelMj && mn < minKernelMn) {
		add("kernel", Error, fmt.Sprintf("kernel %s is older than %d.%d", f.Kernel, minKernelMj, minKernelMn), "upgrade the kernel to 4.15 or newer")
	} else {
		add("kernel", OK, f.Kernel, "")
	}
	var missing []string
	for _, c := range []string{"cpu", "memory", "pids"} {
		if !f.Controllers[c] {
			missing = append(missing, c)
		}
	}
	cg := "cgroup v1"
	if f.CgroupV2 {
		cg = "cgroup v2"
	}
	if len(missing) > 0 {
		add("cgroups", Error, fmt.Sprintf("%s without the %s controller(s)", cg, strings.Join(missing, ", ")),
			"enable them on the kernel command line (cgroup_enable=memory cgroup_memory=1 on Raspberry Pi OS) and reboot")
	} else {
		add("cgroups", OK, cg, "")
	}
	if n.Agent {
		if f.Overlay {
			add("overlay", OK, "overlay filesystem available", "")
		} else {
			add("overlay", Error, "the overlay filesystem is not available", "run: modprobe overlay (and add overlay to /etc/modules-load.d/k3s.conf)")
		}
		if f.BrNetfilter {
			add("br_netfilter", OK, "bridge netfilter loaded", "")
		} else {
			add("br_netfilter", Error, "the br_netfilter module is not loaded: pod traffic would bypass iptables",
				"run: modprobe br_netfilter (and add br_netfilter to /etc/modules-load.d/k3s.conf)")
		}
		if !f.IPForward {
			add("ip_forward", Warn, "net.ipv4.ip_forward is 0", "k3s turns it on at start; to keep it set: sysctl -w net.ipv4.ip_forward=1")
		}
	}
	for _, p := range n.Ports {
		switch {
		case !f.PortsInUse[p]:
			add(fmt.Sprintf("port %d", p), OK, "free", "")
		case n.OursRunning:
			add(fmt.Sprintf("port %d", p), OK, "held by the k3s this install manages", "")
		default:
			add(fmt.Sprintf("port %d", p), Error, fmt.Sprintf("port %d is already in use by another program", p),
				fmt.Sprintf("stop it (find it with: ss -ltnp 'sport = :%d'), or uninstall a k3s not installed by perch", p))
		}
	}
	switch {
	case f.DiskFreeBytes < minDisk:
		add("disk", Error, fmt.Sprintf("%s free at the k3s data dir, need at least %s", gib(f.DiskFreeBytes), gib(minDisk)), "free space or point k3s.dataDir at a larger disk")
	case f.DiskFreeBytes < lowDisk:
		add("disk", Warn, fmt.Sprintf("%s free at the k3s data dir; images and video need more", gib(f.DiskFreeBytes)), "use a disk with 20 GiB or more free")
	default:
		add("disk", OK, gib(f.DiskFreeBytes)+" free", "")
	}
	switch {
	case f.MemTotalBytes < minMemory:
		add("memory", Error, fmt.Sprintf("%s of memory, k3s needs at least %s", gib(f.MemTotalBytes), gib(minMemory)), "use a machine with more memory")
	case f.MemTotalBytes < lowMemory:
		add("memory", Warn, fmt.Sprintf("%s of memory is tight for a server", gib(f.MemTotalBytes)), "2 GiB or more is recommended")
	default:
		add("memory", OK, gib(f.MemTotalBytes), "")
	}
	if f.SwapOn {
		add("swap", Warn, "swap is on: pods may be slow and memory limits less exact", "turn it off: swapoff -a, and remove it from /etc/fstab")
	}
	if msgs := validation.IsDNS1123Subdomain(f.Hostname); len(msgs) > 0 {
		add("hostname", Error, fmt.Sprintf("hostname %q is not a valid node name: %s", f.Hostname, msgs[0]),
			"set node.hostname in the config to a lowercase name such as edge-01")
	} else {
		add("hostname", OK, f.Hostname, "")
	}
	return rs
}

// Failed returns the errors among results.
func Failed(rs []Result) []Result {
	var out []Result
	for _, r := range rs {
		if r.Severity == Error {
			out = append(out, r)
		}
	}
	return out
}

func kernelVersion(s string) (int, int, bool) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	mj, err1 := strconv.Atoi(parts[0])
	mn, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return mj, mn, err1 == nil && err2 == nil
}

func gib(n uint64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

// Gather reads the facts of this machine. dataDir is the real path where
// k3s will keep its data (or the nearest existing parent is measured).
func Gather(dataDir, hostname string, ports []int) Facts {
	f := Facts{Arch: runtime.GOARCH, Hostname: hostname, PortsInUse: map[int]bool{}, Controllers: map[string]bool{}}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		f.Kernel = cstr(u.Release[:])
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		f.CgroupV2 = true
		data, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		for _, c := range strings.Fields(string(data)) {
			f.Controllers[c] = true
		}
	} else if data, err := os.ReadFile("/proc/cgroups"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) == 4 && !strings.HasPrefix(fs[0], "#") && fs[3] == "1" {
				f.Controllers[fs[0]] = true
			}
		}
	}
	if data, err := os.ReadFile("/proc/filesystems"); err == nil {
		f.Overlay = bytes.Contains(data, []byte("\toverlay\n"))
	}
	_, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables")
	f.BrNetfilter = err == nil
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil {
		f.IPForward = strings.TrimSpace(string(data)) == "1"
	}
	for _, p := range ports {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			f.PortsInUse[p] = true
			continue
		}
		l.Close()
	}
	for d := dataDir; ; d = filepath.Dir(d) {
		var st syscall.Statfs_t
		if syscall.Statfs(d, &st) == nil {
			f.DiskFreeBytes = st.Bavail * uint64(st.Bsize)
			break
		}
		if d == "/" {
			break
		}
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		f.MemTotalBytes = si.Totalram * uint64(si.Unit)
	}
	if data, err := os.ReadFile("/proc/swaps"); err == nil {
		f.SwapOn = len(bytes.Split(bytes.TrimSpace(data), []byte("\n"))) > 1
	}
	return f
}

func cstr(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}
