package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/k3s"
)

// BundlesDir holds installed bundles, one directory per name and version;
// they are data, kept by uninstall until --purge.
const BundlesDir = engine.StateDir + "/bundles"

// AutoBundle as bundle.source picks the bundle found on removable media.
const AutoBundle = "auto"

// bundle is the configured bundle: its manifest and signature checked at
// plan time, every byte verified before the first host change of an install.
type bundle struct {
	src    string
	opts   bundles.OpenOptions
	opened *bundles.Opened
	// staged is the verified copy waiting to become Dir.
	staged string
}

func (b *bundle) dir() string {
	m := b.opened.Manifest
	return path.Join(BundlesDir, m.Name+"-"+m.Version)
}

// loadBundle resolves bundle.source and reads its signed manifest.
func (i *Installer) loadBundle(ctx context.Context) error {
	if i.cfg.Bundle.Source == "" || i.bundle != nil {
		return nil
	}
	src := i.cfg.Bundle.Source
	if src == AutoBundle {
		found, err := bundles.Discover(bundles.DiscoverOptions{})
		if err != nil {
			return fmt.Errorf("bundle.source auto: %w", err)
		}
		if len(found) == 0 {
			return fmt.Errorf("bundle.source auto: no bundle on removable media (looked under /media, /run/media, /mnt); plug in the stick, mount it, or set bundle.source to its path")
		}
		src = found[0].Path
		i.report("bundle").Logf("using the bundle found at %s", src)
	}
	pub, err := bundles.LoadPublicKey(i.cfg.Bundle.PublicKey)
	if err != nil {
		return fmt.Errorf("bundle.publicKey: %w", err)
	}
	b := &bundle{src: src, opts: bundles.OpenOptions{PublicKey: &pub, Arch: i.arch}}
	if b.opened, err = bundles.ReadManifest(ctx, src, b.opts); err != nil {
		return fmt.Errorf("bundle.source: %w", err)
	}
	i.bundle = b
	i.env.Bundle = &k3s.Bundle{Dir: b.dir(), Manifest: b.opened.Manifest}
	return nil
}

func (i *Installer) report(step string) *engine.Reporter {
	sink := i.sink
	if sink == nil {
		sink = func(engine.Event) {}
	}
	return engine.NewReporter(step, sink)
}

// installed says whether the host already holds exactly this bundle.
func (i *Installer) bundleInstalled() (bool, error) {
	b := i.bundle
	have, err := i.host.ReadFile(path.Join(b.dir(), bundles.ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.Equal(have, b.opened.ManifestRaw), nil
}

// stageBundle verifies every byte of the bundle into a staging directory
// beside where it will live, so nothing else on the host changes until the
// whole bundle is known good, and the final move is a rename.
func (i *Installer) stageBundle(ctx context.Context) error {
	b := i.bundle
	created := i.firstMissing(BundlesDir)
	if err := i.host.MkdirAll(BundlesDir, 0o755); err != nil {
		return err
	}
	undo := func() {
		if created != "" {
			i.host.RemoveAll(created)
		}
	}
	if err := i.removeStaleStaging(); err != nil {
		undo()
		return err
	}
	b.staged = path.Join(BundlesDir, ".staging-"+strconv.Itoa(os.Getpid()))
	r := i.report("bundle-verify")
	o := b.opts
	o.Staging = i.host.Path(b.staged)
	o.Progress = func(what string, done, total int64) { r.Progress("verifying "+path.Base(b.src), done, total) }
	op, err := bundles.Open(ctx, b.src, o)
	if err != nil {
		b.staged = ""
		undo()
		return err
	}
	if !bytes.Equal(op.ManifestRaw, b.opened.ManifestRaw) {
		i.host.RemoveAll(b.staged)
		b.staged = ""
		undo()
		return fmt.Errorf("bundle.source %s changed while it was read (another manifest); run again", b.src)
	}
	r.Logf("%s %s verified: %d files, %s, %s", op.Manifest.Name, op.Manifest.Version, len(op.Manifest.Files), engine.Bytes(op.Manifest.Size()), op.Comment)
	return nil
}

// firstMissing is the outermost directory of p that does not exist yet: what
// to remove to leave the host as it was.
func (i *Installer) firstMissing(p string) string {
	missing := ""
	for d := p; d != "/" && d != "."; d = path.Dir(d) {
		if _, err := i.host.Stat(d); err == nil {
			break
		}
		missing = d
	}
	return missing
}

// removeStaleStaging removes what a killed install left, unless its perch
// is still running.
func (i *Installer) removeStaleStaging() error {
	entries, err := os.ReadDir(i.host.Path(BundlesDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		pid, ok := strings.CutPrefix(e.Name(), ".staging-")
		if !ok {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil && pid != strconv.Itoa(os.Getpid()) {
			continue
		}
		if err := i.host.RemoveAll(path.Join(BundlesDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (i *Installer) dropStaging() {
	if b := i.bundle; b != nil && b.staged != "" {
		i.host.RemoveAll(b.staged)
		b.staged = ""
	}
}

// bundleStep puts the verified bundle in place.
type bundleStep struct{ i *Installer }

func (s *bundleStep) Name() string { return "bundle" }

func (s *bundleStep) Plan(context.Context) ([]engine.Change, error) {
	ok, err := s.i.bundleInstalled()
	if err != nil || ok {
		return nil, err
	}
	b := s.i.bundle
	m := b.opened.Manifest
	return []engine.Change{{Action: engine.Create, Kind: engine.Bundle, Target: b.dir(),
		Detail: fmt.Sprintf("%s %s from %s: %d files, %s, k3s %s", m.Name, m.Version, b.src, len(m.Files), engine.Bytes(m.Size()), m.K3s.Version)}}, nil
}

func (s *bundleStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	i, b := s.i, s.i.bundle
	if b.staged == "" {
		if err := i.stageBundle(ctx); err != nil {
			return err
		}
	}
	dest := b.dir()
	old := dest + ".old"
	if err := i.host.RemoveAll(old); err != nil {
		return err
	}
	if _, err := i.host.Stat(dest); err == nil {
		if err := i.host.Rename(dest, old); err != nil {
			return err
		}
	}
	if err := i.host.Rename(b.staged, dest); err != nil {
		return fmt.Errorf("put bundle in place: %w", err)
	}
	b.staged = ""
	r.Logf("bundle %s in place", dest)
	return i.host.RemoveAll(old)
}
