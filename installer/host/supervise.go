package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

const (
	// Restart backoff: quick for a blip, slow for a program that cannot
	// start, and forgiven once it has run for a while.
	backoffFirst = time.Second
	backoffMax   = 30 * time.Second
	backoffReset = 60 * time.Second
	// stopGrace is what a program gets between SIGTERM and SIGKILL; k3s
	// needs a few seconds to close its datastore.
	stopGrace = 20 * time.Second
	// maxLogSize bounds a log that no logrotate looks after; the older half
	// of history is kept in NAME.log.1.
	maxLogSize     = 32 << 20
	logCheckPeriod = 30 * time.Second
)

// Supervise runs the service name, defined by --init none's Install, until
// ctx ends or the process gets SIGTERM or SIGINT. It is the body of the
// hidden `perch supervise` command that Start runs detached.
//
// It records its own pid in /run/perch/NAME.pid (locked, so a second
// supervisor for the same service exits at once), appends the program's
// output to /var/log/perch/NAME.log, restarts the program whenever it exits,
// and on the way out stops the program's process group: SIGTERM, then
// SIGKILL after 20 s.
func Supervise(ctx context.Context, h *Host, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	svc, err := loadService(h, name)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Caught rather than ignored: an ignored signal stays ignored in the
	// program exec'd next, and a hangup is no reason to stop a service.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	release, err := claimPidfile(h, name)
	if err != nil {
		return err
	}
	defer release()

	logf, err := h.openLog(logPath(name))
	if err != nil {
		return err
	}
	defer logf.Close()
	s := &supervisor{h: h, svc: svc, log: logf}
	return s.loop(ctx)
}

func loadService(h *Host, name string) (Service, error) {
	var svc Service
	b, err := h.ReadFile(definitionPath(name))
	if err != nil {
		return svc, fmt.Errorf("supervise %s: %w; install the service first", name, err)
	}
	if err := json.Unmarshal(b, &svc); err != nil {
		return svc, fmt.Errorf("supervise %s: %s is not a service definition: %w; reinstall the service", name, h.Path(definitionPath(name)), err)
	}
	if svc.Name != name {
		return svc, fmt.Errorf("supervise %s: %s defines service %q; reinstall the service", name, h.Path(definitionPath(name)), svc.Name)
	}
	return svc, svc.check()
}

// claimPidfile writes this process's pid under an exclusive lock held for
// the supervisor's life. The lock, not the file's existence, decides who
// supervises: a pidfile left by a killed supervisor has no lock on it.
func claimPidfile(h *Host, name string) (release func(), err error) {
	p := pidPath(name)
	n, err := h.name(p)
	if err != nil {
		return nil, err
	}
	if err := h.mkdirs("run/perch", 0o755); err != nil {
		return nil, h.wrap("create pidfile", p, err)
	}
	for range 10 {
		f, err := h.t.OpenFile(n, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, h.wrap("create pidfile", p, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			holder, _ := io.ReadAll(f)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("supervise %s: already supervised by pid %s (%s is locked); stop it first", name, trimPid(holder), h.Path(p))
			}
			return nil, h.wrap("lock pidfile", p, err)
		}
		// A supervisor that was exiting may have unlinked the file between
		// our open and our lock; a lock on an unlinked file guards nothing,
		// so start over with the file now at the path.
		fi, err1 := f.Stat()
		cur, err2 := h.t.Lstat(n)
		if err1 != nil || err2 != nil || !os.SameFile(fi, cur) {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, h.wrap("write pidfile", p, err)
		}
		if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
			f.Close()
			return nil, h.wrap("write pidfile", p, err)
		}
		return func() {
			// Unlink before unlocking, so that no one locks a file about
			// to vanish; the check above covers the other order.
			if cur, err := h.t.Lstat(n); err == nil && os.SameFile(fi, cur) {
				_ = h.t.Remove(n)
			}
			f.Close()
		}, nil
	}
	return nil, fmt.Errorf("supervise %s: %s keeps being replaced while locking it; is another perch supervise starting?", name, h.Path(p))
}

func trimPid(b []byte) string {
	if s := string(b); len(s) > 0 && s[len(s)-1] == '\n' {
		return s[:len(s)-1]
	}
	return string(b)
}

type supervisor struct {
	h   *Host
	svc Service
	log *os.File
}

// say writes the supervisor's own lines into the service log. They avoid
// the program's vocabulary ("started", "ready") so that a reader, or a test,
// counting the program's lines is not misled.
func (s *supervisor) say(format string, args ...any) {
	fmt.Fprintf(s.log, "%s perch supervise %s: %s\n", time.Now().Format(time.RFC3339), s.svc.Name, fmt.Sprintf(format, args...))
}

func (s *supervisor) loop(ctx context.Context) error {
	logCheck := time.NewTicker(logCheckPeriod)
	defer logCheck.Stop()
	backoff := backoffFirst
	for ctx.Err() == nil {
		s.rotateLog()
		began := time.Now()
		pid, done, err := s.spawn()
		if err != nil {
			s.say("cannot run %s: %v", s.svc.Exec[0], err)
		} else {
			s.say("running %s as pid %d", s.svc.Exec[0], pid)
		wait:
			for {
				select {
				case err := <-done:
					s.say("pid %d exited (%v) after %s", pid, exitText(err), time.Since(began).Round(time.Millisecond))
					// What the program left in its group is orphaned
					// now; a restarted program must not meet it.
					_ = syscall.Kill(-pid, syscall.SIGKILL)
					break wait
				case <-logCheck.C:
					s.rotateLog()
				case <-ctx.Done():
					s.terminate(pid, done)
					return nil
				}
			}
		}
		if time.Since(began) >= backoffReset {
			backoff = backoffFirst
		}
		s.say("restarting in %s", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, backoffMax)
	}
	s.say("stopping")
	return nil
}

// spawn starts the program in its own process group so that stopping it
// reaches what it forked. The goroutine that starts it stays on one OS
// thread until the program exits, because Pdeathsig fires when the forking
// thread ends: that way the program dies with a supervisor killed by
// SIGKILL instead of running on unsupervised next to its replacement.
func (s *supervisor) spawn() (int, <-chan error, error) {
	cmd := exec.Command(s.svc.Exec[0], s.svc.Exec[1:]...)
	env := []string{"PATH=" + servicePath(s.h.Root())}
	for _, k := range s.svc.envKeys() {
		env = append(env, k+"="+s.svc.Env[k])
	}
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return 0, nil, err
	}
	return cmd.Process.Pid, done, nil
}

// terminate stops the program's process group: SIGTERM, and SIGKILL for
// whatever is left after the grace period or after the program exited.
func (s *supervisor) terminate(pid int, done <-chan error) {
	s.say("stopping pid %d", pid)
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case err := <-done:
		s.say("pid %d exited (%v)", pid, exitText(err))
	case <-time.After(stopGrace):
		s.say("pid %d still runs after %s; killing it", pid, stopGrace)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// rotateLog copies a log that grew past maxLogSize to NAME.log.1 and
// truncates it in place: the program keeps writing through its own
// descriptor, which O_APPEND moves to the new end. Lines written between the
// copy and the truncation are lost, the usual price of copytruncate.
func (s *supervisor) rotateLog() {
	fi, err := s.log.Stat()
	if err != nil || fi.Size() < maxLogSize {
		return
	}
	p := logPath(s.svc.Name)
	n, _ := s.h.name(p)
	src, err := s.h.t.OpenFile(n, os.O_RDONLY, 0)
	if err != nil {
		return
	}
	defer src.Close()
	if _, err := s.h.WriteStream(context.Background(), p+".1", src, 0o600, nil); err != nil {
		s.say("cannot keep the old log: %v", err)
		return
	}
	if err := s.log.Truncate(0); err != nil && !errors.Is(err, fs.ErrClosed) {
		s.say("cannot truncate the log: %v", err)
	}
}
