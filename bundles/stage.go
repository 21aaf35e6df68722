package bundles

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// StageOptions says where a verified bundle's files are to lie. Stage sets
// OpenOptions.Staging itself, from Into or Parent.
type StageOptions struct {
	OpenOptions
	// Into is the exact directory to stage into; it must not exist. A
	// failed Stage removes it; a successful one leaves it to the caller,
	// and Close does not remove it, so an install can rename it into place.
	// Into is always verified in full: InPlace and Parent do not apply.
	Into string
	// Parent holds the temporary directory the bundle is staged into when
	// Into is empty ("" is os.TempDir()). Close removes it. Pick a parent
	// on the disk the bundle's files are going to, so that they are not
	// copied twice.
	Parent string
	// InPlace verifies a local directory (a path or a file:// URL) where it
	// is, copying nothing. Other sources are still staged.
	InPlace bool
	// ChartsOnly, with InPlace, checks a local directory's signed manifest
	// (as ReadManifest) and then only its chart archives, each against the
	// manifest's sha256: what rendering reads, never the gigabytes of
	// images. Every other source is still verified in full.
	ChartsOnly bool
}

// Staged is a verified bundle whose files lie in Dir, with its manifest
// in memory.
type Staged struct {
	*Opened
	// tmp is what Stage created and Close removes.
	tmp string
}

// ChartFile is one of a bundle's chart archives on this machine.
type ChartFile struct {
	Name    string
	Version string
	Path    string // under the bundle's Dir
}

// Stage verifies a bundle once and says where its files are: in the local
// directory itself (InPlace), in Into, or in a temporary directory under
// Parent. Whatever it made is gone when it fails; call Close when done.
// src is anything Open takes.
func Stage(ctx context.Context, src string, o StageOptions) (*Staged, error) {
	if o.Into != "" {
		o.Staging = o.Into
		op, err := Open(ctx, src, o.OpenOptions)
		if err != nil {
			return nil, err
		}
		return &Staged{Opened: op}, nil
	}
	if dir := LocalDir(src); o.InPlace && dir != "" {
		return stageInPlace(ctx, dir, o)
	}
	tmp, err := os.MkdirTemp(o.Parent, ".perch-staging-")
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	// Open stages only into a directory it makes itself
	o.Staging = filepath.Join(tmp, "bundle")
	op, err := Open(ctx, src, o.OpenOptions)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &Staged{Opened: op, tmp: tmp}, nil
}

func stageInPlace(ctx context.Context, dir string, o StageOptions) (*Staged, error) {
	o.Staging = ""
	if !o.ChartsOnly {
		op, err := Open(ctx, dir, o.OpenOptions)
		if err != nil {
			return nil, err
		}
		op.Dir = dir
		return &Staged{Opened: op}, nil
	}
	op, err := ReadManifest(ctx, dir, o.OpenOptions)
	if err != nil {
		return nil, err
	}
	op.Dir = dir
	for _, c := range op.Manifest.Charts {
		if err := checkFile(filepath.Join(dir, filepath.FromSlash(c.Path)), op.Manifest, c.Path); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", dir, err)
		}
	}
	return &Staged{Opened: op}, nil
}

// checkFile compares a file with its manifest entry.
func checkFile(file string, m *Manifest, rel string) error {
	want, ok := m.File(rel)
	if !ok {
		return fmt.Errorf("%s is not among the manifest's files", rel)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != want.Size || hex.EncodeToString(sum[:]) != want.SHA256 {
		return errors.New(rel + " differs from the signed manifest; copy the bundle again")
	}
	return nil
}

// LocalDir is src as a local directory (a path or a file:// URL), or ""
// when it is anything else.
func LocalDir(src string) string {
	p := src
	if u, err := url.Parse(src); err == nil && u.Scheme == "file" {
		p = u.Path
	} else if err == nil && len(u.Scheme) > 1 {
		return ""
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return p
	}
	return ""
}

// ImagesDir is the bundle's OCI image layout, or "" when it holds no
// images.
func (s *Staged) ImagesDir() string {
	if len(s.Manifest.Images) == 0 {
		return ""
	}
	p := s.Manifest.Layout.Path
	if p == "" {
		p = ImagesDir
	}
	return filepath.Join(s.Dir, filepath.FromSlash(p))
}

// Charts are the bundle's chart archives, in manifest order.
func (s *Staged) Charts() []ChartFile {
	out := make([]ChartFile, 0, len(s.Manifest.Charts))
	for _, c := range s.Manifest.Charts {
		out = append(out, ChartFile{Name: c.Name, Version: c.Version, Path: filepath.Join(s.Dir, filepath.FromSlash(c.Path))})
	}
	return out
}

// Close removes the temporary directory Stage made, if it made one: never
// a directory verified in place, nor one staged Into.
func (s *Staged) Close() error {
	if s == nil || s.tmp == "" {
		return nil
	}
	tmp := s.tmp
	s.tmp = ""
	return os.RemoveAll(tmp)
}
