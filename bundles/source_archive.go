package bundles

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// tarSource reads a tar.zst stream. The stream is bounded by the entries'
// declared sizes, so a decompression bomb hits a limit, not the disk.
type tarSource struct {
	c  io.Closer
	zr interface {
		io.Reader
		Close()
	}
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
	if errors.Is(err, io.EOF) {
		if terr := t.trailing(); terr != nil {
			return nil, terr
		}
	}
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

// maxTrailer is how many zero bytes may follow the tar end marker: tar
// pads its last record (10 KiB by default) with zeros.
const maxTrailer = 1 << 20

// trailing refuses what follows the end marker, in the zstd stream or after
// it: the manifest vouches for every byte, so no byte may go unchecked.
func (t *tarSource) trailing() error {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := t.zr.Read(buf)
		n += int64(k)
		if n > maxTrailer || len(bytes.Trim(buf[:k], "\x00")) > 0 {
			return errors.New("data after the archive's end; a bundle is the files its manifest lists and nothing more: copy it again, or rebuild it")
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("after the archive's end: %v; copy it again, or rebuild it", err)
		}
	}
}

func (t *tarSource) Close() error {
	t.zr.Close()
	return t.c.Close()
}
