package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/installer/apps"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/node"
)

func newManifestsCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{Use: "manifests", Short: "The HelmCharts Perch deploys through k3s"}
	cmd.AddCommand(newManifestsRenderCmd(s))
	return cmd
}

func newManifestsRenderCmd(s *streams) *cobra.Command {
	var configFile, out string
	var gpus int
	cmd := &cobra.Command{
		Use:   "render --config F --out DIR [--bundle SRC] [--gpus N]",
		Short: "Write the HelmCharts and chart archives install would deploy, for review or GitOps",
		Long: "Write DIR/server/manifests/*.yaml and DIR/server/static/charts/*.tgz, the\n" +
			"layout k3s reads under its data dir, exactly as install would. Upstream charts\n" +
			"come from the bundle (bundle.source or --bundle; its signature is checked).\n" +
			"GPUs are read from this machine unless --gpus says how many the target has.\n" +
			"Files that would not change are not touched. Exit 2 when the config is invalid.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &usageError{errors.New("--out DIR is required")}
			}
			if gpus < 0 {
				return &usageError{fmt.Errorf("--gpus must be 0 or more, got %d", gpus)}
			}
			cfg, err := loadConfig(s, config.Source{File: configFile, Stdin: s.in, Flags: cmd.Flags()})
			if err != nil {
				return err
			}
			var gpuInv *gpu.Inventory
			if cmd.Flags().Changed("gpus") {
				gpuInv = &gpu.Inventory{GPUs: make([]gpu.Device, gpus)}
			} else if gpuInv, err = detectGPUs(cmd.Context(), s, &cfg); err != nil {
				return err
			}
			rendered, skipped, err := apps.Review(cmd.Context(), &cfg, gpuInv)
			if err != nil {
				return err
			}
			written, err := apps.WriteDir(out, rendered)
			if err != nil {
				return err
			}
			for _, w := range written {
				fmt.Fprintf(s.out, "wrote %s\n", w)
			}
			fmt.Fprintf(s.out, "%d app(s) in %s, %d file(s) changed\n", len(rendered), out, len(written))
			for _, sk := range skipped {
				fmt.Fprintf(s.err, "not rendered: %s\n", sk)
			}
			return nil
		},
	}
	addConfig(cmd.Flags(), &configFile, "appliance config file (YAML, TOML or JSON; - for stdin)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write server/manifests and server/static/charts under")
	cmd.Flags().IntVar(&gpus, "gpus", 0, "render for a node with this many GPUs instead of reading this machine's")
	config.AddFlags(cmd.Flags())
	return cmd
}

// detectGPUs reads this machine's GPUs under gpu.mode, as install does:
// with auto, a broken driver means a CPU-only render, with a warning.
func detectGPUs(ctx context.Context, s *streams, cfg *config.Appliance) (*gpu.Inventory, error) {
	inv, why, err := node.GPUs(ctx, cfg.GPU.Mode, gpu.Open())
	if err != nil {
		return nil, fmt.Errorf("%w; or pass --gpus N to render for another node", err)
	}
	if why != "" {
		fmt.Fprintf(s.err, "warning: %s; rendering CPU-only (pass --gpus N to render for a GPU node)\n", why)
	}
	return inv, nil
}
