// Package converge holds the steps every step family is made of: files
// whose content is known up front, a file installed by content (a binary
// with its tool links), and a service restarted exactly when what it read
// at start has changed. Each compares the host with what is wanted and
// changes only what differs.
package converge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
)

// File is a file as it should be; Secret ones are 0600 and their content
// never shows in a plan or log.
type File struct {
	Path   string
	Data   []byte
	Mode   fs.FileMode
	Secret bool
}

// FilesStep writes files whose content is known up front, changing only
// those that differ in content or mode.
type FilesStep struct {
	Host     *host.Host
	StepName string
	Files    func() ([]File, error)
}

func (s *FilesStep) Name() string { return s.StepName }

func (s *FilesStep) Plan(context.Context) ([]engine.Change, error) {
	files, err := s.Files()
	if err != nil {
		return nil, err
	}
	return Diff(s.Host, files)
}

func (s *FilesStep) Apply(context.Context, []engine.Change, *engine.Reporter) error {
	files, err := s.Files()
	if err != nil {
		return err
	}
	return Write(s.Host, files)
}

// Write puts files in place through the host layer, each atomically; one
// that already holds the same bytes and mode is left alone.
func Write(h *host.Host, files []File) error {
	for _, f := range files {
		if _, err := h.WriteFile(f.Path, f.Data, f.Mode); err != nil {
			return err
		}
	}
	return nil
}

// Diff is what writing files would change.
func Diff(h *host.Host, files []File) ([]engine.Change, error) {
	var cs []engine.Change
	for _, f := range files {
		detail := fmt.Sprintf("mode %04o", f.Mode)
		if f.Secret {
			detail += ", secret"
		}
		have, err := h.ReadFile(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.File, Target: f.Path, Detail: detail})
			continue
		case err != nil:
			return nil, err
		}
		fi, err := h.Stat(f.Path)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(have, f.Data) || fi.Mode().Perm() != f.Mode {
			cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.File, Target: f.Path, Detail: detail})
		}
	}
	return cs, nil
}
