package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=v0.1.0".
var version = "dev"

func newRootCmd(s *streams) *cobra.Command {
	root := &cobra.Command{
		Use:           "perch",
		Short:         "Install and run a video-analytics appliance on k3s, offline",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w (see: %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(
		newInstallCmd(s),
		newPlanCmd(s),
		newConfigCmd(s),
		newBundleCmd(s),
		newRegistryCmd(s),
		newGPUCmd(s),
		newStatusCmd(s),
		newManifestsCmd(s),
		newUninstallCmd(s),
		newVersionCmd(s),
		newSuperviseCmd(),
		newControllerCmd(s),
	)
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes a mistyped command bad usage (exit 2):
// cobra exits 1 for one at the top and prints the help with exit 0 for
// one under a group such as config. Alone, a group still prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &usageError{fmt.Errorf("unknown command %q for %q (see: %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())}
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
}

func newVersionCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the perch version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			commit := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, kv := range bi.Settings {
					if kv.Key == "vcs.revision" && len(kv.Value) >= 12 {
						commit = " (" + kv.Value[:12] + ")"
					}
				}
			}
			fmt.Fprintf(s.out, "perch %s%s %s %s/%s\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args)}
	}
	return nil
}
