package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run the none init for real: the test binary is started
// detached as `supervise` (see TestMain) and supervises /bin/sh.

func newNone(t *testing.T) (*Host, Init, string) {
	t.Helper()
	h := newHost(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewInit(h, "none", exe)
	if err != nil {
		t.Fatal(err)
	}
	// Every process of the service carries this in its environment, so the
	// test can find them all, grandchildren included.
	tag := make([]byte, 8)
	_, _ = rand.Read(tag)
	mark := hex.EncodeToString(tag)
	t.Cleanup(func() {
		_ = in.Stop(context.Background(), "demo")
		for _, pid := range marked(mark) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return h, in, mark
}

func demo(mark, script string) Service {
	return Service{
		Name:        "demo",
		Description: "a test service",
		Exec:        []string{"/bin/sh", "-c", script},
		Env:         map[string]string{"PERCH_TEST_MARK": mark},
	}
}

func TestNoneLifecycle(t *testing.T) {
	h, in, mark := newNone(t)
	ctx := t.Context()

	changed, err := in.Install(ctx, demo(mark, "echo started; sleep 1000"))
	if err != nil || !changed {
		t.Fatalf("Install: changed=%v err=%v", changed, err)
	}
	if changed, err := in.Install(ctx, demo(mark, "echo started; sleep 1000")); err != nil || changed {
		t.Fatalf("second Install: changed=%v err=%v, want a no-op", changed, err)
	}
	// The definition carries the environment, which may hold secrets.
	assertMode(t, h.Path(definitionPath("demo")), 0o600)
	if st := status(t, in); !st.Installed || st.Running {
		t.Fatalf("after Install: %+v", st)
	}

	if err := in.Start(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if st := status(t, in); !st.Running {
		t.Fatalf("after Start: %+v", st)
	}
	// Start returns once the supervisor runs; the program follows at once,
	// but PID is 0 until it does.
	var st Status
	waitFor(t, "the program's pid", func() bool { st = status(t, in); return st.PID > 0 })
	sup := pidfile(t, h)
	if err := in.Start(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if again := pidfile(t, h); again != sup {
		t.Fatalf("a second Start replaced supervisor %d with %d", sup, again)
	}
	// The supervisor is in a session of its own, not in the test's.
	if sid := session(t, sup); sid != sup {
		t.Errorf("supervisor %d is in session %d, want its own", sup, sid)
	}
	waitFor(t, "the first 'started'", func() bool { return startedLines(t, h) == 1 })
	waitFor(t, "sh and sleep", func() bool { return len(marked(mark)) == 2 })
	first := marked(mark)

	// Kill the program: the supervisor restarts it, and kills the sleep
	// the dead shell left behind.
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a restarted program", func() bool {
		now := status(t, in)
		return now.Running && now.PID != 0 && now.PID != st.PID && startedLines(t, h) == 2
	})
	waitFor(t, "only the new sh and sleep", func() bool {
		now := marked(mark)
		return len(now) == 2 && !slices.ContainsFunc(now, func(p int) bool { return slices.Contains(first, p) })
	})
	if now := pidfile(t, h); now != sup {
		t.Fatalf("the supervisor changed from %d to %d", sup, now)
	}

	if err := in.Stop(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if left := marked(mark); len(left) > 0 {
		t.Fatalf("processes left after Stop: %v", left)
	}
	if alive(sup) {
		t.Fatalf("supervisor %d still runs", sup)
	}
	if _, err := h.Stat(pidPath("demo")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("pidfile left after Stop: %v", err)
	}
	if st := status(t, in); !st.Installed || st.Running {
		t.Fatalf("after Stop: %+v", st)
	}
	if err := in.Stop(ctx, "demo"); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	logs, err := in.LogTail(ctx, "demo", 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"started\n", "perch supervise demo: running /bin/sh", "restarting in 1s", "stopping pid"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "DATA RACE") {
		t.Errorf("the supervisor has a data race:\n%s", logs)
	}

	if err := in.Uninstall(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if st := status(t, in); st.Installed || st.Running {
		t.Fatalf("after Uninstall: %+v", st)
	}
	if err := in.Start(ctx, "demo"); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("Start after Uninstall: %v", err)
	}
}

func TestNoneRestartPicksUpChanges(t *testing.T) {
	h, in, mark := newNone(t)
	ctx := t.Context()
	if _, err := in.Install(ctx, demo(mark, "echo v1; exec sleep 1000")); err != nil {
		t.Fatal(err)
	}
	if err := in.Start(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	changed, err := in.Install(ctx, demo(mark, "echo v2; exec sleep 1000"))
	if err != nil || !changed {
		t.Fatalf("Install v2: changed=%v err=%v", changed, err)
	}
	if err := in.Restart(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v2 in the log", func() bool {
		logs, _ := in.LogTail(ctx, "demo", 20)
		return strings.Contains(logs, "v2\n")
	})
	if n := len(marked(mark)); n != 1 {
		t.Fatalf("%d processes after Restart, want 1", n)
	}
	_ = h
}

func TestNoneStalePidfile(t *testing.T) {
	h, in, mark := newNone(t)
	ctx := t.Context()
	if _, err := in.Install(ctx, demo(mark, "echo started; exec sleep 1000")); err != nil {
		t.Fatal(err)
	}

	// A pid that has exited.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	writePidfile(t, h, gone.Process.Pid)
	if st := status(t, in); st.Running {
		t.Fatalf("a dead pid counts as running: %+v", st)
	}
	// A live pid that is not a supervisor, as after pid reuse: this test.
	writePidfile(t, h, os.Getpid())
	if st := status(t, in); st.Running {
		t.Fatalf("a recycled pid counts as running: %+v", st)
	}
	if err := in.Stop(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Stat(pidPath("demo")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stop kept a stale pidfile: %v", err)
	}

	writePidfile(t, h, os.Getpid())
	if err := in.Start(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if sup := pidfile(t, h); sup == os.Getpid() || !status(t, in).Running {
		t.Fatalf("Start did not replace the stale pidfile (pid %d)", sup)
	}

	// A supervisor killed with -9 takes its program along (Pdeathsig) and
	// leaves a pidfile that the next Start sees through.
	sup := pidfile(t, h)
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the program to die with its supervisor", func() bool { return len(marked(mark)) == 0 })
	waitFor(t, "a killed supervisor to count as stopped", func() bool { return !status(t, in).Running })
	if err := in.Start(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the program again", func() bool { return len(marked(mark)) == 1 })
}

func TestNoneSecondSupervisorRefused(t *testing.T) {
	h, in, mark := newNone(t)
	ctx := t.Context()
	if _, err := in.Install(ctx, demo(mark, "exec sleep 1000")); err != nil {
		t.Fatal(err)
	}
	if err := in.Start(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	out, err := exec.Command(exe, "supervise", "--root", h.Root(), "demo").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already supervised") {
		t.Fatalf("a second supervisor: %v\n%s", err, out)
	}
	if n := len(marked(mark)); n != 1 {
		t.Fatalf("%d programs run, want 1", n)
	}
}

func TestRotateLog(t *testing.T) {
	h := newHost(t)
	f, err := h.openLog(logPath("demo"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &supervisor{h: h, svc: Service{Name: "demo"}, log: f}
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for range maxLogSize / len(line) {
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	s.rotateLog()
	old, err := h.Stat(logPath("demo") + ".1")
	if err != nil || old.Size() != maxLogSize {
		t.Fatalf("kept log: %v, %v; want %d bytes", old, err, maxLogSize)
	}
	// Writers keep appending through their descriptors, now from the start.
	s.say("after rotation")
	b, err := h.ReadFile(logPath("demo"))
	if err != nil || !bytes.HasPrefix(b, []byte(time.Now().Format("2006"))) || len(b) > 200 {
		t.Fatalf("log after rotation: %q, %v", b, err)
	}
}

func TestNoneStartReportsBrokenSupervisor(t *testing.T) {
	h := newHost(t)
	in, err := NewInit(h, "none", "/bin/false")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Install(t.Context(), Service{Name: "demo", Exec: []string{"/bin/true"}}); err != nil {
		t.Fatal(err)
	}
	err = in.Start(t.Context(), "demo")
	if err == nil || !strings.Contains(err.Error(), "exited at once") {
		t.Fatalf("Start with a supervisor that fails: %v", err)
	}
}

func status(t *testing.T, in Init) Status {
	t.Helper()
	st, err := in.Status(t.Context(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func pidfile(t *testing.T, h *Host) int {
	t.Helper()
	b, err := h.ReadFile(pidPath("demo"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func writePidfile(t *testing.T, h *Host, pid int) {
	t.Helper()
	if _, err := h.WriteFile(pidPath("demo"), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func startedLines(t *testing.T, h *Host) int {
	t.Helper()
	b, err := h.ReadFile(logPath("demo"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		if line == "started\n" {
			n++
		}
	}
	return n
}

// session reads a process's session id, field 6 of /proc/PID/stat.
func session(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

// marked lists the living processes whose environment carries mark.
func marked(mark string) []int {
	entries, _ := os.ReadDir("/proc")
	want := []byte("PERCH_TEST_MARK=" + mark + "\x00")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err == nil && bytes.Contains(env, want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
