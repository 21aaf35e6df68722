package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	helmclient "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/k3s"
	"github.com/perchedge/perch/installer/mirror"
	"github.com/perchedge/perch/installer/status"
)

// statusTimeout bounds the whole report: a wedged API server or registry
// must not hang a command people run to find out what is wrong.
const statusTimeout = 30 * time.Second

func newStatusCmd(s *streams) *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:   "status [--config F] [--root DIR] [--output text|json]",
		Short: "Show the nodes, GPUs, apps, registry and firing alerts; exit 1 unless healthy",
		Long: "Read the cluster through /etc/perch/kubeconfig (nodes, and each app Perch\n" +
			"deployed: its HelmChart, helm-install Job and workloads), this host's GPUs,\n" +
			"the appliance registry's health, and the alerts Prometheus fires when\n" +
			"monitoring is deployed. Exits 0 when all is healthy, 1 when not (the last\n" +
			"line says why). Without --config the registry settings are the defaults.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := t.check(); err != nil {
				return err
			}
			cfg, err := t.loadOrDefault(s)
			if err != nil {
				return err
			}
			h, err := host.Open(t.root)
			if err != nil {
				return err
			}
			defer h.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), statusTimeout)
			defer cancel()
			rep, err := status.Collect(ctx, statusSources(ctx, &cfg, h))
			if err != nil {
				return err
			}
			if t.output == "json" {
				err = status.WriteJSON(s.out, rep)
			} else {
				err = status.WriteText(s.out, rep)
			}
			if err != nil {
				return err
			}
			if !rep.Healthy {
				return &alreadyReported{errors.New("not healthy: " + strings.Join(rep.Reasons, ", "))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&t.configFile, "config", "c", "", "appliance config file, for the registry settings (default: the defaults)")
	f.StringVar(&t.root, "root", "/", "the node's files are under this directory (sandboxes, tests)")
	f.StringVarP(&t.output, "output", "o", "text", "output format: text or json")
	t.flags = f
	return cmd
}

// statusSources finds what status reads on this node; what is missing is
// said in the report rather than failing the command.
func statusSources(ctx context.Context, cfg *config.Appliance, h *host.Host) status.Sources {
	var src status.Sources
	src.GPU, src.GPUErr = gpu.Detect(ctx, gpu.Open())
	src.Registry = registrySource(cfg, h)

	raw, err := h.ReadFile(k3s.Kubeconfig)
	switch {
	case errors.Is(err, fs.ErrNotExist) && cfg.Node.Role == config.RoleAgent:
		src.KubeErr = errors.New("this is an agent node; run perch status on a server to see the cluster")
	case errors.Is(err, fs.ErrNotExist):
		src.KubeErr = fmt.Errorf("k3s is not installed (no %s)", k3s.Kubeconfig)
	case err != nil:
		src.KubeErr = err
	}
	if err != nil {
		return src
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		src.KubeErr = fmt.Errorf("%s: %w", k3s.Kubeconfig, err)
		return src
	}
	rc.Timeout = 5 * time.Second
	if src.Kube, err = kubernetes.NewForConfig(rc); err != nil {
		src.KubeErr = err
		return src
	}
	if src.Helm, err = helmclient.NewForConfig(rc); err != nil {
		src.Kube, src.KubeErr = nil, err
	}
	return src
}

// registrySource is where this node reaches the appliance registry, as
// install set it up: its own on a server, its server's on an agent, both
// trusted through the appliance CA.
func registrySource(cfg *config.Appliance, h *host.Host) status.RegistrySource {
	if !cfg.Registry.Enabled {
		return status.RegistrySource{Note: "registry.enabled is false"}
	}
	hostname := "127.0.0.1"
	if cfg.Node.Role == config.RoleAgent {
		if u, err := url.Parse(cfg.Node.ServerURL); err == nil && u.Hostname() != "" {
			hostname = u.Hostname()
		}
	}
	src := status.RegistrySource{URL: "https://" + net.JoinHostPort(hostname, strconv.Itoa(cfg.Registry.Port))}
	ca, err := h.ReadFile(mirror.CACert)
	if err != nil {
		src.Err = fmt.Errorf("not set up (no %s)", mirror.CACert)
		return src
	}
	src.CAs = x509.NewCertPool()
	if !src.CAs.AppendCertsFromPEM(ca) {
		src.Err = fmt.Errorf("%s holds no certificate; re-run perch install", mirror.CACert)
		return src
	}
	// only root can read the password; without it health is still known
	if pw, err := h.ReadFile(mirror.PasswordPath); err == nil {
		src.Username, src.Password = mirror.User, strings.TrimSpace(string(pw))
	}
	return src
}
