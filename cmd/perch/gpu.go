package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/perchedge/perch/gpu"
)

func newGPUCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{Use: "gpu", Short: "The node's NVIDIA GPUs: what NVML reports, the labels Perch applies"}
	cmd.AddCommand(newGPUDetectCmd(s))
	return cmd
}

// gpuReport is `perch gpu detect --output json`: the inventory and the labels.
type gpuReport struct {
	*gpu.Inventory
	Labels map[string]string `json:"labels"`
}

func newGPUDetectCmd(s *streams) *cobra.Command {
	var format output
	cmd := &cobra.Command{
		Use:   "detect [--output text|json]",
		Short: "List the NVIDIA GPUs and the node labels Perch would apply",
		Long: "Read the driver version and every GPU through NVML (libnvidia-ml.so.1).\n" +
			"Without an NVIDIA driver this lists zero GPUs, says why, and exits 0;\n" +
			"a driver that is installed but broken is an error with what to do.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := gpu.Detect(cmd.Context(), gpu.Open())
			if err != nil {
				return fmt.Errorf("detect GPUs: %w", err)
			}
			r := gpuReport{Inventory: inv, Labels: gpu.Labels(inv)}
			if format.json() {
				return writeJSON(s.out, r)
			}
			printGPUs(s.out, r)
			return nil
		},
	}
	addOutput(cmd.Flags(), &format, "")
	return cmd
}

func printGPUs(w io.Writer, r gpuReport) {
	if r.DriverVersion != "" {
		fmt.Fprintf(w, "driver   %s (CUDA %s)\n", r.DriverVersion, orDash(r.CUDADriverVersion))
	}
	fmt.Fprintf(w, "gpus     %d\n", len(r.GPUs))
	if r.Reason != "" {
		fmt.Fprintf(w, "         %s\n", r.Reason)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, g := range r.GPUs {
		mig := ""
		if g.MIGEnabled {
			mig = "  MIG"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%d MiB\t%d.%d %s\t%s\t%s%s\n",
			g.Index, g.Name, g.MemoryMiB, g.ComputeMajor, g.ComputeMinor, g.Family, orDash(g.BusID), g.UUID, mig)
	}
	tw.Flush()
	fmt.Fprintf(w, "labels   %d\n", len(r.Labels))
	keys := make([]string, 0, len(r.Labels))
	for k := range r.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s=%s\n", k, r.Labels[k])
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
