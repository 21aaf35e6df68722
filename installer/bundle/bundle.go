// Package bundle is the install's bundle: bundle.source resolved (a path,
// a URL, or the stick found on removable media), its signed manifest read
// at plan time, every byte verified into staging before the first host
// change, and the verified copy put in place by a rename.
package bundle

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
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
)

// Dir holds installed bundles, one directory per name and version; they
// are data, kept by uninstall until --purge.
const Dir = engine.StateDir + "/bundles"

// Bundle is the configured bundle: its manifest and signature checked at
// plan time, every byte verified before the first host change of an install.
type Bundle struct {
	n      *node.Node
	report func(step string) *engine.Reporter
	src    string
	opts   bundles.OpenOptions
	opened *bundles.Opened
	// staged is the verified copy waiting to become dir.
	staged string
}

func (b *Bundle) dir() string {
	m := b.opened.Manifest
	return path.Join(Dir, m.Name+"-"+m.Version)
}

// Load resolves bundle.source and reads its signed manifest, and tells the
// node where the bundle lives; nil when the config names no bundle.
func Load(ctx context.Context, n *node.Node, arch string, report func(step string) *engine.Reporter) (*Bundle, error) {
	src := n.Cfg.Bundle.Source
	if src == "" {
		return nil, nil
	}
	if src == config.BundleAuto {
		found, err := bundles.Discover(bundles.DiscoverOptions{})
		if err != nil {
			return nil, fmt.Errorf("bundle.source auto: %w", err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("bundle.source auto: no bundle on removable media (looked under /media, /run/media, /mnt); plug in the stick, mount it, or set bundle.source to its path")
		}
		src = found[0].Path
		report("bundle").Logf("using the bundle found at %s", src)
	}
	pub, err := bundles.LoadPublicKey(n.Cfg.Bundle.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("bundle.publicKey: %w", err)
	}
	b := &Bundle{n: n, report: report, src: src, opts: bundles.OpenOptions{PublicKey: &pub, Arch: arch}}
	if b.opened, err = bundles.ReadManifest(ctx, src, b.opts); err != nil {
		return nil, fmt.Errorf("bundle.source: %w", err)
	}
	n.Bundle = &node.Bundle{Dir: b.dir(), Manifest: b.opened.Manifest}
	return b, nil
}

// maxInstalledManifest bounds an installed manifest's size, as
// verification bounded it before install put it there.
const maxInstalledManifest = 16 << 20

// InstalledManifests are the manifests of the bundles installed under
// Dir, whose every file was verified before install renamed them there;
// none on a node installed without a bundle. A copy being staged or
// replaced is not installed.
func InstalledManifests(h *host.Host) ([]*bundles.Manifest, error) {
	entries, err := os.ReadDir(h.Path(Dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*bundles.Manifest
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), ".old") {
			continue
		}
		p := path.Join(Dir, e.Name(), bundles.ManifestName)
		fi, err := h.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() || fi.Size() > maxInstalledManifest {
			return nil, fmt.Errorf("%s: not a regular file of at most %d MiB", p, maxInstalledManifest>>20)
		}
		raw, err := h.ReadFile(p)
		if err != nil {
			return nil, err
		}
		m, err := bundles.ParseManifest(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Installed says whether the host already holds exactly this bundle.
func (b *Bundle) Installed() (bool, error) {
	have, err := b.n.Host.ReadFile(path.Join(b.dir(), bundles.ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.Equal(have, b.opened.ManifestRaw), nil
}

// Stage verifies every byte of the bundle into a staging directory
// beside where it will live, so nothing else on the host changes until the
// whole bundle is known good, and the final move is a rename.
func (b *Bundle) Stage(ctx context.Context) error {
	h := b.n.Host
	created := firstMissing(h, Dir)
	if err := h.MkdirAll(Dir, 0o755); err != nil {
		return err
	}
	undo := func() {
		if created != "" {
			h.RemoveAll(created)
		}
	}
	if err := removeStaleStaging(h); err != nil {
		undo()
		return err
	}
	b.staged = path.Join(Dir, ".staging-"+strconv.Itoa(os.Getpid()))
	r := b.report("bundle-verify")
	o := bundles.StageOptions{OpenOptions: b.opts, Into: h.Path(b.staged)}
	o.Progress = func(what string, done, total int64) { r.Progress("verifying "+path.Base(b.src), done, total) }
	op, err := bundles.Stage(ctx, b.src, o)
	if err != nil {
		b.staged = ""
		undo()
		return err
	}
	if !bytes.Equal(op.ManifestRaw, b.opened.ManifestRaw) {
		h.RemoveAll(b.staged)
		b.staged = ""
		undo()
		return fmt.Errorf("bundle.source %s changed while it was read (another manifest); run again", b.src)
	}
	r.Logf("%s %s verified: %d files, %s, %s", op.Manifest.Name, op.Manifest.Version, len(op.Manifest.Files), engine.Bytes(op.Manifest.Size()), op.Comment)
	return nil
}

// firstMissing is the outermost directory of p that does not exist yet: what
// to remove to leave the host as it was.
func firstMissing(h *host.Host, p string) string {
	missing := ""
	for d := p; d != "/" && d != "."; d = path.Dir(d) {
		if _, err := h.Stat(d); err == nil {
			break
		}
		missing = d
	}
	return missing
}

// removeStaleStaging removes what a killed install left, unless its perch
// is still running.
func removeStaleStaging(h *host.Host) error {
	entries, err := os.ReadDir(h.Path(Dir))
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
		if err := h.RemoveAll(path.Join(Dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// DropStaging removes a verified copy that was not put in place.
func (b *Bundle) DropStaging() {
	if b.staged != "" {
		b.n.Host.RemoveAll(b.staged)
		b.staged = ""
	}
}

// Step puts the verified bundle in place.
func (b *Bundle) Step() engine.Step { return &bundleStep{b} }

type bundleStep struct{ b *Bundle }

func (s *bundleStep) Name() string { return "bundle" }

func (s *bundleStep) Plan(context.Context) ([]engine.Change, error) {
	b := s.b
	ok, err := b.Installed()
	if err != nil || ok {
		return nil, err
	}
	m := b.opened.Manifest
	return []engine.Change{{Action: engine.Create, Kind: engine.Bundle, Target: b.dir(),
		Detail: fmt.Sprintf("%s %s from %s: %d files, %s, k3s %s", m.Name, m.Version, b.src, len(m.Files), engine.Bytes(m.Size()), m.K3s.Version)}}, nil
}

func (s *bundleStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	b, h := s.b, s.b.n.Host
	if b.staged == "" {
		if err := b.Stage(ctx); err != nil {
			return err
		}
	}
	dest := b.dir()
	old := dest + ".old"
	if err := h.RemoveAll(old); err != nil {
		return err
	}
	if _, err := h.Stat(dest); err == nil {
		if err := h.Rename(dest, old); err != nil {
			return err
		}
	}
	if err := h.Rename(b.staged, dest); err != nil {
		return fmt.Errorf("put bundle in place: %w", err)
	}
	b.staged = ""
	r.Logf("bundle %s in place", dest)
	return h.RemoveAll(old)
}

// Charts are the bundle's chart archives, checked against its signed
// manifest, for checks made before anything is installed: the installed
// copy when it is this bundle, or a local directory bundle read in place.
// An archive or URL has none until it is verified in full at install
// (ok false); done releases what was staged.
func (b *Bundle) Charts(ctx context.Context) (charts []bundles.ChartFile, done func(), ok bool, err error) {
	if inst, err := b.Installed(); err == nil && inst {
		var out []bundles.ChartFile
		for _, c := range b.opened.Manifest.Charts {
			out = append(out, bundles.ChartFile{Name: c.Name, Version: c.Version, Path: b.n.Host.Path(path.Join(b.dir(), c.Path))})
		}
		return out, func() {}, true, nil
	}
	if bundles.LocalDir(b.src) == "" {
		return nil, func() {}, false, nil
	}
	st, err := bundles.Stage(ctx, b.src, bundles.StageOptions{OpenOptions: b.opts, InPlace: true, ChartsOnly: true})
	if err != nil {
		return nil, func() {}, false, fmt.Errorf("bundle.source: %w", err)
	}
	return st.Charts(), func() { st.Close() }, true, nil
}
