package k3s

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/converge"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/node"
	"github.com/perchedge/perch/installer/preflight"
)

// preflightStep refuses machines that cannot run k3s before anything is
// written; warnings show in the plan.
type preflightStep struct{ k *K3s }

func (s *preflightStep) Name() string { return "preflight" }

func (s *preflightStep) Plan(ctx context.Context) ([]engine.Change, error) {
	e := s.k
	needs := preflight.Needs{Agent: !(e.n.Cfg.Node.Role == config.RoleServer && e.n.Cfg.K3s.DisableAgent)}
	if e.n.Cfg.Node.Role == config.RoleServer {
		needs.Ports = append(needs.Ports, 6443)
	}
	if needs.Agent {
		needs.Ports = append(needs.Ports, 10250)
	}
	if st, err := e.n.Init.Status(ctx, e.ServiceName()); err == nil && st.Running {
		needs.OursRunning = true
	}
	results := preflight.Check(preflight.Gather(e.n.Host.Path(e.n.Cfg.K3s.DataDir), e.n.Name, needs.Ports), needs)
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

// configFiles are k3s's config file, the 0600 token file it points to for
// an inline token, and registries.yaml.
func (e *K3s) configFiles() ([]converge.File, error) {
	cfg, err := e.ConfigFile()
	if err != nil {
		return nil, err
	}
	files := []converge.File{{Path: ConfigPath, Data: cfg, Mode: 0o600}}
	if e.n.Cfg.Node.Token != "" {
		files = append(files, converge.File{Path: TokenPath, Data: []byte(string(e.n.Cfg.Node.Token) + "\n"), Mode: 0o600, Secret: true})
	} else if _, err := e.n.Token(); err != nil {
		return nil, err // k3s would not start without it
	}
	if e.registries != nil {
		reg, err := e.registries()
		if err != nil {
			return nil, err
		}
		if reg != nil {
			// it holds the registry password
			files = append(files, converge.File{Path: RegistriesPath, Data: reg, Mode: 0o600, Secret: true})
		}
	}
	return append(files, e.containerdFiles()...), nil
}

// kubeconfigStep gives operators a stable kubeconfig path; k3s writes its
// own at start.
type kubeconfigStep struct{ k *K3s }

func (s *kubeconfigStep) Name() string { return "kubeconfig" }

func (s *kubeconfigStep) Plan(context.Context) ([]engine.Change, error) {
	src, err := s.k.n.Host.ReadFile(node.K3sKubeconfig)
	if errors.Is(err, fs.ErrNotExist) {
		return []engine.Change{{Action: engine.Create, Kind: engine.File, Target: node.Kubeconfig, Detail: "mode 0600, from k3s once it is up"}}, nil
	}
	if err != nil {
		return nil, err
	}
	return converge.Diff(s.k.n.Host, []converge.File{{Path: node.Kubeconfig, Data: src, Mode: 0o600, Secret: true}})
}

func (s *kubeconfigStep) Apply(context.Context, []engine.Change, *engine.Reporter) error {
	src, err := s.k.n.Host.ReadFile(node.K3sKubeconfig)
	if err != nil {
		return fmt.Errorf("k3s has not written %s: %w", node.K3sKubeconfig, err)
	}
	return converge.Write(s.k.n.Host, []converge.File{{Path: node.Kubeconfig, Data: src, Mode: 0o600}})
}
