// Package host is the one layer through which Perch changes a machine: every
// file it writes, every command it runs and every service it installs goes
// through a Host, so that --root DIR confines all of it to DIR.
//
// Confinement is done by the kernel-level path resolution of os.Root, not by
// comparing strings: "..", absolute symlinks and relative symlinks that climb
// out of the root are refused while the path is being walked, so a symlink
// swapped in between a check and a use cannot redirect a write.
package host

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrOutsideRoot marks a path that would lead outside the root, through "..",
// an absolute symlink or a symlink that climbs out. errors.Is works on every
// error this package returns for such a path.
var ErrOutsideRoot = errors.New("path leads outside the root")

// Host is a machine seen through a root directory. Its methods take host
// paths ("/etc/rancher/k3s/config.yaml") and act on ROOT/etc/rancher/....
//
// A Host is safe for sequential use. Writes to the same path from several
// goroutines or processes at once are not: each target has one deterministic
// temporary file, which is what lets a killed install leave no litter.
type Host struct {
	root string
	t    tree
}

// tree is the subset of *os.Root that Host uses. The whole machine ("/") gets
// a plain implementation because os.Root refuses every absolute symlink, and
// real machines are full of them (/var/run -> /run, /var/lib/rancher moved to
// a data disk); under "/" an absolute symlink cannot lead anywhere but the
// root, so there is nothing to refuse.
type tree interface {
	Lstat(name string) (fs.FileInfo, error)
	Stat(name string) (fs.FileInfo, error)
	OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error)
	Mkdir(name string, perm fs.FileMode) error
	Chmod(name string, mode fs.FileMode) error
	Rename(oldname, newname string) error
	Symlink(oldname, newname string) error
	Readlink(name string) (string, error)
	Remove(name string) error
	RemoveAll(name string) error
	Close() error
}

// Open returns a Host for root, which must be an existing directory: a typo
// in --root should fail here rather than grow a fresh tree somewhere
// unexpected.
func Open(root string) (*Host, error) {
	if root == "" {
		root = "/"
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w; create the directory first or pass an existing --root", abs, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open root %s: not a directory; --root must name a directory", abs)
	}
	if abs == "/" {
		return &Host{root: abs, t: machine{}}, nil
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", abs, err)
	}
	return &Host{root: abs, t: r}, nil
}

// OpenCreating is Open for a root that install makes when it does not
// exist yet: until the first write the root reads as empty, and only a
// write creates it (with its parents), so planning on it writes nothing.
func OpenCreating(root string) (*Host, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	if _, err := os.Stat(abs); !errors.Is(err, fs.ErrNotExist) {
		return Open(abs)
	}
	return &Host{root: abs, t: &unborn{root: abs}}, nil
}

// unborn is a root directory that does not exist yet: nothing is in it,
// and the first write creates it and goes on in the real one.
type unborn struct {
	root string
	t    tree // the real root, once created
}

func (u *unborn) absent(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

func (u *unborn) create() (tree, error) {
	if u.t != nil {
		return u.t, nil
	}
	if err := os.MkdirAll(u.root, 0o755); err != nil {
		return nil, fmt.Errorf("create root %s: %w", u.root, err)
	}
	r, err := os.OpenRoot(u.root)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", u.root, err)
	}
	u.t = r
	return r, nil
}

func (u *unborn) Lstat(name string) (fs.FileInfo, error) {
	if u.t == nil {
		return nil, u.absent("lstat", name)
	}
	return u.t.Lstat(name)
}

func (u *unborn) Stat(name string) (fs.FileInfo, error) {
	if u.t == nil {
		return nil, u.absent("stat", name)
	}
	return u.t.Stat(name)
}

func (u *unborn) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if u.t == nil && flag&(os.O_CREATE|os.O_WRONLY|os.O_RDWR) == 0 {
		return nil, u.absent("open", name)
	}
	t, err := u.create()
	if err != nil {
		return nil, err
	}
	return t.OpenFile(name, flag, perm)
}

func (u *unborn) Mkdir(name string, perm fs.FileMode) error {
	t, err := u.create()
	if err != nil {
		return err
	}
	return t.Mkdir(name, perm)
}

func (u *unborn) Chmod(name string, mode fs.FileMode) error {
	if u.t == nil {
		return u.absent("chmod", name)
	}
	return u.t.Chmod(name, mode)
}

func (u *unborn) Rename(oldname, newname string) error {
	if u.t == nil {
		return u.absent("rename", oldname)
	}
	return u.t.Rename(oldname, newname)
}

func (u *unborn) Symlink(oldname, newname string) error {
	t, err := u.create()
	if err != nil {
		return err
	}
	return t.Symlink(oldname, newname)
}

func (u *unborn) Readlink(name string) (string, error) {
	if u.t == nil {
		return "", u.absent("readlink", name)
	}
	return u.t.Readlink(name)
}

func (u *unborn) Remove(name string) error {
	if u.t == nil {
		return u.absent("remove", name)
	}
	return u.t.Remove(name)
}

func (u *unborn) RemoveAll(name string) error {
	if u.t == nil {
		return nil
	}
	return u.t.RemoveAll(name)
}

func (u *unborn) Close() error {
	if u.t == nil {
		return nil
	}
	return u.t.Close()
}

// Close releases the root directory's file descriptor.
func (h *Host) Close() error { return h.t.Close() }

// Root is the absolute root directory, "/" for the machine itself.
func (h *Host) Root() string { return h.root }

// Path is where p really lives on this machine. Use it for paths that other
// programs read (config files, command lines, unit files); never use it to
// open files from Perch, which would bypass the confinement.
func (h *Host) Path(p string) string {
	return filepath.Join(h.root, filepath.Clean("/"+p))
}

// Stat describes p itself, not what a symlink at p points to.
func (h *Host) Stat(p string) (fs.FileInfo, error) {
	n, err := h.name(p)
	if err != nil {
		return nil, err
	}
	fi, err := h.t.Lstat(n)
	if err != nil {
		return nil, h.wrap("stat", p, err)
	}
	return fi, nil
}

// ReadFile reads p, following symlinks that stay inside the root.
func (h *Host) ReadFile(p string) ([]byte, error) {
	n, err := h.name(p)
	if err != nil {
		return nil, err
	}
	f, err := h.t.OpenFile(n, os.O_RDONLY, 0)
	if err != nil {
		return nil, h.wrap("read", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, h.wrap("read", p, err)
	}
	return b, nil
}

// MkdirAll creates p and its missing parents. Missing parents get 0755 and p
// gets mode, both regardless of the umask; existing directories keep their
// mode, since an operator may have tightened it on purpose.
func (h *Host) MkdirAll(p string, mode fs.FileMode) error {
	n, err := h.name(p)
	if err != nil {
		return err
	}
	if err := h.mkdirs(n, mode); err != nil {
		return h.wrap("create directory", p, err)
	}
	return nil
}

// Remove removes the file, symlink or empty directory p. A missing p is not
// an error: the caller wanted it gone and it is.
func (h *Host) Remove(p string) (removed bool, err error) {
	n, err := h.name(p)
	if err != nil {
		return false, err
	}
	if n == "." {
		return false, fmt.Errorf("remove %s: refusing to remove the root %s itself", p, h.root)
	}
	err = h.t.Remove(n)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, h.wrap("remove", p, err)
	}
	return true, nil
}

// RemoveAll removes p and everything below it; symlinks are removed, never
// followed. A missing p is not an error.
func (h *Host) RemoveAll(p string) error {
	n, err := h.name(p)
	if err != nil {
		return err
	}
	if n == "." {
		return fmt.Errorf("remove %s: refusing to remove the root %s itself", p, h.root)
	}
	if err := h.t.RemoveAll(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return h.wrap("remove", p, err)
	}
	return nil
}

// Rename moves a file or directory within the root and syncs the directory
// it lands in, so a staged tree appears whole or not at all.
func (h *Host) Rename(from, to string) error {
	a, err := h.name(from)
	if err != nil {
		return err
	}
	b, err := h.name(to)
	if err != nil {
		return err
	}
	if err := h.t.Rename(a, b); err != nil {
		return h.wrap("rename", from, err)
	}
	return h.syncDir(path.Dir(b))
}

// name turns a host path into a name relative to the root. ".." is kept, not
// cleaned away, so that os.Root sees it and refuses it when it climbs out:
// cleaning here would be exactly the string check this package avoids.
func (h *Host) name(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("host path %q is not absolute; Perch takes host paths such as /etc/rancher/k3s/config.yaml, which it places under --root", p)
	}
	n := strings.TrimLeft(p, "/")
	if n == "" {
		return ".", nil
	}
	return n, nil
}

// mkdirs creates each missing component of n. It walks component by
// component instead of calling MkdirAll so that it can chmod exactly the
// directories it created, making the modes independent of the umask.
func (h *Host) mkdirs(n string, mode fs.FileMode) error {
	if n == "." {
		return nil
	}
	parts := strings.Split(n, "/")
	for i := range parts {
		if parts[i] == "" || parts[i] == "." {
			continue
		}
		prefix := strings.Join(parts[:i+1], "/")
		perm := fs.FileMode(0o755)
		if i == len(parts)-1 {
			perm = mode
		}
		err := h.t.Mkdir(prefix, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := h.t.Chmod(prefix, perm); err != nil {
			return err
		}
	}
	// A file where a directory should be shows up as ErrExist above; say so
	// here rather than let the next open fail with "not a directory".
	fi, err := h.t.Stat(n)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("exists and is not a directory")
	}
	return nil
}

// wrap names the host path and the root in err, and marks escapes with
// ErrOutsideRoot. os.Root reports escapes with an unexported error, so its
// message is the only thing to recognise it by.
func (h *Host) wrap(op, p string, err error) error {
	if errors.Is(err, ErrOutsideRoot) {
		return fmt.Errorf("%s %s: %w", op, p, err)
	}
	if isEscape(err) {
		return fmt.Errorf("%s %s: %w %s: %w; %s", op, p, ErrOutsideRoot, h.root, err, followRule)
	}
	return fmt.Errorf("%s %s: %w", op, h.display(p), err)
}

// followRule is the advice that goes with an escape: what Perch will follow.
const followRule = `a ".." or a symlink on the way leads out, and under --root only relative symlinks that stay inside are followed`

// display shows where a path really is when that differs from the host path,
// so a person reading an error under --root finds the file.
func (h *Host) display(p string) string {
	if h.root == "/" {
		return p
	}
	return fmt.Sprintf("%s (%s)", p, h.Path(p))
}

func isEscape(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

// machine is the tree for root "/": plain os calls on absolute paths.
type machine struct{}

func abs(name string) string { return "/" + name }

func (machine) Lstat(n string) (fs.FileInfo, error) { return os.Lstat(abs(n)) }
func (machine) Stat(n string) (fs.FileInfo, error)  { return os.Stat(abs(n)) }
func (machine) OpenFile(n string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(abs(n), flag, perm)
}
func (machine) Mkdir(n string, perm fs.FileMode) error { return os.Mkdir(abs(n), perm) }
func (machine) Chmod(n string, mode fs.FileMode) error { return os.Chmod(abs(n), mode) }
func (machine) Rename(o, n string) error               { return os.Rename(abs(o), abs(n)) }
func (machine) Symlink(target, n string) error         { return os.Symlink(target, abs(n)) }
func (machine) Readlink(n string) (string, error)      { return os.Readlink(abs(n)) }
func (machine) Remove(n string) error                  { return os.Remove(abs(n)) }
func (machine) RemoveAll(n string) error               { return os.RemoveAll(abs(n)) }
func (machine) Close() error                           { return nil }

// Readlink returns the target of the symlink at p.
func (h *Host) Readlink(p string) (string, error) {
	n, err := h.name(p)
	if err != nil {
		return "", err
	}
	t, err := h.t.Readlink(n)
	if err != nil {
		return "", h.wrap("readlink", p, err)
	}
	return t, nil
}

// OpenLock opens (creating once, never rewriting) a file to flock, so taking
// a lock on every run still writes nothing on a converged host.
func (h *Host) OpenLock(p string) (*os.File, error) {
	n, err := h.name(p)
	if err != nil {
		return nil, err
	}
	dir, _, err := split(n)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := h.mkdirs(dir, 0o755); err != nil {
		return nil, h.wrap("lock", p, err)
	}
	f, err := h.t.OpenFile(n, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, h.wrap("lock", p, err)
	}
	return f, nil
}
