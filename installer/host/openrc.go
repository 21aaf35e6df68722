package host

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

type openrc struct{ h *Host }

func (*openrc) Name() string { return InitOpenRC }

func scriptPath(name string) string { return "/etc/init.d/" + name }

func openrcLog(name string) string { return "/var/log/" + name + ".log" }

func (o *openrc) Install(ctx context.Context, svc Service) (bool, error) {
	if err := svc.check(); err != nil {
		return false, err
	}
	script, err := renderOpenRC(svc, o.h.Path(openrcLog(svc.Name)))
	if err != nil {
		return false, err
	}
	return o.h.WriteFile(scriptPath(svc.Name), script, svc.definitionMode(0o755))
}

func (o *openrc) installed(name string) (bool, error) { return definitionExists(o.h, name, scriptPath) }

func (o *openrc) Status(ctx context.Context, name string) (Status, error) {
	ok, err := o.installed(name)
	if err != nil || !ok {
		return Status{}, err
	}
	// rc-service answers with its exit code: 0 started, 3 stopped, 32
	// crashed and so on; only a command that did not run is a failure.
	_, code, err := o.h.run(ctx, "rc-service", name, "status")
	if code < 0 {
		return Status{Installed: true}, err
	}
	st := Status{Installed: true, Running: code == 0}
	if st.Running {
		// supervise-daemon records the pid of the program it supervises
		// here; its own pidfile holds the supervisor's.
		if b, err := o.h.ReadFile("/run/openrc/options/" + name + "/child_pid"); err == nil {
			st.PID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	return st, nil
}

func (o *openrc) Start(ctx context.Context, name string) error {
	ok, err := o.installed(name)
	if err != nil {
		return err
	}
	if !ok {
		return notInstalled(InitOpenRC, name, o.h.Path(scriptPath(name)))
	}
	if _, err := o.h.Run(ctx, "rc-update", "add", name, "default"); err != nil {
		return err
	}
	st, err := o.Status(ctx, name)
	if err != nil {
		return err
	}
	if st.Running {
		return nil
	}
	_, err = o.h.Run(ctx, "rc-service", name, "start")
	return err
}

func (o *openrc) Restart(ctx context.Context, name string) error {
	ok, err := o.installed(name)
	if err != nil {
		return err
	}
	if !ok {
		return notInstalled(InitOpenRC, name, o.h.Path(scriptPath(name)))
	}
	_, err = o.h.Run(ctx, "rc-service", name, "restart")
	return err
}

func (o *openrc) Stop(ctx context.Context, name string) error {
	st, err := o.Status(ctx, name)
	if err != nil || !st.Running {
		return err
	}
	_, err = o.h.Run(ctx, "rc-service", name, "stop")
	return err
}

func (o *openrc) Uninstall(ctx context.Context, name string) error {
	ok, err := o.installed(name)
	if err != nil || !ok {
		return err
	}
	if err := o.Stop(ctx, name); err != nil {
		return err
	}
	// rc-update del fails when the service is in no runlevel, which is
	// the state wanted.
	_, _ = o.h.Run(ctx, "rc-update", "del", name, "default")
	_, err = o.h.Remove(scriptPath(name))
	return err
}

func (o *openrc) LogTail(ctx context.Context, name string, lines int) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return o.h.logTail(openrcLog(name), lines)
}

// renderOpenRC writes a script for supervise-daemon, which restarts the
// program like systemd's Restart=always. OpenRC evals command_args, so the
// arguments are quoted twice: once as words for that eval, once as the
// value of the variable.
func renderOpenRC(s Service, logPath string) ([]byte, error) {
	if shellQuoteIfNeeded(s.Exec[0]) != s.Exec[0] {
		return nil, fmt.Errorf("service %s: program path %q has characters OpenRC does not quote; install the program under a plain path", s.Name, s.Exec[0])
	}
	args := make([]string, 0, len(s.Exec)-1)
	for _, a := range s.Exec[1:] {
		args = append(args, shellQuote(a))
	}
	var b strings.Builder
	b.WriteString("#!/sbin/openrc-run\n# Written by Perch; perch install replaces changes made here.\n\n")
	if s.Description != "" {
		fmt.Fprintf(&b, "description=%s\n", shellQuote(s.Description))
	}
	b.WriteString("supervisor=supervise-daemon\n")
	fmt.Fprintf(&b, "command=%s\n", shellQuote(s.Exec[0]))
	fmt.Fprintf(&b, "command_args=%s\n", shellQuote(strings.Join(args, " ")))
	fmt.Fprintf(&b, "output_log=%s\n", shellQuote(logPath))
	fmt.Fprintf(&b, "error_log=%s\n", shellQuote(logPath))
	// respawn_max=0 is Restart=always: never give up.
	b.WriteString("respawn_delay=5\nrespawn_max=0\n")
	if keys := s.envKeys(); len(keys) > 0 {
		// Exported at the top level, the variables reach supervise-daemon
		// and through it the program.
		b.WriteString("\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(s.Env[k]))
		}
	}
	b.WriteString("\ndepend() {\n\tafter network-online\n\twant cgroups\n}\n")
	return []byte(b.String()), nil
}
