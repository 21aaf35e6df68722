package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/wizard"
)

// runWizard asks on the terminal for what --config would have said, then
// installs (or, with --dry-run, shows the plan) like the file mode does.
func runWizard(ctx context.Context, s *streams, t *target, dryRun bool) error {
	o := wizard.Options{
		Backend: &wizard.System{Root: t.root, Init: t.init},
		DryRun:  dryRun,
		Tick:    time.Second,
		Root:    t.root,
		Init:    t.init,
	}
	// PERCH_* variables and flags fill the wizard's fields in; whatever they
	// leave missing or wrong is asked for and validated there.
	var inv *config.InvalidError
	start, err := config.Load(config.Source{Flags: t.flags})
	if errors.As(err, &inv) {
		if bad := wizard.Unfixable(inv.Errs); len(bad) > 0 {
			return &usageError{fmt.Errorf("the wizard has no screen for these values; fix or unset what they came from, then start it again:\n  %s",
				strings.ReplaceAll(bad.Error(), "\n", "\n  "))}
		}
	}
	if err == nil || inv != nil {
		o.Start = &start
	}
	res, err := wizard.Run(ctx, s.in, s.out, o)
	if err != nil {
		return err
	}
	if res.SavedTo != "" {
		fmt.Fprintf(s.err, "config saved to %s; to install with it unattended: perch install --config %s --yes\n", res.SavedTo, res.SavedTo)
	}
	switch {
	case res.Cancelled:
		return errors.New("cancelled; nothing was changed")
	case dryRun:
		if res.Plan != nil {
			fmt.Fprint(s.out, res.Plan.Text(res.PlanErr))
		}
		return res.PlanErr
	case res.PlanErr != nil:
		return res.PlanErr
	case res.InstallErr != nil:
		return res.InstallErr
	}
	fmt.Fprintln(s.out, "install complete")
	return nil
}
