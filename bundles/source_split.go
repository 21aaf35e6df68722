package bundles

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// partReader reads the parts of a split archive as one stream, naming the
// part it is in when something is wrong.
type partReader struct {
	base string
	i    int
	f    *os.File
	// missingNext is the part after the last one, once reading reached it
	missingNext string
}

func openParts(first string) (*partReader, error) {
	base := strings.TrimSuffix(first, ".001")
	r := &partReader{base: base, i: 1}
	n := 1
	for ; ; n++ {
		if _, err := os.Stat(partName(base, n+1)); err != nil {
			break
		}
	}
	// a gap means a part was not copied: say which, before reading a byte
	if _, err := os.Stat(partName(base, n+2)); err == nil {
		return nil, &RejectError{Source: first, File: filepath.Base(partName(base, n+1)),
			Reason: fmt.Sprintf("not found, but %s is; copy every part to the same folder", filepath.Base(partName(base, n+2)))}
	}
	if err := checkParts(first, base, n); err != nil {
		return nil, err
	}
	f, err := os.Open(partName(base, 1))
	if err != nil {
		return nil, err
	}
	r.f = f
	return r, nil
}

// zstdMagic starts every zstd frame, so the first part of every bundle.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// checkParts blames a part by its size before a byte is decoded: the
// build writes every part but the last at the same size, so a part of
// another size was cut short while copying, or the parts were renamed.
// Without this, the stream fails later in whichever part the decoder was
// in, with the decoder's own words.
func checkParts(first, base string, n int) error {
	reject := func(i int, format string, a ...any) error {
		return &RejectError{Source: first, File: filepath.Base(partName(base, i)),
			Reason: fmt.Sprintf(format, a...) + "; copy the parts again from the build machine"}
	}
	var size int64
	for i := 1; i <= n; i++ {
		fi, err := os.Stat(partName(base, i))
		if err != nil {
			return reject(i, "cannot be read: %v", err)
		}
		switch {
		case fi.Size() == 0:
			return reject(i, "is empty")
		case i == 1:
			size = fi.Size()
		case i < n && fi.Size() != size:
			return reject(i, "is %d bytes, but every part but the last is %d: it was cut short, or the parts were renamed out of order", fi.Size(), size)
		case i == n && fi.Size() > size:
			return reject(i, "is %d bytes, more than the %d of every other part: it is not the last part of this bundle", fi.Size(), size)
		}
	}
	f, err := os.Open(partName(base, 1))
	if err != nil {
		return reject(1, "cannot be read: %v", err)
	}
	defer f.Close()
	head := make([]byte, len(zstdMagic))
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, zstdMagic) {
		return reject(1, "does not start a bundle: it is another part renamed, or not a bundle part at all")
	}
	return nil
}

// Current names the part being read, for errors.
func (r *partReader) Current() string { return filepath.Base(partName(r.base, r.i)) }

func (r *partReader) Read(p []byte) (int, error) {
	for {
		n, err := r.f.Read(p)
		if !errors.Is(err, io.EOF) || n > 0 {
			return n, err
		}
		next, err := os.Open(partName(r.base, r.i+1))
		if errors.Is(err, os.ErrNotExist) {
			r.missingNext = filepath.Base(partName(r.base, r.i+1))
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		r.f.Close()
		r.f, r.i = next, r.i+1
	}
}

func (r *partReader) Close() error { return r.f.Close() }
