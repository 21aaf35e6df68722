package k3s

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/preflight"
)

// preflightStep refuses machines that cannot run k3s before anything is
// written; warnings show in the plan.
type preflightStep struct{ env *Env }

func (s *preflightStep) Name() string { return "preflight" }

func (s *preflightStep) Plan(ctx context.Context) ([]engine.Change, error) {
	e := s.env
	needs := preflight.Needs{Agent: !(e.Cfg.Node.Role == config.RoleServer && e.Cfg.K3s.DisableAgent)}
	if e.Cfg.Node.Role == config.RoleServer {
		needs.Ports = append(needs.Ports, 6443)
	}
	if needs.Agent {
		needs.Ports = append(needs.Ports, 10250)
	}
	if st, err := e.Init.Status(ctx, e.ServiceName()); err == nil && st.Running {
		needs.OursRunning = true
	}
	results := preflight.Check(preflight.Gather(e.Host.Path(e.Cfg.K3s.DataDir), e.NodeName, needs.Ports), needs)
	var changes []engine.Change
	var failed []string
	for _, r := range results {
		switch r.Severity {
		case preflight.Warn:
			changes = append(changes, engine.Change{Action: engine.Warn, Kind: engine.Check, Target: r.Check, Detail: r.Message + "; " + r.Fix})
		case preflight.Error:
			failed = append(failed, fmt.Sprintf("%s: %s; fix: %s", r.Check, r.Message, r.Fix))
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("this machine cannot run k3s yet:\n  %s", strings.Join(failed, "\n  "))
	}
	return changes, nil
}

func (s *preflightStep) Apply(context.Context, []engine.Change, *engine.Reporter) error { return nil }

// Source is a file to install: where it is and, when a signed bundle
// manifest vouches for it, its size, digest and version without reading it.
type Source struct {
	Path    string
	Size    int64
	Digest  string // "sha256:…"; empty means hash the file when needed
	Version string
}

// LocalSource describes a file on this machine, named by a config key for
// errors.
func LocalSource(ctx context.Context, p, field string) (Source, error) {
	fi, err := os.Stat(p)
	if err != nil {
		if field != "" {
			return Source{}, fmt.Errorf("%s: %w; set it to the path of the k3s binary", field, err)
		}
		return Source{}, err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return Source{}, fmt.Errorf("%s: %s is not an executable file; chmod +x it", field, p)
	}
	return Source{Path: p, Size: fi.Size(), Version: version(ctx, p)}, nil
}

// binaryStep installs a file by content (executables with tool links next
// to them).
type binaryStep struct {
	env   *Env
	name  string
	src   func(context.Context) (Source, error)
	dest  string
	mode  os.FileMode
	links []string
}

func (s *binaryStep) Name() string { return s.name }

func (s *binaryStep) Plan(ctx context.Context) ([]engine.Change, error) {
	src, err := s.src(ctx)
	if err != nil {
		return nil, err
	}
	h := s.env.Host
	var cs []engine.Change
	detail := engine.Bytes(src.Size)
	if src.Version != "" {
		detail = src.Version + ", " + detail
	}
	cur, err := h.Stat(s.dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.File, Target: s.dest, Detail: detail})
	case err != nil:
		return nil, err
	default:
		same := cur.Size() == src.Size
		if same {
			want := src.Digest
			if want == "" {
				if want, err = host.DigestFile(src.Path); err != nil {
					return nil, err
				}
			}
			have, err := h.Digest(s.dest)
			if err != nil {
				return nil, err
			}
			same = want == have
		}
		if !same {
			cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.File, Target: s.dest, Detail: detail})
		}
	}
	for _, l := range s.links {
		p := path.Join(path.Dir(s.dest), l)
		target, err := h.Readlink(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.Link, Target: p, Detail: "-> " + path.Base(s.dest)})
		case err != nil || target != path.Base(s.dest):
			cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.Link, Target: p, Detail: "-> " + path.Base(s.dest)})
		}
	}
	return cs, nil
}

func (s *binaryStep) Apply(ctx context.Context, cs []engine.Change, r *engine.Reporter) error {
	h := s.env.Host
	for _, c := range cs {
		switch c.Kind {
		case engine.File:
			src, err := s.src(ctx)
			if err != nil {
				return err
			}
			f, err := os.Open(src.Path)
			if err != nil {
				return err
			}
			mode := s.mode
			if mode == 0 {
				mode = 0o755
			}
			digest, err := h.WriteStream(ctx, s.dest, f, mode, func(n int64) { r.Progress("copying "+path.Base(s.dest), n, src.Size) })
			f.Close()
			if err != nil {
				return fmt.Errorf("install %s: %w", s.dest, err)
			}
			if src.Digest != "" && digest != src.Digest {
				return fmt.Errorf("install %s: %s changed since it was verified (sha256 %s, want %s); run again", s.dest, src.Path, digest, src.Digest)
			}
		case engine.Link:
			if _, err := h.Symlink(path.Base(s.dest), c.Target); err != nil {
				return err
			}
		}
	}
	return nil
}

// version asks a binary for its version, for the plan; k3s prints
// "k3s version v1.31.1+k3s1 (abc)".
func version(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	if f := strings.Fields(line); len(f) >= 3 && f[1] == "version" {
		return f[2]
	}
	return ""
}

// FilesStep writes files whose content is known up front, changing only
// those that differ in content or mode.
type FilesStep struct {
	Env      *Env
	StepName string
	Files    func() ([]WantFile, error)
}

func (s *FilesStep) Name() string { return s.StepName }

func (s *FilesStep) Plan(context.Context) ([]engine.Change, error) {
	files, err := s.Files()
	if err != nil {
		return nil, err
	}
	return diffFiles(s.Env, files)
}

func (s *FilesStep) Apply(context.Context, []engine.Change, *engine.Reporter) error {
	files, err := s.Files()
	if err != nil {
		return err
	}
	return writeFiles(s.Env, files)
}

func writeFiles(e *Env, files []WantFile) error {
	for _, f := range files {
		if _, err := e.Host.WriteFile(f.Path, f.Data, f.Mode); err != nil {
			return err
		}
	}
	return nil
}

// WantFile is a file as it should be; Secret ones are 0600 and their
// content never shows in a plan or log.
type WantFile struct {
	Path   string
	Data   []byte
	Mode   fs.FileMode
	Secret bool
}

// configFiles are k3s's config file, the 0600 token file it points to for
// an inline token, and registries.yaml.
func (e *Env) configFiles() ([]WantFile, error) {
	cfg, err := e.ConfigFile()
	if err != nil {
		return nil, err
	}
	files := []WantFile{{Path: ConfigPath, Data: cfg, Mode: 0o600}}
	if e.Cfg.Node.Token != "" {
		files = append(files, WantFile{Path: TokenPath, Data: []byte(string(e.Cfg.Node.Token) + "\n"), Mode: 0o600, Secret: true})
	} else if tf := e.Cfg.Node.TokenFile; tf != "" {
		if _, err := os.Stat(tf); err != nil {
			return nil, fmt.Errorf("node.tokenFile: %w; create it with the token of the first server", err)
		}
	}
	if e.Registries != nil {
		reg, err := e.Registries()
		if err != nil {
			return nil, err
		}
		if reg != nil {
			// it holds the registry password
			files = append(files, WantFile{Path: RegistriesPath, Data: reg, Mode: 0o600, Secret: true})
		}
	}
	return append(files, e.containerdFiles()...), nil
}

func diffFiles(e *Env, files []WantFile) ([]engine.Change, error) {
	var cs []engine.Change
	for _, f := range files {
		detail := fmt.Sprintf("mode %04o", f.Mode)
		if f.Secret {
			detail += ", secret"
		}
		have, err := e.Host.ReadFile(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.File, Target: f.Path, Detail: detail})
			continue
		case err != nil:
			return nil, err
		}
		fi, err := e.Host.Stat(f.Path)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(have, f.Data) || fi.Mode().Perm() != f.Mode {
			cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.File, Target: f.Path, Detail: detail})
		}
	}
	return cs, nil
}

// ServiceStep installs and (re)starts a service. Services read their
// config only at start, so one is restarted exactly when what it read has
// changed: the digest of what the running one was started with is kept on
// disk at Stamp.
type ServiceStep struct {
	Env      *Env
	StepName string
	Service  func() host.Service
	// Digest covers everything the service reads when it starts.
	Digest func() (string, error)
	Stamp  string
}

func (s *ServiceStep) Name() string { return s.StepName }

func (s *ServiceStep) Plan(ctx context.Context) ([]engine.Change, error) {
	e := s.Env
	name := s.Service().Name
	st, err := e.Init.Status(ctx, name)
	if err != nil {
		return nil, err
	}
	want, err := s.Digest()
	if err != nil {
		return nil, err
	}
	have, _ := e.Host.ReadFile(s.Stamp)
	fresh := strings.TrimSpace(string(have)) == want
	target := name + " (" + e.Init.Name() + ")"
	var cs []engine.Change
	switch {
	case !st.Installed:
		cs = append(cs,
			engine.Change{Action: engine.Create, Kind: engine.Service, Target: name, Detail: "init " + e.Init.Name()},
			engine.Change{Action: engine.Start, Kind: engine.Service, Target: target})
	case !fresh:
		cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.Service, Target: name, Detail: "config changed"})
		if st.Running {
			cs = append(cs, engine.Change{Action: engine.Restart, Kind: engine.Service, Target: target, Detail: "to read the new config"})
		} else {
			cs = append(cs, engine.Change{Action: engine.Start, Kind: engine.Service, Target: target})
		}
	case !st.Running:
		cs = append(cs, engine.Change{Action: engine.Start, Kind: engine.Service, Target: target, Detail: "installed but not running"})
	}
	return cs, nil
}

func (s *ServiceStep) Apply(ctx context.Context, cs []engine.Change, r *engine.Reporter) error {
	e := s.Env
	svc := s.Service()
	if _, err := e.Init.Install(ctx, svc); err != nil {
		return err
	}
	restart := false
	for _, c := range cs {
		restart = restart || c.Action == engine.Restart
	}
	if restart {
		r.Logf("restarting %s", svc.Name)
		if err := e.Init.Restart(ctx, svc.Name); err != nil {
			return err
		}
	} else {
		r.Logf("starting %s", svc.Name)
		if err := e.Init.Start(ctx, svc.Name); err != nil {
			return err
		}
	}
	want, err := s.Digest()
	if err != nil {
		return err
	}
	_, err = e.Host.WriteFile(s.Stamp, []byte(want+"\n"), 0o644)
	return err
}

// kubeconfigStep gives operators a stable kubeconfig path; k3s writes its
// own at start.
type kubeconfigStep struct{ env *Env }

func (s *kubeconfigStep) Name() string { return "kubeconfig" }

func (s *kubeconfigStep) Plan(context.Context) ([]engine.Change, error) {
	src, err := s.env.Host.ReadFile(K3sKubeconfig)
	if errors.Is(err, fs.ErrNotExist) {
		return []engine.Change{{Action: engine.Create, Kind: engine.File, Target: Kubeconfig, Detail: "mode 0600, from k3s once it is up"}}, nil
	}
	if err != nil {
		return nil, err
	}
	return diffFiles(s.env, []WantFile{{Path: Kubeconfig, Data: src, Mode: 0o600, Secret: true}})
}

func (s *kubeconfigStep) Apply(context.Context, []engine.Change, *engine.Reporter) error {
	src, err := s.env.Host.ReadFile(K3sKubeconfig)
	if err != nil {
		return fmt.Errorf("k3s has not written %s: %w", K3sKubeconfig, err)
	}
	return writeFiles(s.env, []WantFile{{Path: Kubeconfig, Data: src, Mode: 0o600}})
}
