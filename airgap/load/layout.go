package load

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/perchedge/perch/airgap"
)

// Annotations that name an image in index.json: containerd's always holds
// the full reference; the OCI one does in Perch bundles, while other tools
// often put only the tag there.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = ocispec.AnnotationRefName
)

// maxManifestSize is what distribution accepts for a manifest (4 MiB).
const maxManifestSize = 4 << 20

// layout is an OCI image layout read for loading: every image it names,
// and every blob they use, each once.
type layout struct {
	dir    string
	images []*image
	blobs  []*blob // unique layers and configs, in the order first used
	byHex  map[string]*blob
	// manifests by digest: one manifest named twice is read once
	manifests map[digest.Digest]*manifest
}

// image is one reference of index.json.
type image struct {
	ref  string // the full reference, as the layout names it
	repo string // where it lives in the registry
	tag  string // "" for a reference by digest
	top  *manifest
	// manifests are the top one's children (of an index) and then itself:
	// the order they are put in, so nothing refers to what is not there
	manifests []*manifest
}

type manifest struct {
	digest    digest.Digest
	mediaType string
	raw       []byte
	blobs     []*blob     // config and layers, for an image manifest
	children  []*manifest // for an index, the manifests the layout holds
}

type blob struct {
	digest    digest.Digest
	size      int64
	mediaType string
	path      string
	// repos are the repositories that use it, first user first: it is
	// written into the first and linked into the others
	repos []string
	// the images that use it, for errors
	users []string
}

// readLayout reads index.json and every manifest, and stats every blob;
// no layer is read.
func readLayout(dir string) (*layout, error) {
	l := &layout{dir: dir, byHex: map[string]*blob{}, manifests: map[digest.Digest]*manifest{}}
	raw, err := os.ReadFile(filepath.Join(dir, ocispec.ImageLayoutFile))
	if err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout: %w", dir, err)
	}
	var ol ocispec.ImageLayout
	if err := json.Unmarshal(raw, &ol); err != nil || ol.Version == "" {
		return nil, fmt.Errorf("%s: %s is not an OCI layout file", dir, ocispec.ImageLayoutFile)
	}
	raw, err = os.ReadFile(filepath.Join(dir, ocispec.ImageIndexFile))
	if err != nil {
		return nil, fmt.Errorf("image layout %s: %w", dir, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("image layout %s: %s: %w", dir, ocispec.ImageIndexFile, err)
	}
	for i, d := range idx.Manifests {
		im, err := l.image(d)
		if err != nil {
			return nil, fmt.Errorf("image layout %s: %s entry %d (%s): %w", dir, ocispec.ImageIndexFile, i, d.Digest, err)
		}
		l.images = append(l.images, im)
	}
	for _, im := range l.images {
		for _, m := range im.manifests {
			for _, b := range m.blobs {
				if !contains(b.repos, im.repo) {
					b.repos = append(b.repos, im.repo)
				}
				if !contains(b.users, im.ref) {
					b.users = append(b.users, im.ref)
				}
			}
		}
	}
	return l, nil
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// image reads one entry of index.json and everything under it.
func (l *layout) image(d ocispec.Descriptor) (*image, error) {
	s := d.Annotations[annotationContainerdName]
	if s == "" {
		s = d.Annotations[annotationRefName]
	}
	if s == "" {
		return nil, fmt.Errorf("no %s annotation: an image needs its full reference to be found under it", annotationRefName)
	}
	// strict: a bare tag such as "1.27" (how some tools fill ref.name) is
	// not a reference, and a name without a tag is not what was meant
	ref, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("%q is not a full image reference (such as docker.io/library/nginx:1.27): %w", s, err)
	}
	im := &image{ref: s, repo: airgap.Repository(ref)}
	switch r := ref.(type) {
	case name.Tag:
		im.tag = r.TagStr()
	case name.Digest:
		if r.DigestStr() != d.Digest.String() {
			return nil, fmt.Errorf("reference %s names another digest than the entry's", s)
		}
	}
	if im.top, err = l.manifest(d); err != nil {
		return nil, err
	}
	var walk func(m *manifest)
	walk = func(m *manifest) {
		for _, c := range m.children {
			walk(c)
		}
		if !containsManifest(im.manifests, m) {
			im.manifests = append(im.manifests, m)
		}
	}
	walk(im.top)
	return im, nil
}

func containsManifest(s []*manifest, m *manifest) bool {
	for _, x := range s {
		if x == m {
			return true
		}
	}
	return false
}

// manifest reads a manifest blob, checking it is what its descriptor says:
// its bytes are put as they are, so their digest is the one pulled.
func (l *layout) manifest(d ocispec.Descriptor) (*manifest, error) {
	if m := l.manifests[d.Digest]; m != nil {
		return m, nil
	}
	p, err := l.blobPath(d.Digest)
	if err != nil {
		return nil, err
	}
	if d.Size > maxManifestSize {
		return nil, fmt.Errorf("manifest %s is %d bytes; registries take at most %d", d.Digest, d.Size, maxManifestSize)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	if got := digest.FromBytes(raw); got != d.Digest || int64(len(raw)) != d.Size {
		return nil, fmt.Errorf("manifest %s: %s holds %d bytes with digest %s, want %d bytes: the layout is damaged", d.Digest, p, len(raw), got, d.Size)
	}
	var body struct {
		MediaType string               `json:"mediaType"`
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	m := &manifest{digest: d.Digest, mediaType: d.MediaType, raw: raw}
	if m.mediaType == "" {
		m.mediaType = body.MediaType
	}
	l.manifests[d.Digest] = m
	mt := types.MediaType(m.mediaType)
	switch {
	case mt.IsIndex():
		for _, c := range body.Manifests {
			// an index may list platforms the layout left out; what it
			// holds is loaded, the rest stays a dangling entry, as in
			// any registry that mirrored one platform
			cp, err := l.blobPath(c.Digest)
			if err != nil {
				return nil, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			if _, err := os.Stat(cp); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			cm, err := l.manifest(c)
			if err != nil {
				return nil, err
			}
			m.children = append(m.children, cm)
		}
		if len(m.children) == 0 {
			return nil, fmt.Errorf("index %s: the layout holds none of its %d manifests", d.Digest, len(body.Manifests))
		}
	case mt.IsImage() || body.Config != nil:
		if body.Config == nil {
			return nil, fmt.Errorf("manifest %s has no config", d.Digest)
		}
		for _, bd := range append([]ocispec.Descriptor{*body.Config}, body.Layers...) {
			b, err := l.blob(bd)
			if err != nil {
				return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			if b != nil && !containsBlob(m.blobs, b) {
				m.blobs = append(m.blobs, b)
			}
		}
	default:
		return nil, fmt.Errorf("manifest %s has media type %q, neither an image nor an index", d.Digest, m.mediaType)
	}
	return m, nil
}

func containsBlob(s []*blob, b *blob) bool {
	for _, x := range s {
		if x == b {
			return true
		}
	}
	return false
}

// blob notes a layer or config the layout must hold. A foreign layer (with
// URLs, pulled from elsewhere) may be absent: nil.
func (l *layout) blob(d ocispec.Descriptor) (*blob, error) {
	if b := l.byHex[d.Digest.String()]; b != nil {
		if b.size != d.Size {
			return nil, fmt.Errorf("blob %s is listed with sizes %d and %d", d.Digest, b.size, d.Size)
		}
		return b, nil
	}
	p, err := l.blobPath(d.Digest)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) && len(d.URLs) > 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("blob %s: %s is not a regular file", d.Digest, p)
	}
	if fi.Size() != d.Size {
		return nil, fmt.Errorf("blob %s: %s is %d bytes, the manifest says %d: the layout is damaged", d.Digest, p, fi.Size(), d.Size)
	}
	b := &blob{digest: d.Digest, size: d.Size, mediaType: d.MediaType, path: p}
	l.byHex[d.Digest.String()] = b
	l.blobs = append(l.blobs, b)
	return b, nil
}

func (l *layout) blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("digest %s: only sha256 is supported", d)
	}
	return filepath.Join(l.dir, "blobs", "sha256", d.Encoded()), nil
}

// size is the bytes of every unique blob.
func (l *layout) size() int64 {
	var n int64
	for _, b := range l.blobs {
		n += b.size
	}
	return n
}

func (b *blob) String() string {
	who := strings.Join(b.users, ", ")
	if len(b.users) > 3 {
		who = strings.Join(b.users[:3], ", ") + fmt.Sprintf(" and %d more", len(b.users)-3)
	}
	return fmt.Sprintf("blob %s (%s, used by %s)", b.digest, b.path, who)
}
