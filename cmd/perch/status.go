package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer"
	"github.com/perchedge/perch/installer/host"
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
			"deployed: its HelmChart, helm-install Job, workloads and every pod its\n" +
			"release owns), this host's GPUs, the appliance registry's health, and the\n" +
			"alerts Prometheus fires when monitoring is deployed (a Prometheus that does\n" +
			"not answer is not healthy). A pod that cannot pull an image the installed\n" +
			"bundle lacks is named with the image. Exits 0 when all is healthy, 1 when\n" +
			"not (the last line says why). Without --config the registry settings are\n" +
			"the defaults.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			rep, err := status.Collect(ctx, installer.StatusSources(ctx, &cfg, h, gpu.Open()))
			if err != nil {
				return err
			}
			if t.output.json() {
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
	addConfig(f, &t.configFile, "appliance config file, for the registry settings (default: the defaults)")
	addRoot(f, &t.root, "the node's files are under this directory (sandboxes, tests)")
	addOutput(f, &t.output, "")
	t.flags = f
	return cmd
}
