// Package installer turns an Appliance config into a converged node. Both
// front ends (the config file and the TUI) end here with the same Config.
package installer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/apps"
	"github.com/perchedge/perch/installer/bundle"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/k3s"
	"github.com/perchedge/perch/installer/node"
	"github.com/perchedge/perch/installer/registry"
)

// Options are the per-run settings that are not part of the appliance.
type Options struct {
	Root string // --root, default "/"
	Init string // --init auto|systemd|openrc|none
	Sink engine.Sink
	// GPU reads the GPUs; nil is the machine's own NVML. Tests give
	// go-nvml's mock.
	GPU gpu.Library
}

// Installer holds what one run needs: the node and the step families
// that work on it.
type Installer struct {
	node     *node.Node
	k3s      *k3s.K3s
	registry *registry.Registry // nil when registry.enabled is off
	apps     *apps.Apps
	bundle   *bundle.Bundle // nil when the config names none
	sink     engine.Sink
	arch     string
	loaded   bool
}

// New opens the host and prepares the steps; it changes nothing.
func New(cfg config.Appliance, o Options) (*Installer, error) {
	if o.Root == "" {
		o.Root = "/"
	}
	// a root that does not exist yet is made by the first write, so that
	// plan and uninstall, which write nothing there, leave none behind
	h, err := host.OpenCreating(o.Root)
	if err != nil {
		return nil, fmt.Errorf("--root %s: %w", o.Root, err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the perch binary: %w", err)
	}
	// Services of the none init run the installed copy, which outlives
	// wherever this perch was started from.
	in, err := host.NewInit(h, o.Init, h.Path(node.PerchPath))
	if err != nil {
		return nil, err
	}
	name := cfg.Node.Hostname
	if name == "" {
		hn, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("read hostname: %w; set node.hostname", err)
		}
		name = strings.ToLower(hn)
	}
	n := &node.Node{Cfg: &cfg, Host: h, Init: in, Name: name, PerchBinary: self, GPU: o.GPU}
	if n.GPU == nil {
		n.GPU = gpu.Open()
	}
	var regs []string
	if cfg.Registry.Enabled {
		regs = append(regs, registry.Addr(&cfg))
	}
	i := &Installer{node: n, sink: o.Sink, arch: runtime.GOARCH, apps: apps.New(n, regs...)}
	if cfg.Registry.Enabled && n.Server() {
		i.apps.ScrapeRegistry(cfg.Registry.Port, registry.CACert)
	}
	if i.registry, err = registry.New(n); err != nil {
		return nil, err
	}
	var registries func() ([]byte, error)
	if i.registry != nil {
		registries = i.registry.RegistriesYAML
	}
	i.k3s = k3s.New(n, registries)
	return i, nil
}

// load reads the bundle's signed manifest, once, before the steps are made.
func (i *Installer) load(ctx context.Context) error {
	if i.loaded {
		return nil
	}
	b, err := bundle.Load(ctx, i.node, i.arch, i.report)
	if err != nil {
		return err
	}
	i.bundle, i.loaded = b, true
	return nil
}

func (i *Installer) report(step string) *engine.Reporter {
	sink := i.sink
	if sink == nil {
		sink = func(engine.Event) {}
	}
	return engine.NewReporter(step, sink)
}

// Describe says in one line what is being installed where.
func (i *Installer) Describe() string {
	role := string(i.node.Cfg.Node.Role)
	switch {
	case i.node.Cfg.Node.ClusterInit:
		role = "first server of an HA cluster"
	case i.node.Cfg.Node.Role == config.RoleServer && i.node.Cfg.Node.ServerURL != "":
		role = "server joining " + i.node.Cfg.Node.ServerURL
	case i.node.Cfg.Node.Role == config.RoleAgent:
		role = "agent joining " + i.node.Cfg.Node.ServerURL
	}
	return fmt.Sprintf("node %s: %s, root %s, init %s", i.node.Name, role, i.node.Host.Root(), i.node.Init.Name())
}

// Plan says what Install would change, writing nothing.
func (i *Installer) Plan(ctx context.Context) (engine.Plan, error) {
	if err := i.load(ctx); err != nil {
		return engine.Plan{}, err
	}
	return engine.MakePlan(ctx, i.steps())
}

// Install converges the node to the config. A bundle that is not installed
// yet is verified in full first: a bad one changes nothing on the host.
func (i *Installer) Install(ctx context.Context) (engine.Summary, error) {
	if err := i.load(ctx); err != nil {
		return engine.Summary{}, err
	}
	if b := i.bundle; b != nil {
		ok, err := b.Installed()
		if err != nil {
			return engine.Summary{}, err
		}
		if !ok {
			if err := b.Stage(ctx); err != nil {
				return engine.Summary{}, err
			}
			defer b.DropStaging()
		}
	}
	return engine.Run(ctx, i.steps(), engine.Options{Store: i.node.Host, Sink: i.sink})
}

// Uninstall stops and removes what the journal says Perch created, newest
// first. Data (the k3s data dir, Perch's state) stays unless purge.
func (i *Installer) Uninstall(ctx context.Context, purge bool) ([]string, error) {
	dataDir := i.node.Cfg.K3s.DataDir
	purged := []string{dataDir, "/etc/rancher/k3s", "/etc/perch", "/var/log/perch", "/run/perch", "/run/k3s", engine.StateDir}
	if !i.installedHere(purge, purged) {
		// taking the lock would write it, and a journal, on a node
		// that has nothing to remove
		return nil, nil
	}
	lock, err := engine.AcquireLock(i.node.Host)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	j, err := engine.ReadJournal(i.node.Host)
	if err != nil {
		return nil, err
	}
	var done []string
	stoppedK3s := false
	owned := slices.Clone(j.Owned)
	slices.Reverse(owned)
	// services first: nothing may run from files about to go
	for _, o := range owned {
		if o.Kind == engine.Service {
			if err := i.node.Init.Uninstall(ctx, o.Target); err != nil {
				return done, fmt.Errorf("remove service %s: %w", o.Target, err)
			}
			done = append(done, "removed service "+o.Target)
			if o.Target == "k3s" || o.Target == "k3s-agent" {
				stoppedK3s = true
			}
		}
	}
	if stoppedK3s {
		// pods outlive k3s: their containers, interfaces, iptables rules
		// and cgroups would stay on the host
		cleaned, err := k3s.CleanupNode(ctx)
		done = append(done, cleaned...)
		if err != nil {
			return done, fmt.Errorf("clean up after k3s: %w", err)
		}
		if err := unmountUnder(i.node.Host.Path("/run/k3s"), i.node.Host.Path("/var/lib/kubelet"), i.node.Host.Path(path.Join(i.node.Cfg.K3s.DataDir, "agent"))); err != nil {
			return done, err
		}
	}
	for _, o := range owned {
		if o.Kind != engine.File && o.Kind != engine.Link {
			continue
		}
		removed, err := i.node.Host.Remove(o.Target)
		if err != nil {
			return done, err
		}
		if removed {
			done = append(done, "removed "+o.Target)
		}
	}
	if !purge {
		j.Owned = nil
		j.Status = "uninstalled"
		return done, j.Save(i.node.Host)
	}
	if err := unmountUnder(i.node.Host.Path(dataDir), i.node.Host.Path("/run/k3s"), i.node.Host.Path("/var/lib/kubelet")); err != nil {
		return done, err
	}
	for _, p := range purged {
		if _, err := i.node.Host.Stat(p); err != nil {
			continue
		}
		if p == engine.StateDir {
			lock.Release() // the lock file lives there
		}
		if err := i.node.Host.RemoveAll(p); err != nil {
			return done, err
		}
		done = append(done, "purged "+p)
	}
	return done, nil
}

// installedHere says whether uninstall has anything to do: a journal, or,
// with purge, any of the purged paths.
func (i *Installer) installedHere(purge bool, purged []string) bool {
	paths := []string{engine.JournalPath}
	if purge {
		paths = purged
	}
	for _, p := range paths {
		if _, err := i.node.Host.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// unmountUnder lazily unmounts every mount below the given real paths,
// deepest first, so purging a data dir never fails on a busy mount left by
// pods.
func unmountUnder(prefixes ...string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4]
		for _, p := range prefixes {
			if p != "/" && (mp == p || strings.HasPrefix(mp, filepath.Clean(p)+"/")) {
				mounts = append(mounts, mp)
			}
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	return nil
}
