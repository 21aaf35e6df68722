package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/perchedge/perch/installer/config"
)

func newConfigCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Write and check appliance config files"}
	cmd.AddCommand(&cobra.Command{
		Use:   "example",
		Short: "Print a fully commented config that validates",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := s.out.Write(config.Example)
			return err
		},
	}, &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a config file (- for stdin) and list every problem",
		Long: "Check a config file and list every problem with its key and a fix.\n" +
			"PERCH_* variables are applied as they would be at install. Exit 2 when invalid.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &usageError{fmt.Errorf("config validate takes one FILE (or - for stdin)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(config.Source{File: args[0], Stdin: s.in})
			// a file that names no k3s source gets one at install, from
			// --bundle; only then is a missing k3s.binary all there is
			// to say about it
			noSource := cfg.K3s.Binary == "" && cfg.Bundle.Source == ""
			if noSource {
				err = config.Without(err, config.InstallOnly...)
			}
			if err := reportConfig(s, err); err != nil {
				return err
			}
			name := args[0]
			if name == "-" {
				name = "stdin"
			}
			fmt.Fprintf(s.out, "%s: valid\n", name)
			if noSource {
				fmt.Fprintln(s.err, "note: k3s comes from the bundle: install with --bundle SRC --pubkey KEY.pub, or set k3s.binary")
			}
			return nil
		},
	})
	return cmd
}
