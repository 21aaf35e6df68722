// Package installer turns an Appliance config into a converged node. Both
// front ends (the config file and the TUI) end here with the same Config.
package installer

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/k3s"
	"github.com/perchedge/perch/installer/mirror"
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

// Installer holds what one run needs.
type Installer struct {
	cfg    config.Appliance
	host   *host.Host
	env    *k3s.Env
	sink   engine.Sink
	arch   string
	bundle *bundle
	mirror *mirror.Mirror
	gpu    gpu.Library
	// rollouts are the apps whose HelmChart this install changed, with the
	// install Job each had before (apps -> apps-ready).
	rollouts map[string]jobMark
}

// New opens the host and prepares the steps; it changes nothing.
func New(cfg config.Appliance, o Options) (*Installer, error) {
	if o.Root == "" {
		o.Root = "/"
	}
	if err := os.MkdirAll(o.Root, 0o755); err != nil {
		return nil, fmt.Errorf("--root %s: %w", o.Root, err)
	}
	h, err := host.Open(o.Root)
	if err != nil {
		return nil, fmt.Errorf("--root %s: %w", o.Root, err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the perch binary: %w", err)
	}
	// Services of the none init run the installed copy, which outlives
	// wherever this perch was started from.
	in, err := host.NewInit(h, o.Init, h.Path(k3s.PerchPath))
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
	env := &k3s.Env{Cfg: &cfg, Host: h, Init: in, NodeName: name, PerchBinary: self, RestrictOOMScoreAdj: k3s.LacksSysResource()}
	env.NvidiaRuntime = func() string { return nvidiaRuntime(h) }
	i := &Installer{cfg: cfg, host: h, env: env, sink: o.Sink, arch: runtime.GOARCH, gpu: o.GPU}
	if i.gpu == nil {
		i.gpu = gpu.Open()
	}
	if i.mirror, err = mirror.New(env); err != nil {
		return nil, err
	}
	if i.mirror != nil {
		env.Registries = i.mirror.RegistriesYAML
	}
	return i, nil
}

// steps are the install in order; the bundle, when there is one, goes in
// place right after preflight, before anything that uses it.
func (i *Installer) steps(ctx context.Context) ([]engine.Step, error) {
	if err := i.loadBundle(ctx); err != nil {
		return nil, err
	}
	steps := k3s.Steps(i.env)
	if i.bundle != nil {
		steps = slices.Insert(steps, 1, engine.Step(&bundleStep{i}))
	}
	if i.cfg.GPU.Mode != config.GPUOff {
		// right after preflight: a node that cannot give pods its GPUs is
		// refused before anything is written
		steps = slices.Insert(steps, 1, engine.Step(&gpuStep{cfg: &i.cfg, host: i.host, lib: i.gpu}))
	}
	if i.env.RunsAgent() {
		// after k3s-ready: the Node exists then
		at := slices.IndexFunc(steps, func(s engine.Step) bool { return s.Name() == "k3s-ready" })
		steps = slices.Insert(steps, at+1, engine.Step(&gpuLabelsStep{i}))
	}
	if i.cfg.Node.Role == config.RoleServer {
		// every server writes the same manifests; k3s applies them once
		steps = append(steps, &appsStep{i}, &appsReadyStep{i}, &gpuValidateStep{i})
	}
	if i.mirror != nil {
		// registry up and images in before k3s reads registries.yaml
		at := slices.IndexFunc(steps, func(s engine.Step) bool { return s.Name() == "k3s-config" })
		steps = slices.Insert(steps, at, i.mirror.Steps()...)
	}
	return steps, nil
}

// Describe says in one line what is being installed where.
func (i *Installer) Describe() string {
	role := string(i.cfg.Node.Role)
	switch {
	case i.cfg.Node.ClusterInit:
		role = "first server of an HA cluster"
	case i.cfg.Node.Role == config.RoleServer && i.cfg.Node.ServerURL != "":
		role = "server joining " + i.cfg.Node.ServerURL
	case i.cfg.Node.Role == config.RoleAgent:
		role = "agent joining " + i.cfg.Node.ServerURL
	}
	return fmt.Sprintf("node %s: %s, root %s, init %s", i.env.NodeName, role, i.host.Root(), i.env.Init.Name())
}

// Plan says what Install would change, writing nothing.
func (i *Installer) Plan(ctx context.Context) (engine.Plan, error) {
	steps, err := i.steps(ctx)
	if err != nil {
		return engine.Plan{}, err
	}
	return engine.MakePlan(ctx, steps)
}

// Install converges the node to the config. A bundle that is not installed
// yet is verified in full first: a bad one changes nothing on the host.
func (i *Installer) Install(ctx context.Context) (engine.Summary, error) {
	steps, err := i.steps(ctx)
	if err != nil {
		return engine.Summary{}, err
	}
	if i.bundle != nil {
		ok, err := i.bundleInstalled()
		if err != nil {
			return engine.Summary{}, err
		}
		if !ok {
			if err := i.stageBundle(ctx); err != nil {
				return engine.Summary{}, err
			}
			defer i.dropStaging()
		}
	}
	return engine.Run(ctx, steps, engine.Options{Store: i.host, Sink: i.sink})
}

// Uninstall stops and removes what the journal says Perch created, newest
// first. Data (the k3s data dir, Perch's state) stays unless purge.
func (i *Installer) Uninstall(ctx context.Context, purge bool) ([]string, error) {
	lock, err := engine.AcquireLock(i.host)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	j, err := engine.ReadJournal(i.host)
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
			if err := i.env.Init.Uninstall(ctx, o.Target); err != nil {
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
		if err := unmountUnder(i.host.Path("/run/k3s"), i.host.Path("/var/lib/kubelet"), i.host.Path(path.Join(i.cfg.K3s.DataDir, "agent"))); err != nil {
			return done, err
		}
	}
	for _, o := range owned {
		if o.Kind != engine.File && o.Kind != engine.Link {
			continue
		}
		removed, err := i.host.Remove(o.Target)
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
		return done, j.Save(i.host)
	}
	dataDir := i.cfg.K3s.DataDir
	if err := unmountUnder(i.host.Path(dataDir), i.host.Path("/run/k3s"), i.host.Path("/var/lib/kubelet")); err != nil {
		return done, err
	}
	for _, p := range []string{dataDir, "/etc/rancher/k3s", "/etc/perch", "/var/log/perch", "/run/perch", "/run/k3s", engine.StateDir} {
		if _, err := i.host.Stat(p); err != nil {
			continue
		}
		if p == engine.StateDir {
			lock.Release() // the lock file lives there
		}
		if err := i.host.RemoveAll(p); err != nil {
			return done, err
		}
		done = append(done, "purged "+p)
	}
	return done, nil
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
