package host

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

type systemd struct{ h *Host }

func (*systemd) Name() string { return InitSystemd }

func unitPath(name string) string { return "/etc/systemd/system/" + name + ".service" }

func (s *systemd) Install(ctx context.Context, svc Service) (bool, error) {
	if err := svc.check(); err != nil {
		return false, err
	}
	changed, err := s.h.WriteFile(unitPath(svc.Name), renderUnit(svc), svc.definitionMode(0o644))
	if err != nil || !changed {
		return changed, err
	}
	if _, err := s.h.Run(ctx, "systemctl", "daemon-reload"); err != nil {
		return true, err
	}
	return true, nil
}

func (s *systemd) installed(name string) (bool, error) { return definitionExists(s.h, name, unitPath) }

func (s *systemd) Status(ctx context.Context, name string) (Status, error) {
	ok, err := s.installed(name)
	if err != nil || !ok {
		return Status{}, err
	}
	out, err := s.h.Run(ctx, "systemctl", "show", "--property=ActiveState,MainPID", name+".service")
	if err != nil {
		return Status{Installed: true}, err
	}
	st := Status{Installed: true}
	for line := range strings.Lines(string(out)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "ActiveState":
			// "activating" is a notify service that is not ready yet or
			// one waiting to be restarted: not running in either case.
			st.Running = v == "active" || v == "reloading"
		case "MainPID":
			st.PID, _ = strconv.Atoi(v)
		}
	}
	return st, nil
}

func (s *systemd) Start(ctx context.Context, name string) error {
	ok, err := s.installed(name)
	if err != nil {
		return err
	}
	if !ok {
		return notInstalled(InitSystemd, name, s.h.Path(unitPath(name)))
	}
	_, err = s.h.Run(ctx, "systemctl", "enable", "--now", name+".service")
	return err
}

func (s *systemd) Restart(ctx context.Context, name string) error {
	ok, err := s.installed(name)
	if err != nil {
		return err
	}
	if !ok {
		return notInstalled(InitSystemd, name, s.h.Path(unitPath(name)))
	}
	_, err = s.h.Run(ctx, "systemctl", "restart", name+".service")
	return err
}

func (s *systemd) Stop(ctx context.Context, name string) error {
	ok, err := s.installed(name)
	if err != nil || !ok {
		return err
	}
	_, err = s.h.Run(ctx, "systemctl", "stop", name+".service")
	return err
}

func (s *systemd) Uninstall(ctx context.Context, name string) error {
	ok, err := s.installed(name)
	if err != nil || !ok {
		return err
	}
	if _, err := s.h.Run(ctx, "systemctl", "disable", "--now", name+".service"); err != nil {
		return err
	}
	if _, err := s.h.Remove(unitPath(name)); err != nil {
		return err
	}
	if _, err := s.h.Run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	// A unit that failed before would otherwise linger in `systemctl
	// --failed`; there is nothing to report if it never failed.
	_, _ = s.h.Run(ctx, "systemctl", "reset-failed", name+".service")
	return nil
}

func (s *systemd) LogTail(ctx context.Context, name string, lines int) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	out, err := s.h.Run(ctx, "journalctl", "-u", name+".service", "-n", strconv.Itoa(lines), "--no-pager")
	return string(out), err
}

// renderUnit follows k3s's own unit: KillMode=process so that restarting
// k3s leaves the containers it started running, Delegate=yes so that the
// kubelet may manage its cgroups, and no limits on files and tasks.
func renderUnit(s Service) []byte {
	var b strings.Builder
	b.WriteString("# Written by Perch; perch install replaces changes made here.\n")
	b.WriteString("[Unit]\n")
	if s.Description != "" {
		fmt.Fprintf(&b, "Description=%s\n", escapeSpecifiers(s.Description))
	}
	b.WriteString("Wants=network-online.target\nAfter=network-online.target\n\n")
	b.WriteString("[Install]\nWantedBy=multi-user.target\n\n")
	b.WriteString("[Service]\n")
	if s.Notify {
		b.WriteString("Type=notify\nTimeoutStartSec=0\n")
	} else {
		b.WriteString("Type=exec\n")
	}
	for _, k := range s.envKeys() {
		fmt.Fprintf(&b, "Environment=%s\n", unitQuote(k+"="+s.Env[k]))
	}
	b.WriteString("KillMode=process\nDelegate=yes\n")
	b.WriteString("LimitNOFILE=1048576\nLimitNPROC=infinity\nLimitCORE=infinity\nTasksMax=infinity\n")
	b.WriteString("Restart=always\nRestartSec=5s\n")
	words := make([]string, len(s.Exec))
	for i, a := range s.Exec {
		words[i] = unitWord(a)
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(words, " "))
	return []byte(b.String())
}

// unitWord writes one ExecStart argument. systemd splits on spaces, expands
// $VAR and %-specifiers even inside quotes, and treats a lone ";" as a
// command separator, so anything beyond plain characters is quoted and "$"
// and "%" are doubled.
func unitWord(a string) string {
	plain := a != "" && a != ";" && strings.IndexFunc(a, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@", r))
	}) < 0
	if plain {
		return a
	}
	return unitQuote(strings.ReplaceAll(a, "$", "$$"))
}

// unitQuote double-quotes a value with C-style escapes, as systemd parses
// Environment= and ExecStart= words. "$" means nothing in Environment=.
func unitQuote(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `"`, `\"`)
	return `"` + escapeSpecifiers(v) + `"`
}

func escapeSpecifiers(v string) string { return strings.ReplaceAll(v, "%", "%%") }
