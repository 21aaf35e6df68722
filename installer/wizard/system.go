package wizard

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/preflight"
)

// System is the Backend of a real install: this machine, its media, and the
// installer writing under Root.
type System struct {
	Root string // --root
	Init string // --init
	// GPU reads the GPUs; nil is the machine's own NVML.
	GPU gpu.Library
}

var _ Backend = (*System)(nil)

func (s *System) root() string {
	if s.Root == "" {
		return "/"
	}
	return s.Root
}

func (s *System) Discover(ctx context.Context) (*Hardware, error) {
	hw := &Hardware{CPUs: runtime.NumCPU(), CPUModel: cpuModel()}
	hn, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("read hostname: %w", err)
	}
	hw.Hostname = strings.ToLower(hn)
	// The role is not chosen yet: check as for a server that runs pods,
	// the most a node needs. The plan checks again for the chosen role.
	needs := preflight.Needs{Agent: true, Ports: []int{6443, 10250}}
	dataDir := filepath.Join(s.root(), config.Default().K3s.DataDir)
	facts := preflight.Gather(dataDir, hw.Hostname, needs.Ports)
	hw.Preflight = preflight.Check(facts, needs)
	hw.MemoryBytes, hw.DiskFreeBytes = facts.MemTotalBytes, facts.DiskFreeBytes

	lib := s.GPU
	if lib == nil {
		lib = gpu.Open()
	}
	inv, err := gpu.Detect(ctx, lib)
	switch {
	case err != nil:
		hw.GPUNote = err.Error()
	default:
		hw.GPUs, hw.GPUDriver, hw.GPUNote = inv.GPUs, inv.DriverVersion, inv.Reason
	}
	// through the host layer, as the install's gpu step looks, so --root
	// is honoured the same way
	if h, err := host.Open(s.root()); err == nil {
		hw.NvidiaRuntime = gpu.FindRuntime(h.Stat)
		h.Close()
	}
	hw.Interfaces = interfaces()
	hw.DefaultIP = defaultIP(hw.Interfaces)
	return hw, nil
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return runtime.GOARCH
}

// interfaces are the addresses a node could advertise: up, not loopback,
// not link-local.
func interfaces() []Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []Interface
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			out = append(out, Interface{Name: i.Name, IP: ipn.IP.String()})
		}
	}
	return out
}

// defaultIP is the first IPv4 address of the default route's interface, as
// k3s picks it.
func defaultIP(ifs []Interface) string {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "00000000" {
			continue
		}
		for _, i := range ifs {
			if i.Name == f[0] && !strings.Contains(i.IP, ":") {
				return i.IP
			}
		}
	}
	return ""
}

func (s *System) FindBundles(context.Context) ([]bundles.Found, error) {
	return bundles.Discover(bundles.DiscoverOptions{})
}

func (s *System) VerifyBundle(ctx context.Context, src, publicKey string, progress func(done, total int64)) (*BundleInfo, error) {
	pub, err := bundles.LoadPublicKey(publicKey)
	if err != nil {
		return nil, err
	}
	op, err := bundles.Open(ctx, src, bundles.OpenOptions{
		PublicKey: &pub,
		Arch:      runtime.GOARCH,
		Progress:  func(_ string, done, total int64) { progress(done, total) },
	})
	if err != nil {
		return nil, err
	}
	m := op.Manifest
	info := &BundleInfo{Source: src, Name: m.Name, Version: m.Version, Arch: m.Arch, K3sVersion: m.K3s.Version,
		Files: len(m.Files), Size: m.Size(), Signer: op.Comment}
	for _, im := range m.Images {
		info.Images = append(info.Images, im.Reference)
	}
	for _, c := range m.Charts {
		info.Charts = append(info.Charts, c.Name+" "+c.Version)
	}
	return info, nil
}

func (s *System) Save(p string, data []byte) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("save to %q: write an absolute path such as /etc/perch/appliance.yaml", p)
	}
	h, err := host.Open(s.root())
	if err != nil {
		return "", err
	}
	defer h.Close()
	if err := h.MkdirAll(path.Dir(p), 0o755); err != nil {
		return "", err
	}
	// 0600: the file holds the join token
	if _, err := h.WriteFile(p, data, 0o600); err != nil {
		return "", err
	}
	return h.Path(p), nil
}

func (s *System) installer(cfg config.Appliance, sink engine.Sink) (*installer.Installer, error) {
	return installer.New(cfg, installer.Options{Root: s.root(), Init: s.Init, Sink: sink, GPU: s.GPU})
}

func (s *System) Plan(ctx context.Context, cfg config.Appliance) (*PlanResult, error) {
	inst, err := s.installer(cfg, nil)
	if err != nil {
		return nil, err
	}
	p, err := inst.Plan(ctx)
	return &PlanResult{Node: inst.Describe(), Plan: p}, err
}

func (s *System) Install(ctx context.Context, cfg config.Appliance, sink engine.Sink) error {
	inst, err := s.installer(cfg, sink)
	if err != nil {
		return err
	}
	_, err = inst.Install(ctx)
	return err
}

// formatBytes is engine.Bytes for the unsigned sizes the kernel reports.
func formatBytes(n uint64) string {
	if n > 1<<62 {
		return strconv.FormatUint(n, 10) + " B"
	}
	return engine.Bytes(int64(n))
}
