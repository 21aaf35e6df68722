//go:build integration

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tmuxPane is the real perch binary on an 80x24 terminal, driven the way a
// person would: keys in, screen out.
type tmuxPane struct {
	t      *testing.T
	socket string
}

func (p *tmuxPane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// keys sends tmux key names (Enter, Down, C-u); text sends characters.
func (p *tmuxPane) keys(keys ...string) {
	p.t.Helper()
	p.tmux(append([]string{"send-keys", "-t", "wiz"}, keys...)...)
}

func (p *tmuxPane) text(s string) {
	p.t.Helper()
	p.tmux("send-keys", "-t", "wiz", "-l", s)
}

func (p *tmuxPane) screen() string {
	p.t.Helper()
	return p.tmux("capture-pane", "-p", "-t", "wiz")
}

// waitFor polls the pane until it shows text, and fails with the pane.
func (p *tmuxPane) waitFor(text string) string {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var s string
	for time.Now().Before(deadline) {
		if s = p.screen(); strings.Contains(s, text) {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("the pane never showed %q; it shows:\n%s", text, s)
	return ""
}

// waitGone polls the pane until it no longer shows text, and fails with the
// pane.
func (p *tmuxPane) waitGone(text string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var s string
	for time.Now().Before(deadline) {
		if s = p.screen(); !strings.Contains(s, text) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("the pane still shows %q; it shows:\n%s", text, s)
}

// capture keeps a screen for the release notes when PERCH_TUI_CAPTURE_DIR
// is set.
func (p *tmuxPane) capture(name, screen string) {
	p.t.Helper()
	dir := os.Getenv("PERCH_TUI_CAPTURE_DIR")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(screen), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// TestIntegrationTUIWizardDryRun goes through the whole wizard on the real
// binary with a real (small) signed bundle, saves the config, and checks
// that the file validates, is what was typed, and plans exactly what the
// wizard showed.
func TestIntegrationTUIWizardDryRun(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed: run scripts/test-deps")
	}
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	must(t, os.MkdirAll(root, 0o755))

	// a bundle perch itself builds and signs, with a stand-in k3s: the
	// wizard verifies it for real
	k3s := filepath.Join(tmp, "k3s")
	must(t, os.WriteFile(k3s, []byte("#!/bin/sh\necho 'k3s version v1.31.1+k3s1 (452dbbc1)'\necho 'go version go1.22.6'\n"), 0o755))
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(perchBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("perch %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("bundle", "keygen", "--out", filepath.Join(tmp, "site"))
	spec := filepath.Join(tmp, "spec.yaml")
	must(t, os.WriteFile(spec, []byte("apiVersion: perch.dev/v1alpha1\nkind: BundleSpec\nname: site-a\nversion: 1.0.0\narch: "+runtime.GOARCH+"\nk3s:\n  binary: "+k3s+"\n"), 0o644))
	bundle := filepath.Join(tmp, "site-a.tar.zst")
	run("bundle", "build", "--spec", spec, "--out", bundle, "--key", filepath.Join(tmp, "site.key"))

	p := &tmuxPane{t: t, socket: fmt.Sprintf("perch-tui-test-%d", os.Getpid())}
	conf := filepath.Join(tmp, "tmux.conf")
	// no status line: the program gets all 24 rows; keep the pane after
	// perch exits to read what it printed
	must(t, os.WriteFile(conf, []byte("set -g status off\nset -g remain-on-exit on\nset -g history-limit 5000\n"), 0o644))
	cmd := fmt.Sprintf("%s install --dry-run --root %s --init none; echo \"perch exited $?\"; sleep 600", perchBin, root)
	p.tmux("-f", conf, "new-session", "-d", "-s", "wiz", "-x", "80", "-y", "24", "sh", "-c", cmd)
	t.Cleanup(func() { exec.Command("tmux", "-L", p.socket, "kill-server").Run() })

	p.capture("welcome", p.waitFor("Preflight"))
	p.keys("Enter")
	p.waitFor("part in the cluster")
	p.keys("Down", "Down", "Down", "Enter") // join as an agent
	p.waitFor("Server URL")
	p.keys("C-u")
	p.text("edge-07")
	p.keys("Enter", "Enter") // node IP: auto
	p.text("https://192.0.2.1:6443")
	p.keys("Enter")
	p.text("K10test::server:s3cret")
	p.keys("Enter")

	p.waitFor("Public key")
	// the path row is the one above the key, whatever sticks this machine has
	for i := 0; i < 12; i++ {
		p.keys("Down")
	}
	p.keys("Up")
	p.text(bundle)
	p.keys("Down")
	p.text(filepath.Join(tmp, "site.pub"))
	p.keys("Enter")
	s := p.waitFor("Press enter to continue")
	if !strings.Contains(s, "Verified: site-a 1.0.0") || !strings.Contains(s, "v1.31.1+k3s1") {
		t.Fatalf("the verified bundle is not described:\n%s", s)
	}
	p.keys("Enter")

	p.waitFor("+ Add camera")
	p.keys("Enter")
	p.text("gate-1")
	p.keys("Enter")
	p.text("rtsp://192.0.2.10:554/stream1")
	p.keys("Enter")
	p.waitFor("gate-1")
	p.keys("Down", "Enter")
	p.text("dock-2")
	p.keys("Tab")
	p.text("rtsp://192.0.2.11/live")
	p.keys("Enter")
	p.waitFor("dock-2")
	p.keys("d") // remove it again
	// the screen showed "pods per GPU" before the key too: wait for the
	// row to go, or a slow machine reads the frame before the delete
	p.waitGone("dock-2")
	p.keys("Down", "Down", "C-u")
	p.text("2")
	p.keys("Enter")

	p.waitFor("Retention")
	p.keys("C-u")
	p.text("14d")
	p.keys("Enter", "Enter")

	p.capture("review", p.waitFor("[ Save ]"))
	p.keys("Enter") // save to the default path
	p.waitFor("(mode 0600)")
	p.keys("Enter") // Show plan
	shown := p.waitFor("nothing was changed")
	p.capture("install", shown)
	if !strings.Contains(shown, "Plan for node edge-07: agent joining https://192.0.2.1:6443") {
		t.Errorf("the plan screen does not show the plan:\n%s", shown)
	}
	p.keys("Enter")
	p.waitFor("Dry run: nothing was installed")
	p.keys("Enter")
	p.waitFor("perch exited 0")
	after := p.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "wiz")

	saved := filepath.Join(root, "etc/perch/appliance.yaml")
	fi, err := os.Stat(saved)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("saved with mode %v; it holds the token", fi.Mode().Perm())
	}
	got := strings.ReplaceAll(readFile(t, saved), tmp, "$TMP")
	if want := readFile(t, "testdata/tui/expected-appliance.yaml"); got != want {
		t.Errorf("saved config differs from testdata/tui/expected-appliance.yaml:\n--- got\n%s\n--- want\n%s", got, want)
	}
	if out := run("config", "validate", saved); !strings.Contains(out, "valid") {
		t.Errorf("config validate: %s", out)
	}

	// the file installs what the wizard planned
	filePlan := run("install", "--dry-run", "--config", saved, "--root", root, "--init", "none")
	wizardPlan := planOf(after)
	if wizardPlan == "" || wizardPlan != planOf(filePlan) {
		t.Errorf("the wizard's plan and the saved file's differ:\n--- wizard\n%s\n--- perch install --dry-run --config\n%s", wizardPlan, filePlan)
	}
}

// planOf is the plan printed in out: from "Plan for" to the summary line.
func planOf(out string) string {
	i := strings.Index(out, "Plan for ")
	if i < 0 {
		return ""
	}
	out = out[i:]
	j := strings.Index(out, "\nPlan: ")
	if j < 0 {
		return ""
	}
	if end := strings.Index(out[j+1:], "\n"); end >= 0 {
		out = out[:j+1+end]
	}
	// a pane pads lines with spaces
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}
