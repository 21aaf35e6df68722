package main

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/perchedge/perch/installer/host"
)

// checked is a string flag whose value is checked as it is parsed, so a
// wrong one is bad usage (exit 2) before any work starts, and cobra's
// message names the flag.
type checked struct {
	p     *string
	typ   string
	check func(string) error
}

func (c checked) String() string {
	if c.p == nil {
		return ""
	}
	return *c.p
}

func (c checked) Type() string { return c.typ }

func (c checked) Set(v string) error {
	if err := c.check(v); err != nil {
		return err
	}
	*c.p = v
	return nil
}

// addRoot binds --root to p, "/" by default. An empty value is refused:
// it is what a script with an unset variable passes, and taking it for
// "/" would install onto the host the script meant to keep out of.
func addRoot(fs *pflag.FlagSet, p *string, usage string) {
	*p = "/"
	fs.Var(checked{p, "DIR", func(v string) error {
		if v == "" {
			return errors.New(`is empty; name a directory, or --root / for this machine`)
		}
		return nil
	}}, "root", usage)
}

// addInit binds --init to p, auto by default.
func addInit(fs *pflag.FlagSet, p *string) {
	*p = host.InitAuto
	fs.Var(checked{p, "auto|systemd|openrc|none", host.CheckInit}, "init",
		"init system: auto, systemd, openrc or none (perch supervises k3s itself)")
}

// addConfig binds --config (-c) to p. Given twice it is refused rather
// than the last one silently winning, and empty, like --root, it is what
// an unset variable passes.
func addConfig(fs *pflag.FlagSet, p *string, usage string) {
	given := false
	fs.VarP(checked{p, "FILE", func(v string) error {
		switch {
		case given:
			return fmt.Errorf("is given twice (%s, then %s); give one config file", *p, v)
		case v == "":
			return errors.New("is empty; name the appliance config file, or - for stdin")
		}
		given = true
		return nil
	}}, "config", "c", usage)
}
