package bundles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

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
