package bundles

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"

	"aead.dev/minisign"
	"github.com/google/go-containerregistry/pkg/authn"
)

// BuildOptions says where a bundle goes and how it is signed.
type BuildOptions struct {
	// Out is a directory, or an archive when it ends in .tar.zst.
	Out string
	// Key signs the manifest; nil builds an unsigned bundle, which sites
	// accept only with --insecure-skip-signature.
	Key *minisign.PrivateKey
	// Split cuts an archive into parts of at most this many bytes.
	Split int64
	// Pwd resolves relative sources: the spec file's directory.
	Pwd      string
	Keychain authn.Keychain
	// Mirrors pulls the images of a registry from another one, as a
	// connected site's pull-through cache (Harbor, Artifactory) serves
	// them: "docker.io" -> "harbor.example:443/dockerhub". The bundle
	// still names each image by its upstream reference, which is what the
	// charts and k3s ask the appliance for.
	Mirrors  map[string]string
	Progress ProgressFunc
	// Log gets one line per phase.
	Log     func(format string, args ...any)
	BuiltBy string
	// AllowUnverifiedSources accepts http(s) sources without ?checksum=.
	AllowUnverifiedSources bool
	// Needs finds the images the appliance pulls once the charts are
	// fetched (manifests/images); imagesFromCharts requires it.
	Needs NeedsFunc
	// Gate refuses a bundle that misses a needed image (the sites'
	// configs were given); without it a miss is a warning.
	Gate bool
	// AllowMissing are images the gate lets the bundle lack.
	AllowMissing []string
}

// Result is what a build wrote.
type Result struct {
	Manifest *Manifest
	Paths    []string // the directory, the archive, or its parts
}

// Build fetches everything the spec names, writes the bundle and signs it.
// It works in a directory beside Out and leaves nothing behind on failure.
func Build(ctx context.Context, s *Spec, o BuildOptions) (*Result, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if err := s.checkSources(o.AllowUnverifiedSources, o.Pwd); err != nil {
		return nil, err
	}
	o.Out = filepath.Clean(o.Out)
	if err := checkOut(o.Out, o.Split); err != nil {
		return nil, err
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	parent := filepath.Dir(o.Out)
	made := firstMissing(parent)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(parent, "."+filepath.Base(o.Out)+".build-")
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(work)
			if made != "" {
				os.RemoveAll(made)
			}
		}
	}()
	b := &builder{spec: s, opts: o, dir: filepath.Join(work, "bundle"), tmp: filepath.Join(work, "src"), logf: logf,
		fetch: &fetcher{pwd: o.Pwd, progress: o.Progress}}
	m, err := b.build(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Manifest: m}
	if IsArchive(o.Out) {
		logf("writing %s", o.Out)
		if res.Paths, err = writeArchive(b.dir, m, o.Key != nil, o.Out, o.Split, o.Progress); err != nil {
			return nil, fmt.Errorf("write %s: %w", o.Out, err)
		}
		done = true
		os.RemoveAll(work)
		return res, nil
	}
	// rename(2) itself, not os.Rename (which refuses any directory there):
	// it replaces the empty directory checkOut allowed, and nothing else
	if err := syscall.Rename(b.dir, o.Out); err != nil {
		return nil, fmt.Errorf("write %s: %w", o.Out, err)
	}
	done = true
	os.RemoveAll(work)
	res.Paths = []string{o.Out}
	return res, nil
}

// archiveLike are names a person may give --out meaning an archive that
// perch does not write; taken as a directory, they surprise.
var archiveLike = []string{".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.lz4", ".tar", ".zip", ".gz", ".zst", ".7z"}

// checkOut refuses an --out that the build would fail on, or misread,
// before anything is fetched: an archive name other than .tar.zst, or
// something that exists (only an empty directory may, for a directory
// bundle).
func checkOut(out string, split int64) error {
	archive := strings.HasSuffix(out, ArchiveExt)
	if !archive {
		for _, ext := range archiveLike {
			if strings.HasSuffix(strings.ToLower(out), ext) {
				return invalid("--out %s: bundles are written as one %s archive or as a directory; end --out in %s, or leave out %s for a directory", out, ArchiveExt, ArchiveExt, ext)
			}
		}
	}
	if split > 0 && !archive {
		return invalid("--split needs an archive: end --out in %s", ArchiveExt)
	}
	if split > 0 && split < 1<<20 {
		return invalid("--split %d is too small; use at least 1MiB (3900MiB suits FAT32)", split)
	}
	for _, p := range []string{out, partName(out, 1)} {
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if !archive && p == out && fi.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return invalid("--out %s: %v", p, err)
			}
			if len(entries) == 0 {
				continue
			}
			return invalid("--out %s is a directory that is not empty; empty it or choose another --out", p)
		}
		return invalid("%s already exists; remove it or choose another --out", p)
	}
	return nil
}

// firstMissing is the outermost directory of dir that does not exist yet,
// which a failed build removes again; "" when dir exists.
func firstMissing(dir string) string {
	missing := ""
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			return missing
		}
		missing = d
		if filepath.Dir(d) == d {
			return missing
		}
	}
}

type builder struct {
	spec  *Spec
	opts  BuildOptions
	dir   string // the bundle as it will be
	tmp   string // fetched sources that are not bundle files as they are
	fetch *fetcher
	logf  func(string, ...any)
}

func (b *builder) build(ctx context.Context) (*Manifest, error) {
	s := b.spec
	m := &Manifest{APIVersion: APIVersion, Kind: ManifestKind, Name: s.Name, Version: s.Version, Arch: s.Arch, BuiltBy: b.opts.BuiltBy}
	supplies, pull, err := b.inputs(ctx, m)
	if err != nil {
		return nil, err
	}
	if miss := missing(supplies); len(miss) > 0 {
		if b.opts.Gate {
			return nil, &MissingError{Missing: miss}
		}
		b.logf("warning: %s", (&MissingError{Missing: miss}).Error())
		b.logf("warning: no --config was given, so this is not an error; pass the sites' configs with --config to refuse such a bundle")
	}
	for i, f := range s.Files {
		b.logf("fetching %s from %s", f.Dest, f.Source)
		dst := filepath.Join(b.dir, filesDir, filepath.FromSlash(path.Clean(f.Dest)))
		if err := b.fetch.get(ctx, fmt.Sprintf("files[%d]", i), f.Source, dst, false); err != nil {
			return nil, err
		}
	}
	if m.Images, m.Layout, err = b.images(ctx, pull); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(b.tmp); err != nil {
		return nil, err
	}
	b.logf("hashing")
	if m.Files, err = hashTree(b.dir, b.opts.Progress); err != nil {
		return nil, err
	}
	raw, err := m.Encode()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(b.dir, ManifestName), raw, 0o644); err != nil {
		return nil, err
	}
	if b.opts.Key != nil {
		sig, err := Sign(*b.opts.Key, bytes.NewReader(raw), fmt.Sprintf("perch bundle %s %s %s", m.Name, m.Version, m.Arch))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(b.dir, SignatureName), sig, 0o644); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// inputs fetches k3s, its air-gap images and the charts into the bundle
// directory, filling m's k3s and charts, and decides every image: what
// the appliance needs (BuildOptions.Needs), how the bundle supplies each,
// and what is to be pulled.
func (b *builder) inputs(ctx context.Context, m *Manifest) ([]Supply, []string, error) {
	s := b.spec
	b.logf("fetching k3s from %s", s.K3s.Binary)
	bin := filepath.Join(b.dir, filepath.FromSlash(K3sBinaryPath))
	if err := b.fetch.get(ctx, "k3s.binary", s.K3s.Binary, bin, false); err != nil {
		return nil, nil, err
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		return nil, nil, err
	}
	v, err := K3sVersion(bin)
	if err != nil {
		return nil, nil, fmt.Errorf("k3s.binary: %w", err)
	}
	m.K3s = K3sInfo{Version: v, Binary: K3sBinaryPath}
	if s.K3s.AirgapImages != "" {
		name := "k3s-airgap-images-" + s.Arch + airgapExt(s.K3s.AirgapImages)
		m.K3s.AirgapImages = path.Join("k3s", name)
		b.logf("fetching k3s airgap images from %s", s.K3s.AirgapImages)
		dst := filepath.Join(b.dir, "k3s", name)
		if err := b.fetch.get(ctx, "k3s.airgapImages", s.K3s.AirgapImages, dst, false); err != nil {
			return nil, nil, err
		}
		names, ok, err := airgapNames(dst)
		if err != nil {
			return nil, nil, invalid("%w", err)
		}
		if !ok {
			b.logf("k3s.airgapImages: %s is not read for its image names (only .tar, .tar.gz and .tar.zst are); the gate cannot count its images", name)
		}
		m.K3s.Images = names
	}
	var local []LocalChart
	for i, c := range s.Charts {
		what := fmt.Sprintf("charts[%d] %s", i, c.Name)
		b.logf("fetching chart %s from %s", c.Name, c.Source)
		src := filepath.Join(b.tmp, "chart-"+c.Name)
		if err := b.fetch.get(ctx, what, c.Source, src, true); err != nil {
			return nil, nil, err
		}
		ch, rel, err := packChart(chartSource(src), c.Name, b.dir)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		m.Charts = append(m.Charts, Chart{Name: c.Name, Version: ch.Metadata.Version, Path: rel})
		local = append(local, LocalChart{Name: c.Name, Version: ch.Metadata.Version, Path: filepath.Join(b.dir, filepath.FromSlash(rel))})
	}
	if b.opts.Needs == nil {
		if s.ImagesFromCharts {
			return nil, nil, invalid("imagesFromCharts: this build has no image discovery; build with perch bundle build")
		}
		return nil, s.Images, nil
	}
	b.logf("finding the images every app and k3s pull")
	needs, err := b.opts.Needs(ctx, local, v)
	if err != nil {
		return nil, nil, err
	}
	for i := range m.Charts {
		m.Charts[i].Images = chartNeeds(needs, m.Charts[i])
	}
	supplies, pull := supply(needs, s.Images, s.ImagesFromCharts, m.K3s.Images, b.opts.AllowMissing)
	return supplies, pull, nil
}

// chartNeeds are the images c's renderings name, as the manifest records
// them per chart.
func chartNeeds(needs []Need, c Chart) []string {
	var out []string
	for _, n := range needs {
		if slices.ContainsFunc(n.From, func(o Origin) bool { return o.Chart == c.Name+"-"+c.Version }) {
			out = append(out, n.Image)
		}
	}
	return out
}

func (b *builder) images(ctx context.Context, refs []string) ([]Image, Layout, error) {
	// one image however it is spelled: nginx:1, docker.io/library/nginx:1
	seen := map[string]bool{}
	var uniq []string
	for _, r := range refs {
		if key := Canonical(r); !seen[key] {
			seen[key] = true
			uniq = append(uniq, key)
		}
	}
	sort.Strings(uniq)
	w, err := newImageWriter(filepath.Join(b.dir, ImagesDir), b.spec.Arch, b.opts.Keychain, b.opts.Progress)
	w.mirrors = b.opts.Mirrors
	if err != nil {
		return nil, Layout{}, err
	}
	b.logf("resolving %d images for linux/%s", len(uniq), b.spec.Arch)
	res, err := w.resolve(ctx, uniq)
	if err != nil {
		return nil, Layout{}, err
	}
	images, err := w.write(ctx, res)
	if err != nil {
		return nil, Layout{}, err
	}
	return images, w.stats(images), nil
}

// chartSource is the chart inside what go-getter fetched: the directory
// itself, or the single archive file in it.
func chartSource(fetched string) string {
	fi, err := os.Stat(fetched)
	if err != nil || !fi.IsDir() {
		return fetched
	}
	if _, err := os.Stat(filepath.Join(fetched, "Chart.yaml")); err == nil {
		return fetched
	}
	entries, _ := os.ReadDir(fetched)
	if len(entries) == 1 && !entries[0].IsDir() {
		return filepath.Join(fetched, entries[0].Name())
	}
	return fetched
}

func airgapExt(src string) string {
	u := src
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	for _, ext := range []string{".tar.zst", ".tar.gz", ".tar.lz4", ".tar.bz2", ".tar.xz", ".tar"} {
		if strings.HasSuffix(u, ext) {
			return ext
		}
	}
	return ".tar"
}

// hashTree lists every file under dir with its size and sha256. A bundle
// holds regular files only; anything else is a build bug.
func hashTree(dir string, progress ProgressFunc) ([]File, error) {
	var files []File
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, File{Path: filepath.ToSlash(rel), Size: fi.Size()})
		total += fi.Size()
		return nil
	})
	if err != nil {
		return nil, err
	}
	var done int64
	buf := make([]byte, 1<<20)
	for i := range files {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(files[i].Path)))
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.CopyBuffer(h, f, buf)
		f.Close()
		if err != nil {
			return nil, err
		}
		files[i].SHA256 = hex.EncodeToString(h.Sum(nil))
		done += files[i].Size
		progress.report("hashing", done, total)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

var k3sVersionRe = regexp.MustCompile(`v[0-9]+\.[0-9]+\.[0-9]+(-rc[0-9]+)?\+k3s[0-9A-Za-z.-]*`)

// K3sVersion finds the version string the k3s build stamps into its
// binary. It reads the bytes and never runs the file: a fetched binary run
// on this machine would get its environment (the signing key's password, a
// node token) and whatever it can reach.
func K3sVersion(bin string) (string, error) {
	f, err := os.Open(bin)
	if err != nil {
		return "", err
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sc.Split(splitPrintable)
	for sc.Scan() {
		for _, v := range k3sVersionRe.FindAll(sc.Bytes(), -1) {
			counts[string(v)]++
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	best := ""
	for v, n := range counts {
		if n > counts[best] || (n == counts[best] && v > best) {
			best = v
		}
	}
	if best == "" {
		return "", fmt.Errorf("%s does not look like a k3s binary (no k3s version in it)", filepath.Base(bin))
	}
	return best, nil
}

// splitPrintable yields runs of printable ASCII, like strings(1).
func splitPrintable(data []byte, atEOF bool) (int, []byte, error) {
	start := 0
	for start < len(data) && !printable(data[start]) {
		start++
	}
	for i := start; i < len(data); i++ {
		if !printable(data[i]) {
			return i + 1, data[start:i], nil
		}
	}
	if atEOF || len(data)-start >= 1<<19 {
		if len(data) == 0 {
			return 0, nil, nil
		}
		return len(data), data[start:], nil
	}
	return start, nil, nil
}

func printable(c byte) bool { return c >= 0x20 && c < 0x7f }

// Images is what `perch bundle images` shows: every image the appliance
// needs, how the spec supplies it, and the spec's images no app needs
// (with no origin). It fetches the spec's k3s and charts into a directory
// it removes again, and pulls no image.
func Images(ctx context.Context, s *Spec, o BuildOptions) ([]Supply, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if err := s.checkSources(o.AllowUnverifiedSources, o.Pwd); err != nil {
		return nil, err
	}
	if o.Needs == nil {
		return nil, invalid("bundle images: no image discovery given")
	}
	work, err := os.MkdirTemp("", "perch-bundle-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	b := &builder{spec: s, opts: o, dir: filepath.Join(work, "bundle"), tmp: filepath.Join(work, "src"), logf: logf,
		fetch: &fetcher{pwd: o.Pwd, progress: o.Progress}}
	m := &Manifest{Arch: s.Arch}
	supplies, _, err := b.inputs(ctx, m)
	if err != nil {
		return nil, err
	}
	for _, im := range s.Images {
		key := Canonical(im)
		if !slices.ContainsFunc(supplies, func(x Supply) bool { return x.Image == key }) {
			supplies = append(supplies, Supply{Need: Need{Image: key}, By: FromSpec})
		}
	}
	sort.Slice(supplies, func(i, j int) bool { return supplies[i].Image < supplies[j].Image })
	return supplies, nil
}
