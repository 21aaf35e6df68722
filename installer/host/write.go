package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// modeBits are the parts of a FileMode that WriteFile sets and compares;
// the type bits belong to the file, not to the caller's request.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// maxSymlinkHops matches Linux's own limit, so a loop fails the way the
// kernel would report it.
const maxSymlinkHops = 40

// copyChunk is large enough that a 200 MB k3s binary takes a few hundred
// reads and progress calls, small enough that cancellation is prompt.
const copyChunk = 1 << 20

// WriteFile makes p hold data with mode, atomically: a reader sees the old
// file or the new one, never a torn one, even across a crash. When p already
// holds data with mode nothing is touched (changed is false and the mtime
// stays), which is what keeps a re-run on a converged node a no-op.
//
// A symlink at p is followed when it stays inside the root, so the file it
// points to is replaced and the link kept; one that leaves the root is
// refused with ErrOutsideRoot.
func (h *Host) WriteFile(p string, data []byte, mode fs.FileMode) (changed bool, err error) {
	n, err := h.name(p)
	if err != nil {
		return false, err
	}
	n, err = h.resolveLast(p, n)
	if err != nil {
		return false, h.wrap("write", p, err)
	}
	switch state, err := h.converge(n, data, mode); {
	case err != nil:
		return false, h.wrap("write", p, err)
	case state == upToDate:
		return false, nil
	case state == modeFixed:
		return true, nil
	}
	err = h.replace(n, mode, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
	if err != nil {
		return false, h.wrap("write", p, err)
	}
	return true, nil
}

// WriteStream copies r into p with WriteFile's atomicity, hashing as it
// copies so a large file is read once. It always replaces p: compare Digest
// with the expected digest first to skip a copy that would change nothing.
//
// Cancelling ctx stops the copy between chunks and removes the temporary
// file; a Read that blocks forever is the reader's to unblock (an HTTP body
// tied to ctx does that). progress, when not nil, gets the bytes written so
// far after each chunk.
func (h *Host) WriteStream(ctx context.Context, p string, r io.Reader, mode fs.FileMode, progress func(written int64)) (digest string, err error) {
	n, err := h.name(p)
	if err != nil {
		return "", err
	}
	n, err = h.resolveLast(p, n)
	if err != nil {
		return "", h.wrap("write", p, err)
	}
	sum := sha256.New()
	err = h.replace(n, mode, func(f *os.File) error {
		buf := make([]byte, copyChunk)
		var written int64
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			k, rerr := r.Read(buf)
			if k > 0 {
				if _, err := f.Write(buf[:k]); err != nil {
					return err
				}
				sum.Write(buf[:k])
				written += int64(k)
				if progress != nil {
					progress(written)
				}
			}
			if rerr == io.EOF {
				return nil
			}
			if rerr != nil {
				return fmt.Errorf("read source: %w", rerr)
			}
		}
	})
	if err != nil {
		return "", h.wrap("write", p, err)
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
}

// Digest is "sha256:<hex>" of the file at p, the form bundle manifests use.
func (h *Host) Digest(p string) (string, error) {
	n, err := h.name(p)
	if err != nil {
		return "", err
	}
	f, err := h.t.OpenFile(n, os.O_RDONLY, 0)
	if err != nil {
		return "", h.wrap("digest", p, err)
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", h.wrap("digest", p, err)
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
}

// Symlink makes p a symlink to target. target is written as given: it is
// read by whoever follows the link later, so an absolute target means a path
// on the machine that follows it (use Path for a link that this machine
// follows under --root). A wrong link is replaced atomically; a file or
// directory at p is refused rather than destroyed.
func (h *Host) Symlink(target, p string) (changed bool, err error) {
	n, err := h.name(p)
	if err != nil {
		return false, err
	}
	fi, err := h.t.Lstat(n)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, h.wrap("symlink", p, err)
	case fi.Mode()&fs.ModeSymlink == 0:
		return false, fmt.Errorf("symlink %s: a %s is there, not a symlink; remove it if the link should replace it", h.display(p), kind(fi))
	default:
		cur, err := h.t.Readlink(n)
		if err != nil {
			return false, h.wrap("symlink", p, err)
		}
		if cur == target {
			return false, nil
		}
	}
	dir, base, err := split(n)
	if err != nil {
		return false, fmt.Errorf("symlink %s: %w", p, err)
	}
	if err := h.mkdirs(dir, 0o755); err != nil {
		return false, h.wrap("symlink", p, err)
	}
	tmp := join(dir, tempName(base))
	if err := h.t.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, h.wrap("symlink", p, err)
	}
	if err := h.t.Symlink(target, tmp); err != nil {
		return false, h.wrap("symlink", p, err)
	}
	if err := h.t.Rename(tmp, n); err != nil {
		_ = h.t.Remove(tmp)
		return false, h.wrap("symlink", p, err)
	}
	if err := h.syncDir(dir); err != nil {
		return false, h.wrap("symlink", p, err)
	}
	return true, nil
}

// resolveLast follows symlinks in the last component of n, so that a write
// replaces the file a link points to instead of the link. Links in parent
// directories need no help: os.Root resolves those itself and refuses the
// ones that escape. Relative targets are appended unclean for the same
// reason, so os.Root judges their "..".
func (h *Host) resolveLast(p, n string) (string, error) {
	for range maxSymlinkHops {
		fi, err := h.t.Lstat(n)
		if errors.Is(err, fs.ErrNotExist) {
			return n, nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return n, nil
		}
		link, err := h.t.Readlink(n)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(link, "/") {
			if h.root != "/" {
				return "", fmt.Errorf("%w %s: it is a symlink to the absolute path %s; %s", ErrOutsideRoot, h.root, link, followRule)
			}
			n = strings.TrimLeft(link, "/")
			if n == "" {
				n = "."
			}
			continue
		}
		dir, _, err := split(n)
		if err != nil {
			return "", err
		}
		n = join(dir, link)
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", p)
}

// What converge found at a target.
const (
	differs   = iota // missing or other content: write it
	upToDate         // content and mode match: touch nothing
	modeFixed        // content matched and the mode has been corrected
)

// converge compares n with data and mode. When only the mode differs it
// fixes the mode in place, which is as atomic as a rename and keeps the
// inode that something may hold open. The open is non-blocking so that a
// FIFO at n cannot hang an install.
func (h *Host) converge(n string, data []byte, mode fs.FileMode) (int, error) {
	f, err := h.t.OpenFile(n, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return differs, nil
	}
	if err != nil {
		return differs, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return differs, err
	}
	if !fi.Mode().IsRegular() {
		return differs, fmt.Errorf("a %s is there, not a regular file; remove it if a file should replace it", kind(fi))
	}
	if fi.Size() != int64(len(data)) {
		return differs, nil
	}
	cur, err := io.ReadAll(f)
	if err != nil {
		return differs, err
	}
	if !bytes.Equal(cur, data) {
		return differs, nil
	}
	if fi.Mode()&modeBits == mode&modeBits {
		return upToDate, nil
	}
	if err := f.Chmod(mode & modeBits); err != nil {
		return differs, err
	}
	return modeFixed, nil
}

// replace writes a new file through fill and renames it over n. The
// temporary name is fixed per target: a write killed with -9 leaves one
// stale temporary, and the next write of the same target removes and reuses
// it instead of piling up random names. It is removed rather than reopened
// so that a symlink planted under that name cannot redirect the write.
func (h *Host) replace(n string, mode fs.FileMode, fill func(*os.File) error) (err error) {
	dir, base, err := split(n)
	if err != nil {
		return err
	}
	if err := h.mkdirs(dir, 0o755); err != nil {
		return err
	}
	tmp := join(dir, tempName(base))
	if err := h.t.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// 0600 until the content is complete, so a secret is never readable by
	// others even for the moment before the final chmod.
	f, err := h.t.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = h.t.Remove(tmp)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	// An explicit chmod, because the mode given to open is cut by the umask.
	if err := f.Chmod(mode & modeBits); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := h.t.Rename(tmp, n); err != nil {
		return err
	}
	// Without this the rename may not survive a power cut even though the
	// data did.
	return h.syncDir(dir)
}

func (h *Host) syncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := h.t.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	err = d.Sync()
	// Some filesystems (FUSE, some network ones) cannot sync a directory;
	// the rename has happened and there is nothing more to ask of them.
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// split separates a root-relative name into its directory ("" for the root)
// and last component, without cleaning it.
func split(n string) (dir, base string, err error) {
	n = strings.TrimRight(n, "/")
	i := strings.LastIndexByte(n, '/')
	dir, base = "", n
	if i >= 0 {
		dir, base = n[:i], n[i+1:]
	}
	if base == "" || base == "." || base == ".." {
		return "", "", errors.New("not a file name; give the path of a file")
	}
	return dir, base, nil
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func tempName(base string) string { return "." + base + ".perch-tmp" }

func kind(fi fs.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return "special file"
	}
}

// DigestFile is Digest for a file outside any root: a source Perch installs
// from, such as a k3s binary named in the config.
func DigestFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
}
