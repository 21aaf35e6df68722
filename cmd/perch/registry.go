package main

import "github.com/spf13/cobra"

// registrySubcommands are added by the files that implement them.
var registrySubcommands []func(*streams) *cobra.Command

func newRegistryCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "The appliance's own image registry: serve it, load bundles into it"}
	for _, sub := range registrySubcommands {
		cmd.AddCommand(sub(s))
	}
	return cmd
}
