package bundles

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

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
