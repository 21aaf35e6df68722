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
			if _, err := loadConfig(s, config.Source{File: args[0], Stdin: s.in}); err != nil {
				return err
			}
			name := args[0]
			if name == "-" {
				name = "stdin"
			}
			fmt.Fprintf(s.out, "%s: valid\n", name)
			return nil
		},
	})
	return cmd
}
