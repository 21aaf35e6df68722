package main

import (
	"github.com/spf13/cobra"

	"github.com/perchedge/perch/installer/host"
)

// newSuperviseCmd is the process the `none` init starts for each service:
// it runs the service and restarts it when it exits. Not for people.
func newSuperviseCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:    "supervise NAME",
		Short:  "Run and restart a service installed with --init none",
		Hidden: true,
		Args:   exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := host.Open(root)
			if err != nil {
				return err
			}
			return host.Supervise(cmd.Context(), h, args[0])
		},
	}
	addRoot(cmd.Flags(), &root, "root the service was installed under")
	return cmd
}
