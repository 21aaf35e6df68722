package bundles

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ArchiveExt marks a single-file bundle; split parts add .001, .002, ….
const ArchiveExt = ".tar.zst"

// Archives are written with an 8 MiB window and read with at most 32 MiB
// (what k3s also accepts for its airgap images): a stream asking for more
// is refused, not allowed to make the reader allocate it.
const (
	writeWindow = 8 << 20
	readWindow  = 32 << 20
)

// IsArchive says whether a bundle path names an archive (or its first part).
func IsArchive(p string) bool {
	return strings.HasSuffix(p, ArchiveExt) || strings.HasSuffix(p, ArchiveExt+".001")
}

// partName is the name of the i-th (1-based) part of a split archive.
func partName(base string, i int) string { return fmt.Sprintf("%s.%03d", base, i) }

// writeArchive writes the bundle in dir as one tar.zst at out, or as parts
// of at most split bytes: manifest and signature first, then every file in
// manifest order, so a reader can verify while it extracts.
func writeArchive(dir string, m *Manifest, signed bool, out string, split int64, progress ProgressFunc) (parts []string, err error) {
	w := &partWriter{base: out, limit: split}
	defer func() {
		if err != nil {
			w.abort()
		}
	}()
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(writeWindow), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	names := []string{ManifestName}
	if signed {
		names = append(names, SignatureName)
	}
	for _, f := range m.Files {
		names = append(names, f.Path)
	}
	total, done := m.Size(), int64(0)
	buf := make([]byte, 1<<20)
	for _, n := range names {
		if err := addFile(tw, dir, n, buf); err != nil {
			return nil, err
		}
		if f, ok := m.File(n); ok {
			done += f.Size
			progress.report("archive", done, total)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return w.finish()
}

func addFile(tw *tar.Writer, dir, name string, buf []byte) error {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	mode := int64(0o644)
	if fi.Mode()&0o111 != 0 {
		mode = 0o755
	}
	// fixed owner and time: the same bundle gives the same archive
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: fi.Size(), Mode: mode, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.CopyBuffer(tw, f, buf)
	return err
}

// partWriter writes out, or out.001, out.002, … of limit bytes each, under
// temporary names until finish renames them, so a failed build leaves no
// archive that looks whole.
type partWriter struct {
	base  string
	limit int64
	f     *os.File
	n     int64
	tmps  []string
}

func (w *partWriter) name(i int) string {
	if w.limit <= 0 {
		return w.base
	}
	return partName(w.base, i)
}

func (w *partWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.f == nil || (w.limit > 0 && w.n >= w.limit) {
			if err := w.next(); err != nil {
				return written, err
			}
		}
		chunk := p
		if w.limit > 0 && int64(len(chunk)) > w.limit-w.n {
			chunk = chunk[:w.limit-w.n]
		}
		n, err := w.f.Write(chunk)
		written += n
		w.n += int64(n)
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (w *partWriter) next() error {
	if err := w.closeCurrent(); err != nil {
		return err
	}
	tmp := w.name(len(w.tmps)+1) + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w.f, w.n, w.tmps = f, 0, append(w.tmps, tmp)
	return nil
}

func (w *partWriter) closeCurrent() error {
	if w.f == nil {
		return nil
	}
	f := w.f
	w.f = nil
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (w *partWriter) finish() ([]string, error) {
	if w.f == nil {
		if err := w.next(); err != nil {
			return nil, err
		}
	}
	if err := w.closeCurrent(); err != nil {
		return nil, err
	}
	var out []string
	for i, tmp := range w.tmps {
		final := w.name(i + 1)
		if err := os.Rename(tmp, final); err != nil {
			return nil, err
		}
		out = append(out, final)
	}
	return out, nil
}

func (w *partWriter) abort() {
	if w.f != nil {
		w.f.Close()
	}
	for _, t := range w.tmps {
		os.Remove(t)
	}
}

// newZstdReader decodes in its own goroutine, so decompression overlaps the
// hashing on a second core: verifying an archive then runs at sha256's pace.
func newZstdReader(r io.Reader) (*zstd.Decoder, error) {
	return zstd.NewReader(r, zstd.WithDecoderMaxWindow(readWindow), zstd.WithDecoderMaxMemory(readWindow*2),
		zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(true))
}
