package bundles

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

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
