//go:build integration

// Integration tier: the real perch binary installs a real k3s (built from
// the pinned module by scripts/k3s-fixture) under a sandbox root with
// --init none. Run with `make integration`.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var perchBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "perch-bin")
	if err != nil {
		panic(err)
	}
	perchBin = filepath.Join(dir, "perch")
	if out, err := exec.Command("go", "build", "-o", perchBin, ".").CombinedOutput(); err != nil {
		panic("build perch: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type sandbox struct {
	t    *testing.T
	root string
	cfg  string
	env  []string // extra environment for scripts/sandbox and perch
	// wrap runs scripts/sandbox under another command: the cluster tier's
	// ip netns exec NODE
	wrap []string
}

func newSandbox(t *testing.T) *sandbox {
	k3s := os.Getenv("PERCH_K3S_BIN")
	if k3s == "" {
		t.Fatal("PERCH_K3S_BIN is not set: run `make integration`, which builds the k3s fixture")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the integration tier runs k3s and needs root")
	}
	dir := t.TempDir()
	body, err := os.ReadFile("../../testdata/server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "appliance.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(body), "/var/cache/perch-test/k3s", k3s)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &sandbox{t: t, root: filepath.Join(dir, "root"), cfg: cfg}
	t.Cleanup(func() {
		// whatever happened, leave no k3s running
		s.perch("uninstall", "--root", s.root, "--init", "none", "--purge", "--yes")
	})
	return s
}

// cmd runs perch inside scripts/sandbox, so k3s cannot write the real /etc.
func (s *sandbox) cmd(args ...string) *exec.Cmd {
	argv := append(append(slices.Clone(s.wrap), "../../scripts/sandbox", s.root, perchBin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), s.env...)
	return cmd
}

func (s *sandbox) perch(args ...string) (string, int) {
	out, err := s.cmd(args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("perch %v: %v", args, err)
	}
	return string(out), code
}

func (s *sandbox) install(extra ...string) (string, time.Duration) {
	s.t.Helper()
	start := time.Now()
	out, code := s.perch(append([]string{"install", "--config", s.cfg, "--root", s.root, "--init", "none", "--yes"}, extra...)...)
	took := time.Since(start)
	if code != 0 {
		s.t.Fatalf("install exited %d:\n%s", code, out)
	}
	return out, took
}

// fileState is what "the same files" means: path, type, mode, content.
type fileState struct {
	Mode   fs.FileMode
	Digest string
	Ino    uint64
	MTime  time.Time
}

// snapshot records every file Perch owns under the root. k3s's own data
// dir and the logs are k3s's and change by themselves.
func (s *sandbox) snapshot() map[string]fileState {
	s.t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		if rel == "var/lib/rancher/k3s" || rel == "var/log/perch" || rel == "run" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fileState{Mode: fi.Mode(), Ino: fi.Sys().(*syscall.Stat_t).Ino, MTime: fi.ModTime()}
		if fi.Mode()&fs.ModeSymlink != 0 {
			st.Digest, _ = os.Readlink(p)
		} else {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			st.Digest = hex.EncodeToString(sum[:])
		}
		out[rel] = st
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// client talks to the sandbox's k3s with the kubeconfig Perch wrote.
func (s *sandbox) client() *kubernetes.Clientset {
	s.t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.root, "etc/perch/kubeconfig"))
	if err != nil {
		s.t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		s.t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		s.t.Fatal(err)
	}
	return cs
}

func (s *sandbox) apiVersion() string {
	s.t.Helper()
	v, err := s.client().Discovery().ServerVersion()
	if err != nil {
		s.t.Fatalf("API does not answer: %v", err)
	}
	return v.GitVersion
}

func TestIntegrationInstallConvergesAndIsIdempotent(t *testing.T) {
	s := newSandbox(t)

	out, took := s.install()
	t.Logf("cold install to API ready: %s", took.Round(time.Millisecond))
	if !strings.Contains(out, "install complete: 18 created") {
		t.Fatalf("install output:\n%s", out)
	}
	if v := s.apiVersion(); !strings.Contains(v, "k3s") {
		t.Fatalf("API version %q is not k3s", v)
	}
	for p, mode := range map[string]fs.FileMode{"etc/perch/kubeconfig": 0o600, "etc/rancher/k3s/config.yaml": 0o600, "usr/local/bin/k3s": 0o755} {
		fi, err := os.Stat(filepath.Join(s.root, p))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %04o", p, fi.Mode(), err, mode)
		}
	}

	plan, code := s.perch("plan", "--config", s.cfg, "--root", s.root, "--init", "none")
	if code != 0 || !strings.Contains(plan, "No changes: this node matches the config.") {
		t.Fatalf("plan after install (exit %d):\n%s", code, plan)
	}
	jplan, _ := s.perch("plan", "--config", s.cfg, "--root", s.root, "--init", "none", "--output", "json")
	var pj struct{ Summary map[string]int }
	if err := json.Unmarshal([]byte(jplan), &pj); err != nil {
		t.Fatalf("plan json: %v\n%s", err, jplan)
	}
	for k, n := range pj.Summary {
		if n != 0 {
			t.Errorf("json plan after install: %d to %s", n, k)
		}
	}

	before := s.snapshot()
	out, took = s.install()
	t.Logf("no-op re-run (includes the readiness check): %s", took.Round(time.Millisecond))
	if !strings.Contains(out, "no changes, the node already matched the config") {
		t.Fatalf("second install did something:\n%s", out)
	}
	after := s.snapshot()
	if len(before) != len(after) {
		t.Fatalf("file set changed: %d -> %d files", len(before), len(after))
	}
	for p, st := range before {
		if after[p] != st {
			t.Errorf("no-op re-run wrote %s: %+v -> %+v", p, st, after[p])
		}
	}

	// A second install while one holds the lock is refused, and names why.
	lock := exec.Command("flock", "-o", filepath.Join(s.root, "var/lib/perch/install.lock"), "sleep", "5")
	if err := lock.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	out, code = s.perch("install", "--config", s.cfg, "--root", s.root, "--init", "none", "--yes")
	lock.Process.Kill()
	lock.Wait()
	if code != 1 || !strings.Contains(out, "another perch install is running on this host (pid ") {
		t.Fatalf("concurrent install: exit %d\n%s", code, out)
	}

	// A config change rewrites only k3s's config and restarts k3s, which
	// reads it only at start; then the node is converged again.
	body, _ := os.ReadFile(s.cfg)
	os.WriteFile(s.cfg, []byte(strings.Replace(string(body), "perch.dev/site: test", "perch.dev/site: test-2", 1)), 0o644)
	plan, _ = s.perch("plan", "--config", s.cfg, "--root", s.root, "--init", "none")
	for _, want := range []string{"~ update file /etc/rancher/k3s/config.yaml (mode 0600)", "> restart service k3s (none) (to read the new config)", "Plan: 0 to create, 2 to update, 0 to delete, 0 to start, 1 to restart."} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan after a label change lacks %q:\n%s", want, plan)
		}
	}
	out, took = s.install()
	t.Logf("config change with k3s restart: %s", took.Round(time.Millisecond))
	if !strings.Contains(out, "install complete: 0 created, 2 updated, 0 deleted, 0 started, 1 restarted") {
		t.Fatalf("install after a config change:\n%s", out)
	}
	cfgYAML, _ := os.ReadFile(filepath.Join(s.root, "etc/rancher/k3s/config.yaml"))
	if !strings.Contains(string(cfgYAML), "perch.dev/site=test-2") {
		t.Fatalf("config.yaml not rewritten:\n%s", cfgYAML)
	}
	if plan, _ = s.perch("plan", "--config", s.cfg, "--root", s.root, "--init", "none"); !strings.Contains(plan, "No changes") {
		t.Fatalf("not converged after the change:\n%s", plan)
	}

	out, code = s.perch("uninstall", "--root", s.root, "--init", "none", "--purge", "--yes")
	if code != 0 || !strings.Contains(out, "removed service k3s") || !strings.Contains(out, "purged /var/lib/rancher/k3s") {
		t.Fatalf("uninstall (exit %d):\n%s", code, out)
	}
	if left := s.snapshot(); len(left) != 0 {
		t.Fatalf("uninstall --purge left files: %v", left)
	}
	if pids := processesMentioning(s.root); len(pids) > 0 {
		t.Fatalf("processes still running from the sandbox: %v", pids)
	}
}

// kill -9 of perch at any point, then a re-run, must give the same files
// as an uninterrupted install.
func TestIntegrationKillNineThenRerunConverges(t *testing.T) {
	s := newSandbox(t)
	s.install()
	want := contentOnly(s.snapshot())
	s.perch("uninstall", "--root", s.root, "--init", "none", "--purge", "--yes")

	for _, point := range []struct{ event, step string }{
		{"progress", "k3s-binary"},    // in the middle of copying 200 MB
		{"step-started", "k3s-ready"}, // k3s started, readiness not seen
	} {
		cmd := s.cmd("install", "--config", s.cfg, "--root", s.root, "--init", "none", "--yes", "--output", "json")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		// Kill perch itself, not the sandbox wrapper around it (it execs,
		// so they are the same process).
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := false
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev struct{ Event, Step string }
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == point.event && ev.Step == point.step {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
				break
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("never saw %s of %s", point.event, point.step)
		}
		out, _ := s.install()
		if !strings.Contains(out, "resuming: the previous install stopped in step "+point.step) {
			t.Errorf("re-run after kill at %s did not say it resumed:\n%s", point.step, out)
		}
		got := contentOnly(s.snapshot())
		for p, st := range want {
			if got[p] != st {
				t.Errorf("after kill -9 at %s %s: %s is %+v, want %+v", point.event, point.step, p, got[p], st)
			}
		}
		for p := range got {
			if _, ok := want[p]; !ok {
				t.Errorf("after kill -9 at %s: extra file %s", point.step, p)
			}
		}
		if v := s.apiVersion(); !strings.Contains(v, "k3s") {
			t.Fatalf("API after recovery: %q", v)
		}
		s.perch("uninstall", "--root", s.root, "--init", "none", "--purge", "--yes")
	}
}

// contentOnly keeps what must be equal between two installs: files that
// k3s generates anew (certificates in the kubeconfig) and the journal's
// timestamps are compared by mode only.
func contentOnly(m map[string]fileState) map[string]fileState {
	out := map[string]fileState{}
	for p, st := range m {
		st.Ino, st.MTime = 0, time.Time{}
		switch {
		case p == "etc/perch/kubeconfig", p == "etc/rancher/k3s/k3s.yaml", p == "var/lib/perch/journal.json":
			st.Digest = ""
		// random on every fresh install: a CA, keys, a password, and the
		// registry service's digest over them
		case strings.HasPrefix(p, "etc/perch/registry/"), p == "etc/perch/secrets/registry-password", p == "var/lib/perch/registry-service.digest":
			st.Digest = ""
		}
		out[p] = st
	}
	return out
}

// When k3s never becomes ready, install fails in k3s-ready, names the
// timeout key and shows the end of k3s's log, where the cause is.
func TestIntegrationNotReadyShowsK3sLog(t *testing.T) {
	s := newSandbox(t)
	broken := filepath.Join(t.TempDir(), "k3s")
	os.WriteFile(broken, []byte("#!/bin/sh\n[ \"$1\" = --version ] && { echo 'k3s version v0.0.0-broken (0)'; exit 0; }\necho 'level=fatal msg=\"starting kubernetes: preparing server: disk on fire\"'\nexit 1\n"), 0o755)
	body, _ := os.ReadFile(s.cfg)
	cfg := strings.Replace(string(body), "readyTimeout: 2m", "readyTimeout: 10s", 1)
	cfg = strings.Replace(cfg, os.Getenv("PERCH_K3S_BIN"), broken, 1)
	os.WriteFile(s.cfg, []byte(cfg), 0o644)
	out, code := s.perch("install", "--config", s.cfg, "--root", s.root, "--init", "none", "--yes")
	for _, want := range []string{
		"[k3s-ready] FAILED after",
		"k3s was not ready after 10s",
		"raise k3s.readyTimeout if the machine is slow",
		"disk on fire",
		"install failed in step k3s-ready",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// processesMentioning lists running processes whose command line names
// root: the supervisor and k3s of that sandbox.
func processesMentioning(root string) []string {
	var found []string
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), root) {
			found = append(found, filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}
