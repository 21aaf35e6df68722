package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/perchedge/perch/installer"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
)

// target is what every command acting on a node takes: the config and
// where to apply it.
type target struct {
	configFile string
	root       string
	init       string
	output     output
	flags      *pflag.FlagSet
}

func (t *target) bind(fs *pflag.FlagSet, withConfigFlags bool) {
	addConfig(fs, &t.configFile, "appliance config file (YAML, TOML or JSON; - for stdin)")
	addRoot(fs, &t.root, "install under this directory instead of / (sandboxes, tests)")
	addInit(fs, &t.init)
	addOutput(fs, &t.output, "events")
	if withConfigFlags {
		config.AddFlags(fs)
	}
	t.flags = fs
}

// load loads the config; problems at the ignore key paths do not count.
func (t *target) load(s *streams, ignore ...string) (config.Appliance, error) {
	return loadConfig(s, config.Source{File: t.configFile, Stdin: s.in, Flags: t.flags}, ignore...)
}

// loadConfig is how every command reads a config: every problem listed
// with its key, and a config that cannot be read or used is bad input
// (exit 2), whichever command reads it. Problems at the ignore key paths
// do not count.
func loadConfig(s *streams, src config.Source, ignore ...string) (config.Appliance, error) {
	cfg, err := config.Load(src)
	return cfg, reportConfig(s, config.Without(err, ignore...))
}

// reportConfig is how a config that cannot be used is said: every
// problem listed with its key, exit 2.
func reportConfig(s *streams, err error) error {
	var inv *config.InvalidError
	switch {
	case errors.As(err, &inv):
		fmt.Fprintln(s.err, inv.Error())
		return &alreadyReported{&usageError{err}}
	case err != nil:
		return &usageError{err}
	}
	return nil
}

// loadOrDefault is the config of commands that install nothing (status,
// uninstall): the defaults without --config, and install-only keys do not
// count, since a file installed with --bundle names no k3s source itself.
func (t *target) loadOrDefault(s *streams) (config.Appliance, error) {
	if t.configFile == "" {
		return config.Default(), nil
	}
	return t.load(s, config.InstallOnly...)
}

// installer validates flags, loads the config and prepares an installer.
func (t *target) installer(s *streams, sink engine.Sink) (*installer.Installer, error) {
	cfg, err := t.load(s)
	if err != nil {
		return nil, err
	}
	return installer.New(cfg, installer.Options{Root: t.root, Init: t.init, Sink: sink})
}

func (t *target) sink(s *streams) engine.Sink {
	if t.output.json() {
		return engine.JSONPrinter(s.out)
	}
	return engine.TextPrinter(s.out)
}

func newInstallCmd(s *streams) *cobra.Command {
	var t target
	var dryRun, yes bool
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install or update this node to match the appliance config",
		Long: "Install k3s and the appliance on this node, changing only what differs from\n" +
			"the config. A re-run on an installed node changes nothing; an interrupted\n" +
			"install resumes. Config comes from --config, PERCH_* variables and flags;\n" +
			"without --config on a terminal, a wizard asks for it.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if t.configFile == "" && !t.output.json() && isTerminal(s.in) && isTerminal(s.out) {
				return runWizard(cmd.Context(), s, &t, dryRun)
			}
			inst, err := t.installer(s, t.sink(s))
			if err != nil {
				return err
			}
			if dryRun {
				return printPlan(cmd.Context(), s, &t, inst)
			}
			if !yes && isTerminal(s.in) && !t.output.json() {
				if err := printPlan(cmd.Context(), s, &t, inst); err != nil {
					return err
				}
				if !confirm(s, "Apply this plan?") {
					return errors.New("cancelled; nothing was changed")
				}
			}
			_, err = inst.Install(cmd.Context())
			var se *engine.StepError
			if errors.As(err, &se) {
				return &alreadyReported{err} // the event stream showed it
			}
			return err
		},
	}
	t.bind(cmd.Flags(), true)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask before applying the plan")
	return cmd
}

func newPlanCmd(s *streams) *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what install would change, changing nothing",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inst, err := t.installer(s, nil)
			if err != nil {
				return err
			}
			return printPlan(cmd.Context(), s, &t, inst)
		},
	}
	t.bind(cmd.Flags(), true)
	return cmd
}

// printPlan prints the plan, or, when it could not be made, the steps
// planned before the failure and no summary: the error (on stderr, or in
// the JSON) says why, and the exit status is not 0.
func printPlan(ctx context.Context, s *streams, t *target, inst *installer.Installer) error {
	p, err := inst.Plan(ctx)
	if t.output.json() {
		out := struct {
			Node    string            `json:"node"`
			Steps   []engine.StepPlan `json:"steps"`
			Summary *engine.Summary   `json:"summary,omitempty"`
			Error   string            `json:"error,omitempty"`
		}{Node: inst.Describe(), Steps: p.Steps}
		if out.Steps == nil {
			out.Steps = []engine.StepPlan{}
		}
		if err != nil {
			out.Error = err.Error()
		} else {
			sum := p.Summary()
			out.Summary = &sum
		}
		if encErr := writeJSON(s.out, out); encErr != nil {
			return encErr
		}
		if err != nil {
			return &alreadyReported{err}
		}
		return nil
	}
	fmt.Fprintf(s.out, "Plan for %s\n\n", inst.Describe())
	if err != nil {
		fmt.Fprint(s.out, p.FailedText(err))
		return err
	}
	fmt.Fprint(s.out, p.Text())
	return nil
}

func newUninstallCmd(s *streams) *cobra.Command {
	var t target
	var purge, yes bool
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop and remove what perch installed (data is kept unless --purge)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := t.loadOrDefault(s)
			if err != nil {
				return err
			}
			inst, err := installer.New(cfg, installer.Options{Root: t.root, Init: t.init})
			if err != nil {
				return err
			}
			if !yes && isTerminal(s.in) {
				what := "Remove the k3s service and the files perch installed"
				if purge {
					what += ", AND delete all cluster data"
				}
				if !confirm(s, what+"?") {
					return errors.New("cancelled; nothing was changed")
				}
			}
			done, err := inst.Uninstall(cmd.Context(), purge)
			if t.output.json() {
				// what was removed before a failure is listed too: it is gone
				out := struct {
					Removed []string `json:"removed"`
					Error   string   `json:"error,omitempty"`
				}{Removed: append([]string{}, done...)}
				if err != nil {
					out.Error = err.Error()
				}
				if encErr := writeJSON(s.out, out); encErr != nil {
					return encErr
				}
				if err != nil {
					return &alreadyReported{err}
				}
				return nil
			}
			for _, d := range done {
				fmt.Fprintln(s.out, d)
			}
			if err == nil && len(done) == 0 {
				fmt.Fprintln(s.out, "nothing to remove: perch has not installed anything here")
			}
			return err
		},
	}
	t.bind(cmd.Flags(), false)
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the k3s data dir and perch's state and logs")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func confirm(s *streams, q string) bool {
	fmt.Fprintf(s.out, "%s [y/N] ", q)
	line, _ := bufio.NewReader(s.in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}
