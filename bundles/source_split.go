package bundles

import (
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
	f, err := os.Open(partName(base, 1))
	if err != nil {
		return nil, err
	}
	r.f = f
	return r, nil
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
