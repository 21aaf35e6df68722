// Package node is what every step family knows about the node being
// installed: its config, its host, its init system, its name, the bundle
// it installs from, and the few policies more than one family applies
// (role, join token, GPUs pods may use, clients of its cluster).
package node

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/converge"
	"github.com/perchedge/perch/installer/host"
)

// Host paths more than one family uses, relative to --root. k3s reads and
// writes its own at their upstream locations, so people find them where
// the k3s docs say.
const (
	BinDir    = "/usr/local/bin"
	PerchPath = BinDir + "/perch"
	// RegistriesPath is k3s's registries.yaml: the k3s steps write it,
	// the registry steps read back which registries it lists.
	RegistriesPath = "/etc/rancher/k3s/registries.yaml"
	// K3sKubeconfig is the admin kubeconfig k3s writes on a server.
	K3sKubeconfig = "/etc/rancher/k3s/k3s.yaml"
	// Kubeconfig is Perch's stable copy of it, for operators.
	Kubeconfig = "/etc/perch/kubeconfig"
)

// Node is one node being installed.
type Node struct {
	Cfg  *config.Appliance
	Host *host.Host
	Init host.Init
	// Name is node.hostname or this machine's hostname.
	Name string
	// PerchBinary is the running perch, installed so that services started
	// by the `none` init survive the copy perch was run from.
	PerchBinary string
	// GPU reads the node's GPUs (NVML, or go-nvml's mock in tests).
	GPU gpu.Library
	// Bundle, when the config names one, is where k3s, the images and the
	// charts come from; set once its signed manifest has been read.
	Bundle *Bundle
}

// Bundle is a verified bundle as it is (or will be) installed on the host.
type Bundle struct {
	Dir      string // on the host, under --root
	Manifest *bundles.Manifest
}

// Source is a file of the bundle, vouched for by its signed manifest.
func (b *Bundle) Source(h *host.Host, p string) (converge.Source, error) {
	f, ok := b.Manifest.File(p)
	if !ok {
		return converge.Source{}, fmt.Errorf("bundle %s %s has no %s", b.Manifest.Name, b.Manifest.Version, p)
	}
	return converge.Source{Path: h.Path(path.Join(b.Dir, f.Path)), Size: f.Size, Digest: "sha256:" + f.SHA256}, nil
}

// Images are the references of the bundle's images; none without a bundle.
func (n *Node) Images() []string {
	if n.Bundle == nil {
		return nil
	}
	var refs []string
	for _, im := range n.Bundle.Manifest.Images {
		refs = append(refs, im.Reference)
	}
	return refs
}

// Server says whether the node is a k3s server.
func (n *Node) Server() bool { return n.Cfg.Node.Role == config.RoleServer }

// RunsAgent says whether this node runs pods.
func (n *Node) RunsAgent() bool {
	return n.Cfg.Node.Role == config.RoleAgent || !n.Cfg.K3s.DisableAgent
}

// Token is the join token, inline or from node.tokenFile; "" when the node
// has none (a single server). It is the one place the token file is read.
func (n *Node) Token() (string, error) {
	if t := string(n.Cfg.Node.Token); t != "" {
		return t, nil
	}
	if tf := n.Cfg.Node.TokenFile; tf != "" {
		b, err := os.ReadFile(tf)
		if err != nil {
			return "", fmt.Errorf("node.tokenFile: %w; create it with the token of the first server", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}

// GPUs are the GPUs the node's pods may be given, under gpu.mode: none when
// it is off; when they cannot be read, or there are none, none and why
// with auto, and an error with required. This is the one place gpu.mode is
// decided; callers add what they do instead (install CPU-only, render
// CPU-only).
func GPUs(ctx context.Context, mode config.GPUMode, lib gpu.Library) (inv *gpu.Inventory, why string, err error) {
	if mode == config.GPUOff {
		return nil, "", nil
	}
	inv, err = gpu.Detect(ctx, lib)
	required := mode == config.GPURequired
	switch {
	case err != nil && required:
		return nil, "", fmt.Errorf("gpu.mode is required, but the GPUs cannot be read: %w", err)
	case err != nil:
		return nil, err.Error(), nil
	case len(inv.GPUs) == 0 && required:
		return nil, "", fmt.Errorf("gpu.mode is required, but this node has no usable NVIDIA GPU: %s; install the driver, or set gpu.mode: auto for a CPU-only appliance", inv.Reason)
	case len(inv.GPUs) == 0:
		return nil, inv.Reason, nil
	}
	return inv, "", nil
}

// GPUs are the node's usable GPUs under its gpu.mode (see GPUs); nil when
// there are none to use.
func (n *Node) GPUs(ctx context.Context) (*gpu.Inventory, string, error) {
	return GPUs(ctx, n.Cfg.GPU.Mode, n.GPU)
}

// SelfKubeconfig is the kubeconfig this node can read itself with: the
// admin one on a server, the kubelet's on an agent.
func (n *Node) SelfKubeconfig() string {
	if n.Cfg.Node.Role == config.RoleAgent {
		return path.Join(n.Cfg.K3s.DataDir, "agent/kubelet.kubeconfig")
	}
	return K3sKubeconfig
}

// NodeRESTConfig is a client config this node can use for its own Node
// object: the admin one on a server, the kubelet's on an agent.
func (n *Node) NodeRESTConfig() (*rest.Config, error) {
	return n.restConfig(n.SelfKubeconfig())
}

// RESTConfig is the admin client config of this server, from the
// kubeconfig k3s writes.
func (n *Node) RESTConfig() (*rest.Config, error) {
	return n.restConfig(K3sKubeconfig)
}

func (n *Node) restConfig(kubeconfig string) (*rest.Config, error) {
	raw, err := n.Host.ReadFile(kubeconfig)
	if err != nil {
		return nil, err
	}
	return clientcmd.RESTConfigFromKubeConfig(raw)
}

// Kube is an admin client of this server's cluster, each request bounded
// by timeout.
func (n *Node) Kube(timeout time.Duration) (kubernetes.Interface, error) {
	rc, err := n.RESTConfig()
	if err != nil {
		return nil, err
	}
	rc.Timeout = timeout
	return kubernetes.NewForConfig(rc)
}

// Metadata is an admin client of this server's cluster that reads any
// object's metadata (custom resources too), each request bounded by
// timeout.
func (n *Node) Metadata(timeout time.Duration) (metadata.Interface, error) {
	rc, err := n.RESTConfig()
	if err != nil {
		return nil, err
	}
	rc.Timeout = timeout
	return metadata.NewForConfig(rc)
}
