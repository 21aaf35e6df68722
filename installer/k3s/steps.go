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

// configStep writes k3s's config file and, for an inline token, the 0600
// token file it points to.
type configStep struct{ env *Env }

func (s *configStep) Name() string { return "k3s-config" }

func (s *configStep) files() ([]wantFile, error) {
	e := s.env
	cfg, err := e.ConfigFile()
	if err != nil {
		return nil, err
	}
	files := []wantFile{{path: ConfigPath, data: cfg, mode: 0o600}}
	if e.Cfg.Node.Token != "" {
		files = append(files, wantFile{path: TokenPath, data: []byte(string(e.Cfg.Node.Token) + "\n"), mode: 0o600, secret: true})
	} else if tf := e.Cfg.Node.TokenFile; tf != "" {
		if _, err := os.Stat(tf); err != nil {
			return nil, fmt.Errorf("node.tokenFile: %w; create it with the token of the first server", err)
		}
	}
	return files, nil
}

func (s *configStep) Plan(context.Context) ([]engine.Change, error) {
	files, err := s.files()
	if err != nil {
		return nil, err
	}
	return diffFiles(s.env, files)
}

func (s *configStep) Apply(context.Context, []engine.Change, *engine.Reporter) error {
	files, err := s.files()
	if err != nil {
		return err
	}
	return writeFiles(s.env, files)
}

type wantFile struct {
	path   string
	data   []byte
	mode   fs.FileMode
	secret bool
}

func diffFiles(e *Env, files []wantFile) ([]engine.Change, error) {
	var cs []engine.Change
	for _, f := range files {
		detail := fmt.Sprintf("mode %04o", f.mode)
		if f.secret {
			detail += ", secret"
		}
		have, err := e.Host.ReadFile(f.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.File, Target: f.path, Detail: detail})
			continue
		case err != nil:
			return nil, err
		}
		fi, err := e.Host.Stat(f.path)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(have, f.data) || fi.Mode().Perm() != f.mode {
			cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.File, Target: f.path, Detail: detail})
		}
	}
	return cs, nil
}

func writeFiles(e *Env, files []wantFile) error {
	for _, f := range files {
		if _, err := e.Host.WriteFile(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// serviceStep installs and (re)starts the k3s service. k3s reads its config
// only at start, so it is restarted exactly when what it read has changed:
// the digest of what the running k3s was started with is kept on disk.
type serviceStep struct{ env *Env }

func (s *serviceStep) Name() string { return "k3s-service" }

func (s *serviceStep) Plan(ctx context.Context) ([]engine.Change, error) {
	e := s.env
	name := e.ServiceName()
	st, err := e.Init.Status(ctx, name)
	if err != nil {
		return nil, err
	}
	want, err := e.serviceDigest()
	if err != nil {
		return nil, err
	}
	have, _ := e.Host.ReadFile(startedPath)
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

func (s *serviceStep) Apply(ctx context.Context, cs []engine.Change, r *engine.Reporter) error {
	e := s.env
	name := e.ServiceName()
	if _, err := e.Init.Install(ctx, e.Service()); err != nil {
		return err
	}
	restart := false
	for _, c := range cs {
		restart = restart || c.Action == engine.Restart
	}
	if restart {
		r.Logf("restarting %s", name)
		if err := e.Init.Restart(ctx, name); err != nil {
			return err
		}
	} else {
		r.Logf("starting %s", name)
		if err := e.Init.Start(ctx, name); err != nil {
			return err
		}
	}
	want, err := e.serviceDigest()
	if err != nil {
		return err
	}
	_, err = e.Host.WriteFile(startedPath, []byte(want+"\n"), 0o644)
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
	return diffFiles(s.env, []wantFile{{path: Kubeconfig, data: src, mode: 0o600, secret: true}})
}

func (s *kubeconfigStep) Apply(context.Context, []engine.Change, *engine.Reporter) error {
	src, err := s.env.Host.ReadFile(K3sKubeconfig)
	if err != nil {
		return fmt.Errorf("k3s has not written %s: %w", K3sKubeconfig, err)
	}
	return writeFiles(s.env, []wantFile{{path: Kubeconfig, data: src, mode: 0o600}})
}
