package host

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEscapesRefused tries every way out of the root that a config value, a
// bundle or a hostile file tree could offer, and checks that nothing lands
// outside.
func TestEscapesRefused(t *testing.T) {
	h := newHost(t)
	root := h.Root()

	// Real targets outside the root: one that exists, and names that must
	// never come into existence.
	outside := t.TempDir()
	tag := make([]byte, 6)
	_, _ = rand.Read(tag)
	fresh := "/tmp/perch-escape-" + hex.EncodeToString(tag)
	t.Cleanup(func() { os.RemoveAll(fresh) })
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}

	climb := strings.Repeat("../", strings.Count(root, "/")+2)
	links := map[string]string{
		"etc-abs":         "/etc",                      // absolute link to the real /etc
		"out-abs":         outside,                     // absolute link to a real directory
		"out-rel":         climb + outside[1:],         // relative link climbing out
		"etc/victim-abs":  victim,                      // the file itself is an absolute link
		"etc/victim-rel":  climb + victim[1:],          // the file itself climbs out
		"etc/fresh-rel":   climb + fresh[1:] + "/file", // a link to a file that does not exist yet
		"var/lib/rancher": climb + outside[1:],         // a parent directory Perch writes under
	}
	for name, target := range links {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}

	climbing := "/" + climb + fresh[1:] + "/passwd"
	writes := []string{
		"/../../etc/passwd",
		"/etc/../../../etc/perch-escape-test",
		climbing,
		"/etc-abs/perch-escape-test",
		"/out-abs/new",
		"/out-rel/new",
		"/etc/victim-abs",
		"/etc/victim-rel",
		"/etc/fresh-rel",
		"/var/lib/rancher/k3s/server/manifests/x.yaml",
	}
	for _, p := range writes {
		t.Run("write "+p, func(t *testing.T) {
			_, err := h.WriteFile(p, []byte("escaped"), 0o644)
			assertEscape(t, err, p)
			_, err = h.WriteStream(t.Context(), p, strings.NewReader("escaped"), 0o644, nil)
			assertEscape(t, err, p)
		})
	}
	others := map[string]func(string) error{
		"MkdirAll": func(p string) error { return h.MkdirAll(p, 0o755) },
		"Symlink":  func(p string) error { _, err := h.Symlink("x", p); return err },
		"ReadFile": func(p string) error { _, err := h.ReadFile(p); return err },
		"Digest":   func(p string) error { _, err := h.Digest(p); return err },
		"Remove":   func(p string) error { _, err := h.Remove(p); return err },
	}
	for op, f := range others {
		for _, p := range []string{"/out-rel/victim", "/out-abs/victim", "/var/lib/rancher/victim", "/../" + outside[1:] + "/victim"} {
			t.Run(op+" "+p, func(t *testing.T) {
				if op == "Symlink" || op == "MkdirAll" {
					p += "-new"
				}
				assertEscape(t, f(p), p)
			})
		}
	}
	// RemoveAll of a path under an escaping link must not delete outside.
	if err := h.RemoveAll("/out-rel/victim"); err == nil {
		t.Error("RemoveAll through an escaping link succeeded")
	}

	if b, err := os.ReadFile(victim); err != nil || string(b) != "untouched" {
		t.Fatalf("outside file changed: %q, %v", b, err)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Fatalf("something was created outside the root: %v", entries)
	}
	if _, err := os.Lstat(fresh); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s was created outside the root (err %v)", fresh, err)
	}
	if _, err := os.Lstat("/etc/perch-escape-test"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("/etc/perch-escape-test was created")
	}
}

func assertEscape(t *testing.T, err error, p string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error; the operation escaped the root", p)
	}
	if !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("%s: error is not ErrOutsideRoot: %v", p, err)
	}
	if !strings.Contains(err.Error(), p) {
		t.Errorf("error does not name %s: %v", p, err)
	}
}
