// Package k3s provisions k3s on a node: preflight, binary, config, service,
// readiness and kubeconfig, each as an engine step that changes only what
// differs from the config.
package k3s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
)

// Host paths Perch writes, relative to --root. k3s reads the first three
// from their upstream locations, so people find them where the k3s docs
// say.
const (
	BinDir        = "/usr/local/bin"
	ConfigPath    = "/etc/rancher/k3s/config.yaml"
	K3sKubeconfig = "/etc/rancher/k3s/k3s.yaml"
	Kubeconfig    = "/etc/perch/kubeconfig"
	TokenPath     = "/etc/perch/secrets/k3s-token"
	// RegistriesPath mirrors image registries to the appliance registry.
	RegistriesPath = "/etc/rancher/k3s/registries.yaml"
	PerchPath      = BinDir + "/perch"
	startedPath    = engine.StateDir + "/k3s-service.digest"
)

// Links are the tools the k3s multi-call binary provides, as upstream's
// install script links them.
var Links = []string{"kubectl", "crictl", "ctr"}

// Env is what every k3s step works with.
type Env struct {
	Cfg  *config.Appliance
	Host *host.Host
	Init host.Init
	// NodeName is node.hostname or this machine's hostname.
	NodeName string
	// PerchBinary is the running perch, installed so services started by
	// the `none` init survive the copy perch was run from.
	PerchBinary string
	// Bundle, when the config names one, is where k3s comes from.
	Bundle *Bundle
	// Registries renders registries.yaml, or nil when there is none.
	Registries func() ([]byte, error)
	// RestrictOOMScoreAdj makes agents run containerd with
	// restrict_oom_score_adj, for hosts without CAP_SYS_RESOURCE
	// (LacksSysResource).
	RestrictOOMScoreAdj bool
	// NvidiaRuntime is the nvidia-container-runtime k3s would find at
	// start, or "". k3s looks only when it starts, so a toolkit installed
	// after it changes what the running k3s should have read.
	NvidiaRuntime func() string
}

// Bundle is a verified bundle as installed on the host.
type Bundle struct {
	Dir      string // on the host, under --root
	Manifest *bundles.Manifest
}

// Source is a file of the bundle, vouched for by its signed manifest.
func (b *Bundle) Source(h *host.Host, p string) (Source, error) {
	f, ok := b.Manifest.File(p)
	if !ok {
		return Source{}, fmt.Errorf("bundle %s %s has no %s", b.Manifest.Name, b.Manifest.Version, p)
	}
	return Source{Path: h.Path(path.Join(b.Dir, f.Path)), Size: f.Size, Digest: "sha256:" + f.SHA256}, nil
}

// ServiceName is k3s for servers and k3s-agent for agents, as upstream.
func (e *Env) ServiceName() string {
	if e.Cfg.Node.Role == config.RoleAgent {
		return "k3s-agent"
	}
	return "k3s"
}

// Steps returns the k3s provisioning steps in order.
func Steps(e *Env) []engine.Step {
	steps := []engine.Step{
		&preflightStep{e},
		&binaryStep{env: e, name: "perch-binary", dest: PerchPath, src: func(ctx context.Context) (Source, error) {
			return LocalSource(ctx, e.PerchBinary, "")
		}},
		&binaryStep{env: e, name: "k3s-binary", dest: BinDir + "/k3s", links: Links, src: e.k3sSource},
	}
	if b := e.Bundle; b != nil && b.Manifest.K3s.AirgapImages != "" && e.RunsAgent() {
		// k3s imports these when it starts, before the kubelet: pods of the
		// appliance never wait on a registry for k3s's own images
		p := b.Manifest.K3s.AirgapImages
		steps = append(steps, &binaryStep{env: e, name: "k3s-airgap-images", mode: 0o644,
			dest: path.Join(e.Cfg.K3s.DataDir, "agent/images", path.Base(p)),
			src:  func(context.Context) (Source, error) { return b.Source(e.Host, p) }})
	}
	steps = append(steps,
		&FilesStep{Env: e, StepName: "k3s-config", Files: e.configFiles},
		&ServiceStep{Env: e, StepName: "k3s-service", Service: e.Service, Digest: e.serviceDigest, Stamp: startedPath},
		&readyStep{e},
	)
	if e.Cfg.Node.Role == config.RoleServer {
		steps = append(steps, &kubeconfigStep{e})
	}
	return steps
}

func (e *Env) k3sSource(ctx context.Context) (Source, error) {
	if b := e.Bundle; b != nil {
		src, err := b.Source(e.Host, b.Manifest.K3s.Binary)
		src.Version = b.Manifest.K3s.Version
		return src, err
	}
	return LocalSource(ctx, e.Cfg.K3s.Binary, "k3s.binary")
}

// RunsAgent says whether this node runs pods.
func (e *Env) RunsAgent() bool {
	return e.Cfg.Node.Role == config.RoleAgent || !e.Cfg.K3s.DisableAgent
}

// ConfigFile renders /etc/rancher/k3s/config.yaml. Paths in it are real
// paths, since k3s reads them without knowing about --root.
func (e *Env) ConfigFile() ([]byte, error) {
	c := e.Cfg
	m := map[string]any{
		"node-name":             e.NodeName,
		"data-dir":              e.Host.Path(c.K3s.DataDir),
		"write-kubeconfig":      e.Host.Path(K3sKubeconfig),
		"write-kubeconfig-mode": "0600",
	}
	if tf := e.tokenFile(); tf != "" {
		m["token-file"] = tf
	}
	if c.Node.NodeIP != "" {
		m["node-ip"] = c.Node.NodeIP
	}
	if c.Node.ServerURL != "" {
		m["server"] = c.Node.ServerURL
	}
	if c.Node.Role == config.RoleServer {
		if c.Node.ClusterInit {
			m["cluster-init"] = true
		}
		if len(c.K3s.Disable) > 0 {
			m["disable"] = c.K3s.Disable
		}
		if c.K3s.DisableAgent {
			m["disable-agent"] = true
		}
	}
	if len(c.Node.Labels) > 0 {
		var labels []string
		for k, v := range c.Node.Labels {
			labels = append(labels, k+"="+v)
		}
		slices.Sort(labels)
		m["node-label"] = labels
	}
	if c.K3s.DefaultRuntime != "" {
		m["default-runtime"] = c.K3s.DefaultRuntime
	}
	if e.Registries != nil {
		reg, err := e.Registries()
		if err != nil {
			return nil, err
		}
		if reg != nil {
			// under --root k3s would read the host's own registries.yaml
			m["private-registry"] = e.Host.Path(RegistriesPath)
			// An appliance is offline: a pull that misses the mirror
			// should fail at once with "not found", not after DNS and
			// connect timeouts to the upstream registry.
			m["disable-default-registry-endpoint"] = true
		}
	}
	body, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Written by perch from the appliance config; edits here are overwritten.\n"), body...), nil
}

// Token is the join token, inline or from node.tokenFile; "" when the node
// has none (a single server).
func (e *Env) Token() (string, error) {
	if t := string(e.Cfg.Node.Token); t != "" {
		return t, nil
	}
	if tf := e.Cfg.Node.TokenFile; tf != "" {
		b, err := os.ReadFile(tf)
		if err != nil {
			return "", fmt.Errorf("node.tokenFile: %w; create it with the token of the first server", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}

// tokenFile is the file k3s reads the join token from: the user's own
// tokenFile as is, or Perch's 0600 copy of an inline token.
func (e *Env) tokenFile() string {
	switch {
	case e.Cfg.Node.TokenFile != "":
		return e.Cfg.Node.TokenFile
	case e.Cfg.Node.Token != "":
		return e.Host.Path(TokenPath)
	}
	return ""
}

// Service is the k3s service definition for the init system.
func (e *Env) Service() host.Service {
	role := "server"
	if e.Cfg.Node.Role == config.RoleAgent {
		role = "agent"
	}
	exec := []string{e.Host.Path(BinDir + "/k3s"), role, "--config", e.Host.Path(ConfigPath)}
	exec = append(exec, e.Cfg.K3s.ExtraArgs...)
	return host.Service{
		Name:        e.ServiceName(),
		Description: "Lightweight Kubernetes (k3s " + role + ", installed by perch)",
		Exec:        exec,
		Notify:      true, // k3s tells systemd when it is up
		Env:         map[string]string{"K3S_NODE_NAME": e.NodeName},
	}
}

// serviceDigest identifies everything a running k3s read at start: its
// command line, config file and token. A change of any of them needs a
// restart.
func (e *Env) serviceDigest() (string, error) {
	h := sha256.New()
	svc, _ := json.Marshal(e.Service())
	h.Write(svc)
	cfg, err := e.ConfigFile()
	if err != nil {
		return "", err
	}
	h.Write(cfg)
	if e.Registries != nil {
		reg, err := e.Registries()
		if err != nil {
			return "", err
		}
		h.Write(reg)
	}
	if e.NvidiaRuntime != nil && e.RunsAgent() {
		// only when there is one, so that nodes without it keep their digest
		if rt := e.NvidiaRuntime(); rt != "" {
			h.Write([]byte("nvidia-container-runtime=" + rt))
		}
	}
	if e.Cfg.Node.Token != "" {
		h.Write([]byte(e.Cfg.Node.Token))
	} else if e.Cfg.Node.TokenFile != "" {
		tok, err := os.ReadFile(e.Cfg.Node.TokenFile)
		if err != nil {
			return "", fmt.Errorf("node.tokenFile: %w; create it with the token of the first server", err)
		}
		h.Write(tok)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
