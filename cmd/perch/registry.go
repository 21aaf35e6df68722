package main

import "github.com/spf13/cobra"

func newRegistryCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "The appliance's own image registry: serve it, load bundles into it"}
	cmd.AddCommand(newRegistryServeCmd(s), newRegistryLoadCmd(s))
	return cmd
}
