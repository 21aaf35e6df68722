package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func perch(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from golden (go test -update, then review the diff):\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

// fixture writes a config whose k3s binary is a small stand-in, enough for
// planning: plan reads the version from its bytes and hashes the file, and
// never runs it.
func fixture(t *testing.T) (cfg, root string) {
	t.Helper()
	dir := t.TempDir()
	k3s := filepath.Join(dir, "k3s")
	os.WriteFile(k3s, []byte("#!/bin/sh\necho 'k3s version v1.31.1+k3s1 (452dbbc1)'\necho 'go version go1.22.6'\n"), 0o755)
	body, err := os.ReadFile("../../testdata/server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(dir, "appliance.yaml")
	// gpu.mode off: the golden plan must not depend on this machine's GPUs
	// (the GPU step is tested against go-nvml's mock in the installer)
	body = append(body, []byte("gpu: {mode: off}\n")...)
	os.WriteFile(cfg, bytes.ReplaceAll(body, []byte("/var/cache/perch-test/k3s"), []byte(k3s)), 0o644)
	root = filepath.Join(dir, "root")
	return cfg, root
}

var (
	perchSize = regexp.MustCompile(`(/usr/local/bin/perch) \([0-9.]+ MiB\)`)
	warnLine  = regexp.MustCompile(`(?m)^  ! warn .*\n`)
)

// normalize removes what differs between machines: the test binary's
// size, the sandbox path and this machine's preflight warnings.
func normalize(s, root string) string {
	s = strings.ReplaceAll(s, root, "ROOT")
	s = perchSize.ReplaceAllString(s, "$1 (SIZE)")
	return warnLine.ReplaceAllString(s, "")
}

func TestPlanFreshNode(t *testing.T) {
	cfg, root := fixture(t)
	out, errOut, code := perch(t, "", "plan", "--config", cfg, "--root", root, "--init", "none")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	golden(t, "plan-fresh", normalize(out, root))

	out, _, code = perch(t, "", "plan", "--config", cfg, "--root", root, "--init", "none", "--output", "json")
	var p struct {
		Summary map[string]int
		Steps   []struct{ Step string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil {
		t.Fatalf("json plan (exit %d): %s", code, out)
	}
	if p.Summary["create"] != 18 || p.Summary["start"] != 3 || len(p.Steps) != 15 {
		t.Errorf("json plan summary %v, %d steps", p.Summary, len(p.Steps))
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	cfg, root := fixture(t)
	os.MkdirAll(root, 0o755)
	out, errOut, code := perch(t, "", "install", "--dry-run", "--config", cfg, "--root", root, "--init", "none")
	if code != 0 || !strings.Contains(out, "Plan: 18 to create") {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	var written []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if p != root {
			written = append(written, p)
		}
		return nil
	})
	if len(written) > 0 {
		t.Fatalf("dry run wrote %v", written)
	}
}

func TestValidateListsEveryError(t *testing.T) {
	out, errOut, code := perch(t, "", "config", "validate", "testdata/broken.yaml")
	if code != 2 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if strings.Contains(errOut, "hunter2") {
		t.Fatal("a camera password reached the error output")
	}
	golden(t, "validate-broken", errOut)
}

func TestExampleValidatesFromStdin(t *testing.T) {
	example, _, code := perch(t, "", "config", "example")
	if code != 0 || !strings.Contains(example, "apiVersion: perch.dev/v1alpha1") {
		t.Fatalf("example: exit %d", code)
	}
	out, errOut, code := perch(t, example, "config", "validate", "-")
	if code != 0 || out != "stdin: valid\n" {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
}

// A FIFO given as the config used to block every command in open(2), deaf
// to SIGTERM; each run has a deadline so a regression fails, not hangs.
func TestConfigFIFORefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "appliance.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	for _, args := range [][]string{
		{"config", "validate", fifo},
		{"plan", "--config", fifo, "--root", root},
		{"install", "--config", fifo, "--root", root, "--dry-run"},
		{"status", "--config", fifo, "--root", root},
		{"uninstall", "--config", fifo, "--root", root, "--yes"},
	} {
		t.Run(args[0], func(t *testing.T) {
			type result struct {
				out, errOut string
				code        int
			}
			done := make(chan result, 1)
			go func() {
				out, errOut, code := perch(t, "", args...)
				done <- result{out, errOut, code}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("perch %s still blocked after 10s", strings.Join(args, " "))
			}
			want := fifo + ": 1 problem(s):\n  (file): is a named pipe, not a regular file; give the path of a regular YAML file\n"
			if r.code != 2 || r.out != "" || r.errOut != want {
				t.Fatalf("exit %d (want 2), stdout %q, stderr:\n%s\nwant stderr:\n%s", r.code, r.out, r.errOut, want)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	cfg, root := fixture(t)
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown flag", []string{"install", "--frobnicate"}, 2, "unknown flag: --frobnicate"},
		{"bad output", []string{"plan", "--config", cfg, "--output", "yaml"}, 2, `for "-o, --output" flag: must be text or json`},
		// every command that prints checks the flag the same way, before any work
		{"bad output: status", []string{"status", "-o", "yaml"}, 2, `for "-o, --output" flag: must be text or json`},
		{"bad output: gpu detect", []string{"gpu", "detect", "-o", "xml"}, 2, `for "-o, --output" flag: must be text or json`},
		{"bad output: bundle inspect", []string{"bundle", "inspect", missing, "-o", "yaml"}, 2, `for "-o, --output" flag: must be text or json`},
		{"bad output: bundle build", []string{"bundle", "build", "-o", "yaml"}, 2, `for "-o, --output" flag: must be text or json`},
		{"bad output: registry load", []string{"registry", "load", missing, "-o", "yaml"}, 2, `for "-o, --output" flag: must be text or json`},
		{"bad init", []string{"plan", "--config", cfg, "--root", root, "--init", "upstart"}, 2, `for "--init" flag: must be auto, systemd, openrc or none`},
		{"bad init: uninstall", []string{"uninstall", "--root", root, "--init", "bogus", "--yes"}, 2, `for "--init" flag`},
		// an unset variable in a script must not mean the host itself
		{"empty root: plan", []string{"plan", "--config", cfg, "--root", "", "--init", "none"}, 2, `for "--root" flag: is empty`},
		{"empty root: install", []string{"install", "--config", cfg, "--root=", "--dry-run"}, 2, `for "--root" flag: is empty`},
		{"empty root: uninstall", []string{"uninstall", "--root", "", "--yes"}, 2, `for "--root" flag: is empty`},
		{"empty root: status", []string{"status", "--root", ""}, 2, `for "--root" flag: is empty`},
		// one config, said once: the last of two must not silently win
		{"config twice", []string{"plan", "-c", cfg, "-c", missing, "--root", root}, 2, `for "-c, --config" flag: is given twice`},
		{"config twice: status", []string{"status", "--config", cfg, "--config", cfg}, 2, "is given twice"},
		{"empty config", []string{"plan", "--config", "", "--root", root}, 2, `for "-c, --config" flag: is empty`},
		{"missing --pubkey", []string{"bundle", "verify", missing, "--pubkey", missing}, 2, "pass the .pub file"},
		{"missing --password-file", []string{"registry", "load", missing, "--to", "https://registry.example", "--username", "u", "--password-file", missing}, 2, "--password-file"},
		{"invalid config", []string{"plan", "--config", "testdata/broken.yaml"}, 2, "node.serverURL: required when node.role is agent"},
		{"missing config file", []string{"plan", "--config", missing}, 2, "check the --config path"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate" for "perch"`},
		{"unknown subcommand", []string{"config", "bogus"}, 2, `unknown command "bogus" for "perch config"`},
		{"extra argument", []string{"version", "now"}, 2, "takes no arguments"},
		{"flag fixes config", []string{"plan", "--config", cfg, "--root", root, "--init", "none", "--k3s-binary", "/nonexistent/k3s"}, 1, "k3s.binary: stat /nonexistent/k3s: no such file or directory"},
		{"env fixes config", []string{"config", "validate", "-"}, 0, ""},
	}
	t.Setenv("PERCH_K3S_BINARY", "/opt/k3s")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := perch(t, "apiVersion: perch.dev/v1alpha1\nkind: Appliance\n", tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.msg) {
				t.Fatalf("exit %d (want %d), output:\n%s%s", code, tt.code, out, errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, _, code := perch(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "perch dev") {
		t.Fatalf("exit %d: %q", code, out)
	}
}

func TestBundleKeygen(t *testing.T) {
	name := filepath.Join(t.TempDir(), "site")
	out, errOut, code := perch(t, "", "bundle", "keygen", "--out", name)
	if code != 0 || !strings.Contains(out, "public key: "+name+".pub") {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	if fi, err := os.Stat(name + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key: %v %v", fi, err)
	}
	if _, errOut, code = perch(t, "", "bundle", "keygen", "--out", name); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("second keygen: exit %d %s", code, errOut)
	}
	if _, _, code = perch(t, "", "bundle", "keygen"); code != 2 {
		t.Fatalf("keygen without --out: exit %d", code)
	}
}

// A file installed with --bundle names no k3s source; commands that install
// nothing take it as it is, install asks for the bundle.
func TestFileInstalledWithBundle(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"status", "--config", "../../testdata/e2e.yaml", "--root", root},
		{"uninstall", "--config", "../../testdata/e2e.yaml", "--root", root, "--init", "none", "--yes"},
	} {
		_, stderr, code := perch(t, "", args...)
		if code == 2 || strings.Contains(stderr, "k3s.binary") {
			t.Errorf("perch %s: exit %d, %s", args[0], code, stderr)
		}
	}
	_, stderr, code := perch(t, "", "plan", "--config", "../../testdata/e2e.yaml", "--root", root, "--init", "none")
	if code != 2 || !strings.Contains(stderr, "k3s.binary: required") || !strings.Contains(stderr, "install --bundle") {
		t.Errorf("plan without a bundle: exit %d, %s", code, stderr)
	}
}
