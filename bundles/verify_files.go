package bundles

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// files checks every entry after the signature against the manifest.
func (v *verifier) files(ctx context.Context, m *Manifest, e *entry) error {
	seen := make([]bool, len(m.Files))
	index := func(p string) int {
		i := sort.Search(len(m.Files), func(i int) bool { return m.Files[i].Path >= p })
		if i < len(m.Files) && m.Files[i].Path == p {
			return i
		}
		return -1
	}
	dirs := parentDirs(m)
	total, done := m.Size(), int64(0)
	entries := 0
	for {
		if e == nil {
			var err error
			if e, err = v.next(); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		entries++
		if entries > len(m.Files)+len(dirs) {
			return v.reject(e.name, "one entry too many: the manifest lists %d files", len(m.Files))
		}
		if e.kind&fs.ModeDir != 0 && dirs[strings.TrimSuffix(e.name, "/")] {
			e = nil
			continue
		}
		if err := v.checkEntry(e); err != nil {
			return err
		}
		i := index(e.name)
		if i < 0 {
			return v.reject(e.name, "is not in the manifest (an extra or renamed file)")
		}
		if seen[i] {
			return v.reject(e.name, "appears twice")
		}
		seen[i] = true
		f := m.Files[i]
		if e.size > f.Size {
			return v.reject(e.name, "is %d bytes, larger than the %d bytes the manifest says", e.size, f.Size)
		}
		if e.size < f.Size {
			return v.reject(e.name, "is %d bytes, the manifest says %d: truncated", e.size, f.Size)
		}
		if err := v.copy(e, f, func(n int64) { v.o.Progress.report("verify", done+n, total) }); err != nil {
			return err
		}
		done += f.Size
		e = nil
	}
	for i, ok := range seen {
		if !ok {
			more := ""
			if n := countFalse(seen[i+1:]); n > 0 {
				more = fmt.Sprintf(" (and %d more files)", n)
			}
			return v.reject(m.Files[i].Path, "missing%s", more)
		}
	}
	return nil
}

func countFalse(b []bool) int {
	n := 0
	for _, x := range b {
		if !x {
			n++
		}
	}
	return n
}

// parentDirs are the directories an archive may list besides the files.
func parentDirs(m *Manifest) map[string]bool {
	d := map[string]bool{}
	for _, f := range m.Files {
		for p := path.Dir(f.Path); p != "." && !d[p]; p = path.Dir(p) {
			d[p] = true
		}
	}
	return d
}

// copy hashes one file while writing it to staging (when staging).
func (v *verifier) copy(e *entry, f File, progress func(int64)) error {
	rc, err := e.open()
	if err != nil {
		return v.reject(e.name, "%v", err)
	}
	defer rc.Close()
	h := sha256.New()
	var w io.Writer = h
	var out *os.File
	if v.root != nil {
		if dir := path.Dir(e.name); dir != "." {
			if err := v.root.MkdirAll(dir, 0o755); err != nil {
				return v.reject(e.name, "staging: %v", err)
			}
		}
		if out, err = v.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
			return v.reject(e.name, "staging: %v", err)
		}
		defer out.Close()
		w = io.MultiWriter(out, h)
	}
	if v.buf == nil {
		v.buf = make([]byte, 1<<20)
	}
	n, err := copyProgress(w, io.LimitReader(rc, f.Size+1), v.buf, progress)
	if rerr := v.missingPart(err); rerr != nil {
		return rerr
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return v.reject(e.name, "the archive ends early in %s (cut off, or a split part missing)", v.s.where())
	}
	if err != nil {
		return v.reject(e.name, "read in %s: %v: the data there is damaged, or split parts are out of order; copy the bundle again", v.s.where(), err)
	}
	if n != f.Size {
		return v.reject(e.name, "is %d bytes, the manifest says %d: truncated or changed while read", n, f.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return v.reject(e.name, "sha256 is %s, the manifest says %s: the file was modified", got, f.SHA256)
	}
	if out != nil {
		if f.Path == K3sBinaryPath {
			out.Chmod(0o755)
		}
		if err := out.Close(); err != nil {
			return v.reject(e.name, "staging: %v", err)
		}
	}
	return nil
}

func (v *verifier) stage(name string, b []byte) error {
	if v.root == nil {
		return nil
	}
	if err := v.root.WriteFile(name, b, 0o644); err != nil {
		return v.reject(name, "staging: %v", err)
	}
	return nil
}

func copyProgress(w io.Writer, r io.Reader, buf []byte, progress func(int64)) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
			progress(n)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
