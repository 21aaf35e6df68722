package bundles

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
)

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
