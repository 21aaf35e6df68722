package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entries lists everything under dir, so a test can say what a command
// that writes nothing wrote.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			got = append(got, p)
		}
		return nil
	})
	return got
}

func TestPlanCreatesNoRoot(t *testing.T) {
	cfg, root := fixture(t) // root does not exist yet
	out, errOut, code := perch(t, "", "plan", "--config", cfg, "--root", root, "--init", "none")
	if code != 0 || !strings.Contains(out, "Plan: 18 to create") {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("plan created --root %s (stat: %v); it must write nothing", root, err)
	}
}

func TestUninstallNeverInstalledWritesNothing(t *testing.T) {
	root := t.TempDir()
	out, errOut, code := perch(t, "", "uninstall", "--root", root, "--init", "none", "--yes")
	if code != 0 || !strings.Contains(out, "nothing to remove") {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	if got := entries(t, root); len(got) > 0 {
		t.Fatalf("uninstall of a never-installed root wrote %v", got)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	if _, errOut, code := perch(t, "", "uninstall", "--root", missing, "--init", "none", "--yes"); code != 0 {
		t.Fatalf("uninstall on a missing root: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("uninstall created --root %s", missing)
	}
}

func TestUninstallJSON(t *testing.T) {
	root := t.TempDir()
	out, errOut, code := perch(t, "", "uninstall", "--root", root, "--init", "none", "--yes", "-o", "json")
	var got struct {
		Removed []string `json:"removed"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Removed == nil {
		t.Fatalf("exit %d, want a JSON document with a removed list, got:\n%s%s", code, out, errOut)
	}
}

// A plan that cannot be made is a failure, whether it fails before the
// first step (no bundle) or in the middle (a file the step cannot read).
func TestFailedPlan(t *testing.T) {
	cfg, root := fixture(t)
	badRoot := filepath.Join(t.TempDir(), "root")
	// the registry-tls step reads the certificate: a directory there cannot
	// be planned
	os.MkdirAll(filepath.Join(badRoot, "etc/perch/registry/tls.crt"), 0o755)
	key := filepath.Join(t.TempDir(), "site")
	if _, errOut, code := perch(t, "", "bundle", "keygen", "--out", key); code != 0 {
		t.Fatal(errOut)
	}
	for _, tt := range []struct {
		name string
		args []string
	}{
		// a directory that holds no bundle, as a stick without one would
		{"no bundle", []string{"--config", "../../testdata/e2e.yaml", "--root", root, "--bundle", t.TempDir(), "--pubkey", key + ".pub"}},
		{"failed step", []string{"--config", cfg, "--root", badRoot}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"plan", "--init", "none"}, tt.args...)
			out, errOut, code := perch(t, "", args...)
			if code != 1 {
				t.Errorf("exit %d, want 1:\n%s%s", code, out, errOut)
			}
			for _, bad := range []string{"No changes", "Plan: "} {
				if strings.Contains(out, bad) {
					t.Errorf("a failed plan printed %q:\n%s", bad, out)
				}
			}
			if !strings.Contains(out, "Plan failed") || errOut == "" {
				t.Errorf("a failed plan must say so; stdout:\n%s\nstderr:\n%s", out, errOut)
			}

			out, _, code = perch(t, "", append(args, "-o", "json")...)
			var p map[string]any
			if err := json.Unmarshal([]byte(out), &p); err != nil || code != 1 {
				t.Fatalf("json: exit %d, %v:\n%s", code, err, out)
			}
			if _, ok := p["steps"].([]any); !ok {
				t.Errorf("json steps is %v, want an array", p["steps"])
			}
			if e, _ := p["error"].(string); e == "" {
				t.Errorf("json of a failed plan has no error: %s", out)
			}
			if _, ok := p["summary"]; ok {
				t.Errorf("json of a failed plan has a summary: %s", out)
			}
		})
	}
}

// The example installs as the README shows it: from a bundle, with
// --bundle and --pubkey on the command line.
func TestExampleInstallsWithBundle(t *testing.T) {
	example, _, _ := perch(t, "", "config", "example")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "appliance.yaml")
	os.WriteFile(cfg, []byte(example), 0o644)
	if out, errOut, code := perch(t, "", "config", "validate", cfg); code != 0 {
		t.Fatalf("validate the example: exit %d: %s%s", code, out, errOut)
	}
	key := filepath.Join(dir, "site")
	perch(t, "", "bundle", "keygen", "--out", key)
	_, errOut, code := perch(t, "", "plan", "--config", cfg, "--bundle", t.TempDir(), "--pubkey", key+".pub",
		"--root", filepath.Join(dir, "root"), "--init", "none")
	// the directory holds no bundle: the plan fails there, not on the config
	if code == 2 || strings.Contains(errOut, "k3s.binary") || !strings.Contains(errOut, "bundle.source") {
		t.Fatalf("plan --config example --bundle: exit %d: %s", code, errOut)
	}
}
