// Package k3s provisions k3s on a node: preflight, binary, air-gap images,
// config, service, readiness and kubeconfig, each as an engine step that
// changes only what differs from the config.
package k3s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/converge"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
)

// Host paths of k3s, relative to --root, where the k3s docs say they are.
const (
	ConfigPath = "/etc/rancher/k3s/config.yaml"
	TokenPath  = "/etc/perch/secrets/k3s-token"
	// EtcdMetricsPort is where k3s's embedded etcd serves /metrics and
	// /health (on every address with etcd-expose-metrics).
	EtcdMetricsPort = "2381"
	// RegistriesPath mirrors image registries to the appliance registry.
	RegistriesPath = node.RegistriesPath
	startedPath    = engine.StateDir + "/k3s-service.digest"
)

// Links are the tools the k3s multi-call binary provides, as upstream's
// install script links them.
var Links = []string{"kubectl", "crictl", "ctr"}

// K3s is k3s on one node.
type K3s struct {
	n *node.Node
	// registries renders registries.yaml, or nil when there is none.
	registries func() ([]byte, error)
	// restrictOOMScoreAdj makes agents run containerd with
	// restrict_oom_score_adj, for hosts without CAP_SYS_RESOURCE
	// (LacksSysResource).
	restrictOOMScoreAdj bool
}

// New is k3s on n; registries, when not nil, renders the registries.yaml
// that mirrors image registries to the appliance registry.
func New(n *node.Node, registries func() ([]byte, error)) *K3s {
	return &K3s{n: n, registries: registries, restrictOOMScoreAdj: LacksSysResource()}
}

// ServiceName is k3s for servers and k3s-agent for agents, as upstream.
func (e *K3s) ServiceName() string {
	if e.n.Cfg.Node.Role == config.RoleAgent {
		return "k3s-agent"
	}
	return "k3s"
}

// PerchBinary installs the running perch, which services of the none init
// and the registry run.
func (e *K3s) PerchBinary() engine.Step {
	return &converge.BinaryStep{Host: e.n.Host, StepName: "perch-binary", Dest: node.PerchPath, Src: func(ctx context.Context) (converge.Source, error) {
		return converge.LocalSource(e.n.PerchBinary, "")
	}}
}

// Binary installs k3s with its tool links.
func (e *K3s) Binary() engine.Step {
	return &converge.BinaryStep{Host: e.n.Host, StepName: "k3s-binary", Dest: node.BinDir + "/k3s", Links: Links, Src: e.k3sSource}
}

// HasAirgapImages says whether AirgapImages has anything to install: a
// bundle with k3s's own images, on a node that runs pods.
func (e *K3s) HasAirgapImages() bool {
	b := e.n.Bundle
	return b != nil && b.Manifest.K3s.AirgapImages != "" && e.n.RunsAgent()
}

// AirgapImages puts the bundle's archive of k3s's own images where k3s
// imports them when it starts, before the kubelet: pods of the appliance
// never wait on a registry for k3s's own images.
func (e *K3s) AirgapImages() engine.Step {
	if !e.HasAirgapImages() {
		return nil
	}
	b := e.n.Bundle
	p := b.Manifest.K3s.AirgapImages
	return &converge.BinaryStep{Host: e.n.Host, StepName: "k3s-airgap-images", Mode: 0o644,
		Dest: path.Join(e.n.Cfg.K3s.DataDir, "agent/images", path.Base(p)),
		Src:  func(context.Context) (converge.Source, error) { return b.Source(e.n.Host, p) }}
}

// Config writes k3s's config file, its token file and registries.yaml.
func (e *K3s) Config() engine.Step {
	return &converge.FilesStep{Host: e.n.Host, StepName: "k3s-config", Files: e.configFiles}
}

// Service installs k3s's service and restarts it when what it read at
// start has changed.
func (e *K3s) Service() engine.Step {
	return &converge.ServiceStep{Host: e.n.Host, Init: e.n.Init, StepName: "k3s-service", Service: e.service, Digest: e.serviceDigest, Stamp: startedPath}
}

// Ready waits until k3s serves.
func (e *K3s) Ready() engine.Step { return &readyStep{e} }

// Kubeconfig keeps Perch's copy of the admin kubeconfig (servers).
func (e *K3s) Kubeconfig() engine.Step { return &kubeconfigStep{e} }

// Preflight refuses a machine that cannot run k3s.
func (e *K3s) Preflight() engine.Step { return &preflightStep{e} }

func (e *K3s) k3sSource(ctx context.Context) (converge.Source, error) {
	if b := e.n.Bundle; b != nil {
		src, err := b.Source(e.n.Host, b.Manifest.K3s.Binary)
		src.Version = b.Manifest.K3s.Version
		return src, err
	}
	src, err := converge.LocalSource(e.n.Cfg.K3s.Binary, "k3s.binary")
	if err != nil {
		return src, err
	}
	// a version the plan cannot read is only left out of it; the file is
	// installed by its digest either way
	src.Version, _ = bundles.K3sVersion(src.Path)
	return src, nil
}

// ConfigFile renders /etc/rancher/k3s/config.yaml. Paths in it are real
// paths, since k3s reads them without knowing about --root.
func (e *K3s) ConfigFile() ([]byte, error) {
	c := e.n.Cfg
	m := map[string]any{
		"node-name": e.n.Name,
		"data-dir":  e.n.Host.Path(c.K3s.DataDir),
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
		// k3s agent refuses server flags, this one included: it exits at
		// once with "flag provided but not defined"
		m["write-kubeconfig"] = e.n.Host.Path(node.K3sKubeconfig)
		m["write-kubeconfig-mode"] = "0600"
		if c.Node.ClusterInit {
			m["cluster-init"] = true
		}
		if c.EtcdMetrics() {
			m["etcd-expose-metrics"] = true
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
	if e.registries != nil {
		reg, err := e.registries()
		if err != nil {
			return nil, err
		}
		if reg != nil {
			// under --root k3s would read the host's own registries.yaml
			m["private-registry"] = e.n.Host.Path(RegistriesPath)
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

// tokenFile is the file k3s reads the join token from: the user's own
// tokenFile as is, or Perch's 0600 copy of an inline token.
func (e *K3s) tokenFile() string {
	switch {
	case e.n.Cfg.Node.TokenFile != "":
		return e.n.Cfg.Node.TokenFile
	case e.n.Cfg.Node.Token != "":
		return e.n.Host.Path(TokenPath)
	}
	return ""
}

// Service is the k3s service definition for the init system.
func (e *K3s) service() host.Service {
	role := "server"
	if e.n.Cfg.Node.Role == config.RoleAgent {
		role = "agent"
	}
	exec := []string{e.n.Host.Path(node.BinDir + "/k3s"), role, "--config", e.n.Host.Path(ConfigPath)}
	exec = append(exec, e.n.Cfg.K3s.ExtraArgs...)
	return host.Service{
		Name:        e.ServiceName(),
		Description: "Lightweight Kubernetes (k3s " + role + ", installed by perch)",
		Exec:        exec,
		Notify:      true, // k3s tells systemd when it is up
		Env:         map[string]string{"K3S_NODE_NAME": e.n.Name},
	}
}

// serviceDigest identifies everything a running k3s read at start: its
// command line, config file and token. A change of any of them needs a
// restart.
func (e *K3s) serviceDigest() (string, error) {
	h := sha256.New()
	svc, _ := json.Marshal(e.service())
	h.Write(svc)
	cfg, err := e.ConfigFile()
	if err != nil {
		return "", err
	}
	h.Write(cfg)
	if e.registries != nil {
		reg, err := e.registries()
		if err != nil {
			return "", err
		}
		h.Write(reg)
	}
	if e.n.RunsAgent() {
		// k3s looks for the NVIDIA runtime only when it starts, so a
		// toolkit installed after it changes what it should have read;
		// hashed only when there is one, so nodes without keep their digest
		if rt := gpu.FindRuntime(e.n.Host.Stat); rt != "" {
			h.Write([]byte("nvidia-container-runtime=" + rt))
		}
	}
	tok, err := e.n.Token()
	if err != nil {
		return "", err
	}
	h.Write([]byte(tok))
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
