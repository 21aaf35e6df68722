package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Where --init none keeps its state, all under the root so that several
// sandboxes on one machine never see each other's services.
func definitionPath(name string) string { return "/etc/perch/services/" + name + ".json" }
func pidPath(name string) string        { return "/run/perch/" + name + ".pid" }
func logPath(name string) string        { return "/var/log/perch/" + name + ".log" }

const (
	// startTimeout is how long Start waits for the supervisor to claim its
	// pidfile; it only has to exec and take a lock.
	startTimeout = 10 * time.Second
	// stopTimeout exceeds the supervisor's own 20 s grace for the program,
	// so a normal slow shutdown is never cut short from outside.
	stopTimeout = 30 * time.Second
	pollEvery   = 50 * time.Millisecond
)

// defaultPath is the PATH a supervised program gets when its Service sets
// none, the same one systemd gives services: the caller's PATH is not
// carried over, so a service behaves the same however it was started.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// servicePath is defaultPath with, under a --root other than /, the root's
// own /usr/local dirs first: what Perch installed there (k3s and its
// links) is then found by name, as it is on a real root.
func servicePath(root string) string {
	if root == "/" {
		return defaultPath
	}
	return filepath.Join(root, "usr/local/sbin") + ":" + filepath.Join(root, "usr/local/bin") + ":" + defaultPath
}

// none is the init system for machines without one (containers, demos,
// tests): Perch runs `perch supervise` per service, detached from the caller.
type none struct {
	h   *Host
	bin string
}

func (*none) Name() string { return InitNone }

func (n *none) Install(ctx context.Context, svc Service) (bool, error) {
	if err := svc.check(); err != nil {
		return false, err
	}
	b, err := json.MarshalIndent(svc, "", "  ")
	if err != nil {
		return false, fmt.Errorf("encode service %s: %w", svc.Name, err)
	}
	return n.h.WriteFile(definitionPath(svc.Name), append(b, '\n'), svc.definitionMode(0o644))
}

func (n *none) Status(ctx context.Context, name string) (Status, error) {
	if err := checkName(name); err != nil {
		return Status{}, err
	}
	var st Status
	_, err := n.h.Stat(definitionPath(name))
	switch {
	case err == nil:
		st.Installed = true
	case !errors.Is(err, fs.ErrNotExist):
		return st, err
	}
	pid, err := n.supervisor(name)
	if err != nil || pid == 0 {
		return st, err
	}
	st.Running = true
	st.PID = childOf(pid)
	return st, nil
}

// supervisor returns the pid of the live supervisor of name, or 0. A pidfile
// alone proves nothing: its process may have died (kill -9, a reboot of a
// container) and the pid may since belong to something else, so the
// process's command line must still say it supervises this service here.
func (n *none) supervisor(name string) (int, error) {
	b, err := n.h.ReadFile(pidPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !n.isSupervisor(pid, name) {
		return 0, nil
	}
	return pid, nil
}

func (n *none) isSupervisor(pid int, name string) bool {
	return alive(pid) && supervises(cmdline(pid), n.h.Root(), name)
}

// supervises reads a `perch supervise --root ROOT NAME` command line loosely
// enough that flags may come before the subcommand.
func supervises(args []string, root, name string) bool {
	if len(args) < 3 || args[len(args)-1] != name {
		return false
	}
	sub, argRoot := false, "/"
	for i, a := range args[1 : len(args)-1] {
		switch {
		case a == "supervise":
			sub = true
		case a == "--root" && i+2 < len(args)-1:
			argRoot = args[i+2]
		case strings.HasPrefix(a, "--root="):
			argRoot = strings.TrimPrefix(a, "--root=")
		}
	}
	return sub && argRoot == root
}

func (n *none) Start(ctx context.Context, name string) error {
	st, err := n.Status(ctx, name)
	if err != nil {
		return err
	}
	if st.Running {
		return nil
	}
	if !st.Installed {
		return notInstalled(InitNone, name, n.h.Path(definitionPath(name)))
	}
	// Whatever is in the pidfile is stale: Status found no supervisor.
	if _, err := n.h.Remove(pidPath(name)); err != nil {
		return err
	}
	logf, err := n.h.openLog(logPath(name))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(n.bin, "supervise", "--root", n.h.Root(), name)
	// stdin nil is /dev/null. The supervisor's own output goes to the
	// service log, so that a supervisor that dies at once says why where
	// LogTail looks.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=" + servicePath(n.h.Root())}
	cmd.Dir = "/"
	// A session of its own: no terminal to hang up on it and no process
	// group that Ctrl-C in the caller's shell reaches.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor for %s: %w", name, err)
	}
	// Reap it if it exits while this process lives, or it would linger as a
	// zombie; once this process exits, init adopts it.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			// Another Start may have won the race for the lock; that is
			// success too.
			if pid, _ := n.supervisor(name); pid != 0 {
				return nil
			}
			tail, _ := n.h.logTail(logPath(name), errorTailLines)
			return fmt.Errorf("supervisor for %s exited at once (%v); the end of %s:\n%s", name, err, n.h.Path(logPath(name)), strings.TrimRight(tail, "\n"))
		case <-deadline.C:
			return fmt.Errorf("supervisor for %s (pid %d) did not write %s within %s; see %s", name, cmd.Process.Pid, n.h.Path(pidPath(name)), startTimeout, n.h.Path(logPath(name)))
		case <-ctx.Done():
			// The supervisor is detached on purpose and keeps running; Stop
			// ends it.
			return ctx.Err()
		case <-tick.C:
			if pid, _ := n.supervisor(name); pid == cmd.Process.Pid {
				return nil
			}
		}
	}
}

func (n *none) Restart(ctx context.Context, name string) error {
	if err := n.Stop(ctx, name); err != nil {
		return err
	}
	return n.Start(ctx, name)
}

// Stop asks the supervisor to stop, which stops the program with the
// supervisor's grace period, and falls back to SIGKILL for both only when
// the supervisor itself hangs.
func (n *none) Stop(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	pid, err := n.supervisor(name)
	if err != nil {
		return err
	}
	if pid == 0 {
		_, err := n.h.Remove(pidPath(name))
		return err
	}
	child := childOf(pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: signal supervisor %d: %w", name, pid, err)
	}
	if err := waitGone(ctx, pid, stopTimeout); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("stop %s: %w", name, err)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if child > 0 {
			_ = syscall.Kill(-child, syscall.SIGKILL)
		}
		if err := waitGone(ctx, pid, 5*time.Second); err != nil {
			return fmt.Errorf("stop %s: supervisor %d survives SIGKILL: %w", name, pid, err)
		}
	}
	// The supervisor removes its pidfile when it exits cleanly, not after
	// SIGKILL.
	_, err = n.h.Remove(pidPath(name))
	return err
}

func waitGone(ctx context.Context, pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still runs after %s", pid, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
	return nil
}

// Uninstall keeps the log: it is what explains a service that had to go.
func (n *none) Uninstall(ctx context.Context, name string) error {
	if err := n.Stop(ctx, name); err != nil {
		return err
	}
	_, err := n.h.Remove(definitionPath(name))
	return err
}

func (n *none) LogTail(ctx context.Context, name string, lines int) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return n.h.logTail(logPath(name), lines)
}

// openLog opens a log for appending. O_APPEND makes every writer (the
// supervisor, the program, what the program leaves behind) add at the end,
// and lets the supervisor truncate the file under them.
func (h *Host) openLog(p string) (*os.File, error) {
	n, err := h.name(p)
	if err != nil {
		return nil, err
	}
	dir, _, err := split(n)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", p, err)
	}
	if err := h.mkdirs(dir, 0o755); err != nil {
		return nil, h.wrap("open log", p, err)
	}
	f, err := h.t.OpenFile(n, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, h.wrap("open log", p, err)
	}
	return f, nil
}
