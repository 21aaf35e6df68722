package bundles

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"aead.dev/minisign"
)

// ErrRejected is every reason a bundle is refused.
var ErrRejected = errors.New("bundle rejected")

// RejectError names the file that made a bundle unacceptable.
type RejectError struct {
	Source string // the bundle
	File   string // the entry at fault, as it is named in the bundle
	Reason string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("bundle %s rejected: %s: %s", e.Source, e.File, e.Reason)
}

func (e *RejectError) Unwrap() error { return ErrRejected }

// OpenOptions says what a bundle must be to be accepted.
type OpenOptions struct {
	// PublicKey is the key the manifest must be signed with.
	PublicKey *minisign.PublicKey
	// InsecureSkipSignature accepts a bundle without a (valid) signature.
	InsecureSkipSignature bool
	// Arch, when set, must be the bundle's arch.
	Arch string
	// Staging receives the verified bundle; it must not exist. Empty
	// verifies without writing anything.
	Staging  string
	Progress ProgressFunc
}

// Opened is a verified bundle.
type Opened struct {
	Manifest    *Manifest
	ManifestRaw []byte
	Signed      bool
	// Dir holds the bundle when it was staged.
	Dir string
	// Comment is the signature's trusted comment.
	Comment string
}

// entry is one file of a bundle as a source presents it.
type entry struct {
	name string
	kind fs.FileMode // 0 for regular files
	size int64
	open func() (io.ReadCloser, error)
	// link is where a symlink or hardlink points, for the error.
	link string
}

// source is a bundle in some form, entry by entry: the manifest first.
type source interface {
	next() (*entry, error) // io.EOF at the end
	where() string         // for errors about the stream itself
	Close() error
}

// Open verifies a bundle in one pass — every byte read once, hashed while
// it is copied to staging — and returns it only if every file is exactly
// what the signed manifest says. On any failure nothing is left in staging.
//
// src is a directory, an archive, the first part of a split archive, a
// file:// URL, or an http(s) URL of an archive (streamed, not downloaded
// first; a URL with go-getter options such as ?checksum= is fetched first).
func Open(ctx context.Context, src string, o OpenOptions) (op *Opened, err error) {
	return open(ctx, src, o, false)
}

// ReadManifest reads and checks only the manifest and its signature: what
// inspect and plan need, at the cost of two small reads.
func ReadManifest(ctx context.Context, src string, o OpenOptions) (*Opened, error) {
	o.Staging = ""
	return open(ctx, src, o, true)
}

func open(ctx context.Context, src string, o OpenOptions, manifestOnly bool) (op *Opened, err error) {
	if o.PublicKey == nil && !o.InsecureSkipSignature {
		return nil, fmt.Errorf("bundle %s: no public key to verify it with; pass --pubkey (or set bundle.publicKey), or --insecure-skip-signature for an unsigned test bundle", src)
	}
	s, cleanup, err := openAny(ctx, src, o)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	defer s.Close()
	v := &verifier{src: src, s: s, o: o, manifestOnly: manifestOnly}
	if o.Staging != "" {
		if err := os.Mkdir(o.Staging, 0o700); err != nil {
			return nil, fmt.Errorf("bundle staging: %w", err)
		}
		if v.root, err = os.OpenRoot(o.Staging); err != nil {
			os.RemoveAll(o.Staging)
			return nil, err
		}
		defer func() {
			v.root.Close()
			if err != nil {
				os.RemoveAll(o.Staging)
			}
		}()
	}
	return v.run(ctx)
}

type verifier struct {
	src  string
	s    source
	o    OpenOptions
	root *os.Root
	buf  []byte
	// manifestOnly stops after the signature check.
	manifestOnly bool
}

func (v *verifier) reject(file, format string, a ...any) error {
	return &RejectError{Source: v.src, File: file, Reason: fmt.Sprintf(format, a...)}
}

func (v *verifier) next() (*entry, error) {
	e, err := v.s.next()
	if err != nil && !errors.Is(err, io.EOF) {
		if rerr := v.missingPart(err); rerr != nil {
			return nil, rerr
		}
		return nil, v.reject(v.s.where(), "%v", err)
	}
	return e, err
}

// missingPart blames a stream that ends early on the split part that is not
// there, when it is a split archive.
func (v *verifier) missingPart(err error) error {
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	if p, ok := v.s.(interface{ missing() string }); ok && p.missing() != "" {
		return v.reject(p.missing(), "not found: the archive goes on after %s; copy every part to the same folder", v.s.where())
	}
	return nil
}

func (v *verifier) run(ctx context.Context) (*Opened, error) {
	op := &Opened{Dir: v.o.Staging}
	e, err := v.next()
	if errors.Is(err, io.EOF) {
		return nil, v.reject(ManifestName, "missing: the bundle is empty")
	}
	if err != nil {
		return nil, err
	}
	if e.name != ManifestName {
		return nil, v.reject(ManifestName, "missing: the bundle starts with %s; is this a Perch bundle, or was it repacked?", e.name)
	}
	if op.ManifestRaw, err = v.small(e, maxManifestSize); err != nil {
		return nil, err
	}
	e, err = v.next()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var sig []byte
	if e != nil && e.name == SignatureName {
		if sig, err = v.small(e, maxSignatureSize); err != nil {
			return nil, err
		}
		e = nil
	}
	if err := v.checkSignature(op, sig); err != nil {
		return nil, err
	}
	m, err := ParseManifest(op.ManifestRaw)
	if err != nil {
		return nil, v.reject(ManifestName, "%v", err)
	}
	op.Manifest = m
	if v.manifestOnly {
		return op, nil
	}
	if v.o.Arch != "" && m.Arch != v.o.Arch {
		return nil, v.reject(ManifestName, "the bundle is for %s, this host is %s; build one with arch: %s", m.Arch, v.o.Arch, v.o.Arch)
	}
	if err := v.checkSpace(m); err != nil {
		return nil, err
	}
	if err := v.stage(ManifestName, op.ManifestRaw); err != nil {
		return nil, err
	}
	if sig != nil {
		if err := v.stage(SignatureName, sig); err != nil {
			return nil, err
		}
	}
	if err := v.files(ctx, m, e); err != nil {
		return nil, err
	}
	return op, nil
}

func (v *verifier) checkSignature(op *Opened, sig []byte) error {
	if sig == nil {
		if v.o.InsecureSkipSignature {
			return nil
		}
		return v.reject(SignatureName, "missing: the bundle is unsigned; build it with --key, or pass --insecure-skip-signature to accept an unsigned bundle")
	}
	if v.o.PublicKey == nil {
		return nil // signed, but the caller chose not to check
	}
	if err := Verify(*v.o.PublicKey, bytes.NewReader(op.ManifestRaw), sig, ManifestName); err != nil {
		return v.reject(SignatureName, "%s", strings.TrimPrefix(err.Error(), ErrSignature.Error()+": "))
	}
	op.Signed = true
	op.Comment = TrustedComment(sig)
	return nil
}

// small reads the manifest or signature, refusing anything not a regular
// file or larger than limit before reading it.
func (v *verifier) small(e *entry, limit int64) ([]byte, error) {
	if err := v.checkEntry(e); err != nil {
		return nil, err
	}
	if e.size > limit {
		return nil, v.reject(e.name, "is %d bytes, more than the limit of %d", e.size, limit)
	}
	rc, err := e.open()
	if err != nil {
		return nil, v.reject(e.name, "%v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, v.reject(e.name, "%v", err)
	}
	if int64(len(b)) != e.size {
		return nil, v.reject(e.name, "is %d bytes, the bundle said %d (truncated or growing)", len(b), e.size)
	}
	return b, nil
}

// checkEntry refuses what is not a plain file at a clean relative path.
func (v *verifier) checkEntry(e *entry) error {
	if e.name != ManifestName && e.name != SignatureName {
		if err := checkPath(e.name); err != nil {
			return v.reject(e.name, "%v; refused", err)
		}
	}
	switch {
	case e.kind&fs.ModeSymlink != 0:
		return v.reject(e.name, "is a symlink (to %s); bundles hold regular files only", e.link)
	case e.kind == fs.ModeIrregular && e.link != "":
		return v.reject(e.name, "is a hard link (to %s); bundles hold regular files only", e.link)
	case e.kind&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
		return v.reject(e.name, "is a device, pipe or socket; bundles hold regular files only")
	case e.kind&fs.ModeDir != 0:
		return v.reject(e.name, "is a directory entry where a file was expected")
	case e.kind != 0:
		return v.reject(e.name, "is not a regular file (%v)", e.kind)
	}
	return nil
}

func (v *verifier) checkSpace(m *Manifest) error {
	if v.root == nil {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(v.o.Staging, &st); err != nil {
		return nil
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need := m.Size(); need > free {
		return v.reject(ManifestName, "needs %d bytes, %s has %d free; free space or stage elsewhere", need, filepath.Dir(v.o.Staging), free)
	}
	return nil
}

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
		return v.reject(e.name, "read: %v", err)
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

// openAny turns src into a source, and says how to clean up after it.
func openAny(ctx context.Context, src string, o OpenOptions) (source, func(), error) {
	none := func() {}
	u, err := url.Parse(src)
	if err != nil || u.Scheme == "" || len(u.Scheme) == 1 {
		s, err := openSource(src)
		return s, none, err
	}
	switch {
	case u.Scheme == "file":
		s, err := openSource(u.Path)
		return s, none, err
	case (u.Scheme == "http" || u.Scheme == "https") && u.RawQuery == "" && strings.HasSuffix(u.Path, ArchiveExt):
		s, err := openHTTP(ctx, src)
		return s, none, err
	}
	// anything else go-getter understands is fetched first, beside staging
	// (the same disk it is going to) or in the temp dir
	dir := os.TempDir()
	if o.Staging != "" {
		dir = filepath.Dir(o.Staging)
	}
	tmp, err := os.MkdirTemp(dir, ".perch-bundle-fetch-")
	if err != nil {
		return nil, none, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	f := &fetcher{progress: o.Progress}
	dst := filepath.Join(tmp, "bundle"+ArchiveExt)
	if err := f.get(ctx, "bundle", src, dst, false); err != nil {
		cleanup()
		return nil, none, err
	}
	s, err := openSource(dst)
	if err != nil {
		cleanup()
		return nil, none, err
	}
	return s, cleanup, nil
}

func openHTTP(ctx context.Context, src string) (source, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", src, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", src, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("bundle %s: %s", src, resp.Status)
	}
	base := path.Base(req.URL.Path)
	return newTarSource(resp.Body, func() string { return base })
}

// openSource recognises a directory, an archive or the first of its parts.
func openSource(src string) (source, error) {
	fi, err := os.Stat(src)
	if errors.Is(err, os.ErrNotExist) && strings.HasSuffix(src, ArchiveExt) {
		if _, perr := os.Stat(partName(src, 1)); perr == nil {
			src, fi, err = partName(src, 1), nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", src, err)
	}
	if fi != nil && fi.IsDir() {
		return openDir(src)
	}
	if strings.HasSuffix(src, ArchiveExt+".001") {
		pr, err := openParts(src)
		var re *RejectError
		if errors.As(err, &re) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", src, err)
		}
		return newTarSource(pr, pr.Current)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", src, err)
	}
	base := filepath.Base(src)
	return newTarSource(f, func() string { return base })
}

// tarSource reads a tar.zst stream. The stream is bounded by the entries'
// declared sizes, so a decompression bomb hits a limit, not the disk.
type tarSource struct {
	c    io.Closer
	zr   interface{ Close() }
	tr   *tar.Reader
	part func() string
	last string
}

func newTarSource(r io.ReadCloser, part func() string) (*tarSource, error) {
	zr, err := newZstdReader(r)
	if err != nil {
		r.Close()
		return nil, err
	}
	return &tarSource{c: r, zr: zr, tr: tar.NewReader(zr), part: part}, nil
}

func (t *tarSource) missing() string {
	if p, ok := t.c.(*partReader); ok {
		return p.missingNext
	}
	return ""
}

func (t *tarSource) where() string {
	if t.last == "" {
		return t.part()
	}
	return fmt.Sprintf("%s (after %s)", t.part(), t.last)
}

func (t *tarSource) next() (*entry, error) {
	h, err := t.tr.Next()
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("the archive ends early (cut off, or a split part missing): %w", err)
		}
		return nil, err
	}
	t.last = h.Name
	e := &entry{name: h.Name, size: h.Size, link: h.Linkname}
	switch h.Typeflag {
	case tar.TypeReg:
	case tar.TypeDir:
		e.kind = fs.ModeDir
	case tar.TypeSymlink:
		e.kind = fs.ModeSymlink
	case tar.TypeLink:
		e.kind = fs.ModeIrregular
	case tar.TypeChar, tar.TypeBlock:
		e.kind = fs.ModeDevice
	case tar.TypeFifo:
		e.kind = fs.ModeNamedPipe
	default:
		e.kind = fs.ModeIrregular
		e.link = ""
	}
	e.open = func() (io.ReadCloser, error) { return io.NopCloser(t.tr), nil }
	return e, nil
}

func (t *tarSource) Close() error {
	t.zr.Close()
	return t.c.Close()
}

// dirSource walks a bundle directory without following symlinks, and
// presents the manifest and signature first.
type dirSource struct {
	root    *os.Root
	dir     string
	entries []*entry
}

func openDir(dir string) (*dirSource, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	d := &dirSource{root: root, dir: dir}
	var rest []*entry
	count := 0
	err = fs.WalkDir(root.FS(), ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if count++; count > maxEntries {
			return &RejectError{Source: dir, File: p, Reason: fmt.Sprintf("one entry past the limit of %d", maxEntries)}
		}
		if de.IsDir() {
			return nil
		}
		fi, err := root.Lstat(p)
		if err != nil {
			return err
		}
		e := &entry{name: p, kind: fi.Mode().Type(), size: fi.Size()}
		if e.kind&fs.ModeSymlink != 0 {
			e.link, _ = root.Readlink(p)
		}
		e.open = d.opener(p, fi)
		if p == ManifestName || p == SignatureName {
			d.entries = append(d.entries, e)
		} else {
			rest = append(rest, e)
		}
		return nil
	})
	if err != nil {
		root.Close()
		var re *RejectError
		if errors.As(err, &re) {
			return nil, re
		}
		return nil, &RejectError{Source: dir, File: dir, Reason: "cannot be read: " + err.Error()}
	}
	sort.Slice(d.entries, func(i, j int) bool { return d.entries[i].name < d.entries[j].name })
	d.entries = append(d.entries, rest...)
	return d, nil
}

// opener opens the file it listed, and refuses if it was swapped since.
func (d *dirSource) opener(p string, listed fs.FileInfo) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		f, err := d.root.Open(p)
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil || !os.SameFile(fi, listed) || !fi.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("changed while the bundle was read")
		}
		return f, nil
	}
}

func (d *dirSource) next() (*entry, error) {
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	e := d.entries[0]
	d.entries = d.entries[1:]
	return e, nil
}

func (d *dirSource) where() string { return d.dir }

func (d *dirSource) Close() error { return d.root.Close() }
