package installer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"time"

	helmclient "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/bundle"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/k3s"
	"github.com/perchedge/perch/installer/node"
	"github.com/perchedge/perch/installer/registry"
	"github.com/perchedge/perch/installer/status"
)

// StatusSources finds what perch status reads on the node under h, as
// install set it up; what is missing is said in the report rather than
// failing.
func StatusSources(ctx context.Context, cfg *config.Appliance, h *host.Host, lib gpu.Library) status.Sources {
	var src status.Sources
	src.GPU, src.GPUErr = gpu.Detect(ctx, lib)
	src.Registry = registrySource(cfg, h)
	// an unreadable bundle only loses the "not in the bundle" judgement
	src.Bundles, _ = bundle.InstalledManifests(h)

	raw, err := h.ReadFile(node.Kubeconfig)
	switch {
	case errors.Is(err, fs.ErrNotExist) && cfg.Node.Role == config.RoleAgent:
		src.KubeErr = errors.New("this is an agent node; run perch status on a server to see the cluster")
	case errors.Is(err, fs.ErrNotExist):
		src.KubeErr = fmt.Errorf("k3s is not installed (no %s)", node.Kubeconfig)
	case err != nil:
		src.KubeErr = err
	}
	if err != nil {
		return src
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		src.KubeErr = fmt.Errorf("%s: %w", node.Kubeconfig, err)
		return src
	}
	rc.Timeout = 5 * time.Second
	if src.Kube, err = kubernetes.NewForConfig(rc); err != nil {
		src.KubeErr = err
		return src
	}
	if src.Helm, err = helmclient.NewForConfig(rc); err != nil {
		src.Kube, src.KubeErr = nil, err
		return src
	}
	if src.Meta, err = metadata.NewForConfig(rc); err != nil {
		src.Kube, src.KubeErr = nil, err
		return src
	}
	if cfg.EmbeddedEtcd() {
		// k3s answers /db/info on its API port to local clients, which
		// Perch's kubeconfig (https://127.0.0.1:6443) is
		api := src.Kube.CoreV1().RESTClient()
		src.Etcd.Info = func(ctx context.Context) ([]byte, error) { return api.Get().AbsPath("/db/info").DoRaw(ctx) }
		if cfg.EtcdMetrics() {
			src.Etcd.MetricsURL = func(host string) string { return "http://" + net.JoinHostPort(host, k3s.EtcdMetricsPort) }
		}
	}
	return src
}

// registrySource is where this node reaches the appliance registry: its
// own on a server, its server's on an agent, both trusted through the
// appliance CA.
func registrySource(cfg *config.Appliance, h *host.Host) status.RegistrySource {
	if !cfg.Registry.Enabled {
		return status.RegistrySource{Note: "registry.enabled is false"}
	}
	src := status.RegistrySource{URL: "https://" + registry.Addr(cfg)}
	var err error
	src.CAs, err = registry.TrustedCAs(h)
	if errors.Is(err, fs.ErrNotExist) {
		src.Err = fmt.Errorf("not set up (no %s)", registry.CACert)
		return src
	}
	if err != nil {
		src.Err = err
		return src
	}
	// only root can read the password; without it health is still known
	if pw, err := h.ReadFile(registry.PasswordPath); err == nil {
		src.Username, src.Password = registry.User, strings.TrimSpace(string(pw))
	}
	return src
}
