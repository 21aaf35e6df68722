package converge

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
)

// Source is a file to install: where it is and, when a signed bundle
// manifest vouches for it, its size, digest and version without reading it.
type Source struct {
	Path    string
	Size    int64
	Digest  string // "sha256:…"; empty means hash the file when needed
	Version string
}

// LocalSource describes a file on this machine, named by a config key for
// errors. It never runs the file: what version it is, is the caller's to
// read from its bytes.
func LocalSource(p, field string) (Source, error) {
	fi, err := os.Stat(p)
	if err != nil {
		if field != "" {
			return Source{}, fmt.Errorf("%s: %w; set it to the path of the k3s binary", field, err)
		}
		return Source{}, err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return Source{}, fmt.Errorf("%s: %s is not an executable file; chmod +x it", field, p)
	}
	return Source{Path: p, Size: fi.Size()}, nil
}

// BinaryStep installs a file by content (an executable, with tool links
// next to it, as upstream install scripts make them).
type BinaryStep struct {
	Host     *host.Host
	StepName string
	Src      func(context.Context) (Source, error)
	Dest     string
	Mode     os.FileMode // 0755 when zero
	Links    []string
}

func (s *BinaryStep) Name() string { return s.StepName }

func (s *BinaryStep) Plan(ctx context.Context) ([]engine.Change, error) {
	src, err := s.Src(ctx)
	if err != nil {
		return nil, err
	}
	h := s.Host
	var cs []engine.Change
	detail := engine.Bytes(src.Size)
	if src.Version != "" {
		detail = src.Version + ", " + detail
	}
	cur, err := h.Stat(s.Dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.File, Target: s.Dest, Detail: detail})
	case err != nil:
		return nil, err
	default:
		same := cur.Size() == src.Size
		if same {
			want := src.Digest
			if want == "" {
				if want, err = host.DigestFile(src.Path); err != nil {
					return nil, err
				}
			}
			have, err := h.Digest(s.Dest)
			if err != nil {
				return nil, err
			}
			same = want == have
		}
		if !same {
			cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.File, Target: s.Dest, Detail: detail})
		}
	}
	for _, l := range s.Links {
		p := path.Join(path.Dir(s.Dest), l)
		target, err := h.Readlink(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.Link, Target: p, Detail: "-> " + path.Base(s.Dest)})
		case err != nil || target != path.Base(s.Dest):
			cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.Link, Target: p, Detail: "-> " + path.Base(s.Dest)})
		}
	}
	return cs, nil
}

func (s *BinaryStep) Apply(ctx context.Context, cs []engine.Change, r *engine.Reporter) error {
	h := s.Host
	for _, c := range cs {
		switch c.Kind {
		case engine.File:
			src, err := s.Src(ctx)
			if err != nil {
				return err
			}
			f, err := os.Open(src.Path)
			if err != nil {
				return err
			}
			mode := s.Mode
			if mode == 0 {
				mode = 0o755
			}
			digest, err := h.WriteStream(ctx, s.Dest, f, mode, func(n int64) { r.Progress("copying "+path.Base(s.Dest), n, src.Size) })
			f.Close()
			if err != nil {
				return fmt.Errorf("install %s: %w", s.Dest, err)
			}
			if src.Digest != "" && digest != src.Digest {
				return fmt.Errorf("install %s: %s changed since it was verified (sha256 %s, want %s); run again", s.Dest, src.Path, digest, src.Digest)
			}
		case engine.Link:
			if _, err := h.Symlink(path.Base(s.Dest), c.Target); err != nil {
				return err
			}
		}
	}
	return nil
}
