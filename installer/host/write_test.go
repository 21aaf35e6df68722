package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Open of a missing root: got %v, want an error naming it", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Open of a file: got %v, want 'not a directory'", err)
	}

	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("sub", 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := Open("sub")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if want := filepath.Join(dir, "sub"); h.Root() != want {
		t.Errorf("Root() = %q, want the absolute %q", h.Root(), want)
	}
	if got, want := h.Path("/etc/rancher/k3s/config.yaml"), filepath.Join(dir, "sub/etc/rancher/k3s/config.yaml"); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	if got, want := h.Path("/../../etc/passwd"), filepath.Join(dir, "sub/etc/passwd"); got != want {
		t.Errorf("Path of a climbing path = %q, want it clamped to %q", got, want)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	h := newHost(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)

	const p = "/etc/rancher/k3s/config.yaml"
	changed, err := h.WriteFile(p, []byte("token: s3cret\n"), 0o600)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	real := h.Path(p)
	if b, _ := os.ReadFile(real); string(b) != "token: s3cret\n" {
		t.Fatalf("content = %q", b)
	}
	assertMode(t, real, 0o600)
	// Parents are 0755 whatever the umask: k3s's non-root readers need them.
	assertMode(t, h.Path("/etc/rancher"), 0o755|fs.ModeDir)
	assertMode(t, h.Path("/etc/rancher/k3s"), 0o755|fs.ModeDir)

	// 0644 must survive a umask of 077.
	if _, err := h.WriteFile("/etc/hosts.perch", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	assertMode(t, h.Path("/etc/hosts.perch"), 0o644)
	assertNoTemp(t, filepath.Dir(real))

	// No-op: same content and mode touches nothing.
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(real, past, past); err != nil {
		t.Fatal(err)
	}
	before := statT(t, real)
	changed, err = h.WriteFile(p, []byte("token: s3cret\n"), 0o600)
	if err != nil || changed {
		t.Fatalf("identical write: changed=%v err=%v, want a no-op", changed, err)
	}
	after := statT(t, real)
	if !after.ModTime().Equal(past) || !os.SameFile(before, after) {
		t.Fatalf("identical write touched the file: mtime %v, same inode %v", after.ModTime(), os.SameFile(before, after))
	}

	// Only the mode differs: fixed in place, same inode.
	changed, err = h.WriteFile(p, []byte("token: s3cret\n"), 0o640)
	if err != nil || !changed {
		t.Fatalf("mode change: changed=%v err=%v", changed, err)
	}
	assertMode(t, real, 0o640)
	if !os.SameFile(before, statT(t, real)) {
		t.Error("a mode-only change replaced the file")
	}

	// New content: a new file renamed over the old one.
	changed, err = h.WriteFile(p, []byte("token: other\n"), 0o600)
	if err != nil || !changed {
		t.Fatalf("content change: changed=%v err=%v", changed, err)
	}
	if b, _ := os.ReadFile(real); string(b) != "token: other\n" {
		t.Fatalf("content = %q", b)
	}
	assertMode(t, real, 0o600)
	assertNoTemp(t, filepath.Dir(real))
}

func TestWriteFileReusesLeftoverTemp(t *testing.T) {
	h := newHost(t)
	dir := h.Path("/etc/perch")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// What a write killed with -9 leaves behind.
	tmp := filepath.Join(dir, ".config.yaml.perch-tmp")
	if err := os.WriteFile(tmp, []byte("half a wri"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteFile("/etc/perch/config.yaml", []byte("whole\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "config.yaml")); string(b) != "whole\n" {
		t.Fatalf("content = %q", b)
	}
	assertNoTemp(t, dir)

	// A symlink planted at the temporary name must not redirect the write.
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, tmp); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteFile("/etc/perch/config.yaml", []byte("again\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("write went through the planted temp symlink: victim = %q", b)
	}
	assertNoTemp(t, dir)
}

func TestWriteFileFollowsLinksInsideRoot(t *testing.T) {
	h := newHost(t)
	if _, err := h.WriteFile("/etc/real.conf", []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.conf", h.Path("/etc/link.conf")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteFile("/etc/link.conf", []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := h.Stat("/etc/link.conf")
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi, err)
	}
	if b, _ := h.ReadFile("/etc/real.conf"); string(b) != "b" {
		t.Fatalf("target content = %q, want b", b)
	}
	assertNoTemp(t, h.Path("/etc"))
}

func TestWriteFileRefusesNonFiles(t *testing.T) {
	h := newHost(t)
	if err := h.MkdirAll("/etc/dir", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteFile("/etc/dir", []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), "/etc/dir") {
		t.Fatalf("write over a directory: %v", err)
	}
	if _, err := h.WriteFile("etc/relative", []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Fatalf("relative path: %v", err)
	}
	if _, err := h.WriteFile("/", []byte("x"), 0o644); err == nil {
		t.Fatal("writing the root itself succeeded")
	}
}

func TestWriteStream(t *testing.T) {
	h := newHost(t)
	data := make([]byte, 3*copyChunk+123)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := "sha256:" + hex.EncodeToString(sum[:])
	var calls int
	var last int64
	digest, err := h.WriteStream(t.Context(), "/usr/local/bin/k3s", bytes.NewReader(data), 0o755, func(n int64) {
		calls++
		last = n
	})
	if err != nil {
		t.Fatal(err)
	}
	if digest != want {
		t.Fatalf("digest %s, want %s", digest, want)
	}
	if last != int64(len(data)) || calls < 4 {
		t.Fatalf("progress: %d calls, last %d; want >= 4 calls ending at %d", calls, last, len(data))
	}
	if got, err := h.Digest("/usr/local/bin/k3s"); err != nil || got != want {
		t.Fatalf("Digest = %s, %v", got, err)
	}
	assertMode(t, h.Path("/usr/local/bin/k3s"), 0o755)
	assertNoTemp(t, h.Path("/usr/local/bin"))

	if _, err := h.Digest("/usr/local/bin/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Digest of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestWriteStreamCancel(t *testing.T) {
	h := newHost(t)
	if _, err := h.WriteFile("/usr/local/bin/k3s", []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := &cancellingReader{cancel: cancel, after: 2}
	_, err := h.WriteStream(ctx, "/usr/local/bin/k3s", r, 0o755, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if b, _ := h.ReadFile("/usr/local/bin/k3s"); string(b) != "old" {
		t.Fatalf("a cancelled copy replaced the file: %q", b)
	}
	assertNoTemp(t, h.Path("/usr/local/bin"))

	// A failing source leaves the old file and no temporary either.
	_, err = h.WriteStream(t.Context(), "/usr/local/bin/k3s", io.MultiReader(strings.NewReader("part"), errReader{}), 0o755, nil)
	if err == nil || !strings.Contains(err.Error(), "read source") {
		t.Fatalf("failing source: %v", err)
	}
	if b, _ := h.ReadFile("/usr/local/bin/k3s"); string(b) != "old" {
		t.Fatalf("a failed copy replaced the file: %q", b)
	}
	assertNoTemp(t, h.Path("/usr/local/bin"))
}

type cancellingReader struct {
	cancel func()
	after  int
	reads  int
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	r.reads++
	if r.reads == r.after {
		r.cancel()
	}
	return len(p), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("usb stick pulled") }

func TestSymlink(t *testing.T) {
	h := newHost(t)
	changed, err := h.Symlink("k3s", "/usr/local/bin/kubectl")
	if err != nil || !changed {
		t.Fatalf("create: changed=%v err=%v", changed, err)
	}
	changed, err = h.Symlink("k3s", "/usr/local/bin/kubectl")
	if err != nil || changed {
		t.Fatalf("same link again: changed=%v err=%v, want a no-op", changed, err)
	}
	changed, err = h.Symlink("k3s-v2", "/usr/local/bin/kubectl")
	if err != nil || !changed {
		t.Fatalf("retarget: changed=%v err=%v", changed, err)
	}
	if got, _ := os.Readlink(h.Path("/usr/local/bin/kubectl")); got != "k3s-v2" {
		t.Fatalf("link = %q", got)
	}
	assertNoTemp(t, h.Path("/usr/local/bin"))

	if _, err := h.WriteFile("/usr/local/bin/crictl", []byte("a real binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Symlink("k3s", "/usr/local/bin/crictl"); err == nil || !strings.Contains(err.Error(), "not a symlink") {
		t.Fatalf("link over a file: %v", err)
	}
	if b, _ := h.ReadFile("/usr/local/bin/crictl"); string(b) != "a real binary" {
		t.Fatal("the file was destroyed")
	}
}

func TestRemove(t *testing.T) {
	h := newHost(t)
	removed, err := h.Remove("/etc/nothing")
	if err != nil || removed {
		t.Fatalf("missing: removed=%v err=%v", removed, err)
	}
	if _, err := h.WriteFile("/etc/something", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	removed, err = h.Remove("/etc/something")
	if err != nil || !removed {
		t.Fatalf("existing: removed=%v err=%v", removed, err)
	}
	if err := h.RemoveAll("/"); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("RemoveAll of the root: %v", err)
	}
	if _, err := os.Stat(h.Root()); err != nil {
		t.Fatal(err)
	}

	// RemoveAll deletes links, not what they point to.
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.MkdirAll("/var/lib/rancher", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, h.Path("/var/lib/rancher/data")); err != nil {
		t.Fatal(err)
	}
	if err := h.RemoveAll("/var/lib/rancher"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Fatalf("RemoveAll followed a link out of the root: %v", err)
	}
	if err := h.RemoveAll("/var/lib/rancher"); err != nil {
		t.Fatalf("RemoveAll of a missing path: %v", err)
	}
}

func TestMkdirAllModes(t *testing.T) {
	h := newHost(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := h.MkdirAll("/var/lib/rancher/k3s/server/tls", 0o700); err != nil {
		t.Fatal(err)
	}
	assertMode(t, h.Path("/var/lib/rancher"), 0o755|fs.ModeDir)
	assertMode(t, h.Path("/var/lib/rancher/k3s/server/tls"), 0o700|fs.ModeDir)
	if _, err := h.WriteFile("/etc/file", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.MkdirAll("/etc/file/sub", 0o755); err == nil {
		t.Fatal("MkdirAll through a file succeeded")
	}
	if err := h.MkdirAll("/etc/file", 0o755); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("MkdirAll on a file: %v", err)
	}
}

func TestStatDoesNotFollow(t *testing.T) {
	h := newHost(t)
	if _, err := h.Symlink("target", "/etc/link"); err != nil {
		t.Fatal(err)
	}
	fi, err := h.Stat("/etc/link")
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("Stat = %v, %v; want the link itself", fi, err)
	}
}

// The machine's own root follows absolute symlinks, which are everywhere on
// real systems and cannot lead outside "/".
func TestMachineRootFollowsAbsoluteLinks(t *testing.T) {
	h, err := Open("/")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "data"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "moved", "config.yaml")
	if _, err := h.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "data", "config.yaml")); string(b) != "x" {
		t.Fatalf("content = %q", b)
	}
	if h.Path("/etc/x") != "/etc/x" {
		t.Fatalf("Path under / = %q", h.Path("/etc/x"))
	}
}

func TestRun(t *testing.T) {
	h := newHost(t)
	out, err := h.Run(t.Context(), "sh", "-c", "echo hello")
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	_, err = h.Run(t.Context(), "sh", "-c", `i=1; while [ $i -le 30 ]; do echo line$i; i=$((i+1)); done; echo oops >&2; exit 3`)
	if err == nil {
		t.Fatal("a failing command succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"run sh -c", "exit status 3", "line12", "line30", "oops"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "line11\n") {
		t.Errorf("error carries more than the last %d lines:\n%s", errorTailLines, msg)
	}
	if _, err := h.Run(t.Context(), "/nonexistent/perch-tool"); err == nil || !strings.Contains(err.Error(), "/nonexistent/perch-tool") {
		t.Fatalf("missing program: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := h.Run(ctx, "sleep", "10"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v, want context.DeadlineExceeded", err)
	}
}

func TestLastLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\n", 5, "a\nb\n"},
		{"", 3, ""},
		{"a\n", 0, ""},
	} {
		if got := string(lastLines([]byte(c.in), c.n)); got != c.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
	// tailFile across chunk boundaries.
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := strings.Repeat("x", 1000)
	for i := range 300 {
		if _, err := f.WriteString(line + string(rune('a'+i%26)) + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	b, err := tailFile(f, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), "\n"); got != 100 {
		t.Fatalf("tailFile returned %d lines, want 100", got)
	}
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (fs.ModeType | modeBits); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".perch-tmp") {
			t.Errorf("temporary file left: %s", filepath.Join(dir, e.Name()))
		}
	}
}

func statT(t *testing.T, path string) fs.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// A root install will create is read as empty until the first write: plan
// on it writes nothing, not even the root.
func TestOpenCreating(t *testing.T) {
	root := filepath.Join(t.TempDir(), "new", "root")
	h, err := OpenCreating(root)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.ReadFile("/etc/perch/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read in a missing root: %v, want not exist", err)
	}
	if _, err := h.Stat("/etc"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat in a missing root: %v, want not exist", err)
	}
	if removed, err := h.Remove("/etc/perch/x"); removed || err != nil {
		t.Fatalf("remove in a missing root: %v %v", removed, err)
	}
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading created the root: %v", err)
	}
	if _, err := h.WriteFile("/etc/perch/x", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/perch/x")); err != nil || string(b) != "x" {
		t.Fatalf("after the first write: %q %v", b, err)
	}
	if _, err := h.Symlink("x", "/etc/perch/y"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := OpenCreating(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("OpenCreating of a file: got %v, want 'not a directory'", err)
	}
}
