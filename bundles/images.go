package bundles

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Annotations that name an image in the layout: the OCI one (skopeo, oras)
// and containerd's (ctr import), both with the full reference.
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// FullReference is the reference as containerd spells it: "nginx:1" is
// docker.io/library/nginx:1. A reference with both tag and digest is the
// digest: that is what is pulled, and the tag could say anything.
func FullReference(ref name.Reference) string {
	sep := ":"
	if _, ok := ref.(name.Digest); ok {
		sep = "@"
	}
	s := ref.Context().Name() + sep + ref.Identifier()
	if strings.HasPrefix(s, name.DefaultRegistry+"/") {
		s = "docker.io/" + strings.TrimPrefix(s, name.DefaultRegistry+"/")
	}
	return s
}

// Canonical is s as FullReference spells it, so that every spelling of one
// image compares equal; s itself when it is not a reference.
func Canonical(s string) string {
	if ref, err := name.ParseReference(s); err == nil {
		return FullReference(ref)
	}
	return s
}

// imageWriter pulls images for one platform into one OCI layout, writing
// each blob once however many images share it.
type imageWriter struct {
	dir      string
	path     layout.Path
	platform v1.Platform
	keychain authn.Keychain
	progress ProgressFunc
	blobs    map[v1.Hash]int64
	mirrors  map[string]string
}

func newImageWriter(dir, arch string, kc authn.Keychain, p ProgressFunc) (*imageWriter, error) {
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("create image layout: %w", err)
	}
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	return &imageWriter{
		dir: dir, path: lp, keychain: kc, progress: p,
		platform: v1.Platform{OS: "linux", Architecture: arch},
		blobs:    map[v1.Hash]int64{},
	}, nil
}

// resolved is an image chosen for the platform, before its blobs are copied.
type resolved struct {
	ref   name.Reference
	img   v1.Image
	index string
	size  int64
}

// resolve finds the platform's manifest of every reference first, so the
// copy that follows knows its total for progress and ETA.
func (w *imageWriter) resolve(ctx context.Context, refs []string) ([]resolved, error) {
	var out []resolved
	for _, s := range refs {
		ref, err := name.ParseReference(s)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s, err)
		}
		opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(w.keychain), remote.WithPlatform(w.platform)}
		from, err := mirrored(ref, w.mirrors)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s, err)
		}
		desc, err := remote.Get(from, opts...)
		if err != nil {
			if from != ref {
				return nil, fmt.Errorf("image %s (through mirror %s): %w", s, from, err)
			}
			return nil, fmt.Errorf("image %s: %w", s, err)
		}
		r := resolved{ref: ref}
		if desc.MediaType.IsIndex() {
			r.index = desc.Digest.String()
		}
		if r.img, err = desc.Image(); err != nil {
			return nil, fmt.Errorf("image %s: no linux/%s image: %w", s, w.platform.Architecture, err)
		}
		cf, err := r.img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("image %s: config: %w", s, err)
		}
		if cf.Architecture != w.platform.Architecture {
			return nil, fmt.Errorf("image %s is for %s/%s, the bundle is for linux/%s; pick a multi-arch tag or the %s build", s, cf.OS, cf.Architecture, w.platform.Architecture, w.platform.Architecture)
		}
		if r.size, err = imageSize(r.img); err != nil {
			return nil, fmt.Errorf("image %s: %w", s, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// mirrored is where ref is pulled from: the same repository under the
// mirror of its registry, if it has one.
func mirrored(ref name.Reference, mirrors map[string]string) (name.Reference, error) {
	host := ref.Context().RegistryStr()
	m, ok := mirrors[host]
	if !ok && host == name.DefaultRegistry {
		m, ok = mirrors["docker.io"]
	}
	if !ok {
		return ref, nil
	}
	sep := ":"
	if _, isDigest := ref.(name.Digest); isDigest {
		sep = "@"
	}
	return name.ParseReference(strings.TrimSuffix(m, "/") + "/" + ref.Context().RepositoryStr() + sep + ref.Identifier())
}

// ParseMirrors reads HOST=MIRROR pairs, as --mirror takes them.
func ParseMirrors(pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range pairs {
		host, m, ok := strings.Cut(p, "=")
		if !ok || host == "" || m == "" || strings.Contains(m, "://") {
			return nil, fmt.Errorf("mirror %q: want REGISTRY=MIRROR[/PATH], such as docker.io=harbor.example/dockerhub", p)
		}
		if _, err := name.NewRegistry(strings.SplitN(m, "/", 2)[0]); err != nil {
			return nil, fmt.Errorf("mirror %q: %v", p, err)
		}
		out[host] = m
	}
	return out, nil
}

func imageSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// write copies every image's blobs and adds it to index.json by reference.
func (w *imageWriter) write(ctx context.Context, images []resolved) ([]Image, error) {
	var total, done int64
	for _, r := range images {
		total += r.size
	}
	var out []Image
	for _, r := range images {
		ref := FullReference(r.ref)
		m, err := r.img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		layers, err := r.img.Layers()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		for _, l := range layers {
			h, err := l.Digest()
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", ref, err)
			}
			size, err := l.Size()
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", ref, err)
			}
			err = w.blob(h, size, func() (io.ReadCloser, error) { return l.Compressed() }, func(n int64) {
				w.progress.report("images", done+n, total)
			})
			if err != nil {
				return nil, fmt.Errorf("image %s: layer %s: %w", ref, h, err)
			}
			done += size
		}
		rawCfg, err := r.img.RawConfigFile()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		if err := w.bytesBlob(m.Config.Digest, rawCfg); err != nil {
			return nil, fmt.Errorf("image %s: config: %w", ref, err)
		}
		rawMan, err := r.img.RawManifest()
		if err != nil {
			return nil, err
		}
		dig, err := r.img.Digest()
		if err != nil {
			return nil, err
		}
		if err := w.bytesBlob(dig, rawMan); err != nil {
			return nil, fmt.Errorf("image %s: manifest: %w", ref, err)
		}
		done += m.Config.Size + int64(len(rawMan))
		w.progress.report("images", done, total)
		mt, err := r.img.MediaType()
		if err != nil {
			return nil, err
		}
		platform := w.platform
		err = w.path.AppendDescriptor(v1.Descriptor{
			MediaType:   mt,
			Size:        int64(len(rawMan)),
			Digest:      dig,
			Platform:    &platform,
			Annotations: map[string]string{annotationRefName: ref, annotationContainerdName: ref},
		})
		if err != nil {
			return nil, fmt.Errorf("image %s: index.json: %w", ref, err)
		}
		out = append(out, Image{Reference: ref, Digest: dig.String(), IndexDigest: r.index, Size: r.size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reference < out[j].Reference })
	return out, nil
}

func (w *imageWriter) bytesBlob(h v1.Hash, b []byte) error {
	return w.blob(h, int64(len(b)), func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(string(b))), nil
	}, nil)
}

// blob writes one blob unless the layout has it, checking its digest: a
// layout whose blob names lie is worse than none.
func (w *imageWriter) blob(h v1.Hash, size int64, open func() (io.ReadCloser, error), progress func(int64)) error {
	if _, ok := w.blobs[h]; ok {
		return nil
	}
	if h.Algorithm != "sha256" {
		return fmt.Errorf("unsupported digest algorithm %s", h.Algorithm)
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	dir := filepath.Join(w.dir, "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+h.Hex)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	var src io.Reader = rc
	if progress != nil {
		src = &countingReader{r: rc, fn: func(_ string, n, _ int64) { progress(n) }}
	}
	n, err := io.Copy(io.MultiWriter(tmp, sum), src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != h.Hex || n != size {
		return fmt.Errorf("registry sent %d bytes with sha256 %s, want %d bytes %s", n, got, size, h.Hex)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, h.Hex)); err != nil {
		return err
	}
	w.blobs[h] = size
	return nil
}

// stats sums the layout for the manifest.
func (w *imageWriter) stats(images []Image) Layout {
	l := Layout{Path: ImagesDir, Blobs: len(w.blobs)}
	for _, n := range w.blobs {
		l.Bytes += n
	}
	for _, im := range images {
		l.ImageBytes += im.Size
	}
	return l
}
