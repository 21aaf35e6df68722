package bundles

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

// The manifest and its signature are the first two entries of every bundle:
// nothing else is trusted, or even written, before they are checked.
const (
	ManifestName  = "perch-bundle.json"
	SignatureName = ManifestName + ".minisig"

	APIVersion   = "perch.dev/v1alpha1"
	ManifestKind = "Bundle"
)

// Where things live inside a bundle.
const (
	K3sBinaryPath = "k3s/k3s"
	ImagesDir     = "images"
	chartsDir     = "charts"
	filesDir      = "files"
)

// Limits bound what a bundle may make us read or write before its manifest
// vouches for the rest; past them a bundle is rejected as malicious.
const (
	maxManifestSize  = 16 << 20
	maxSignatureSize = 64 << 10
	maxEntries       = 200_000
	maxPathLen       = 1024
)

// Manifest is perch-bundle.json: what the bundle holds, each file with the
// size and sha256 it must have.
type Manifest struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Name       string  `json:"name"`
	Version    string  `json:"version"`
	Arch       string  `json:"arch"`
	K3s        K3sInfo `json:"k3s"`
	Images     []Image `json:"images"`
	Charts     []Chart `json:"charts"`
	Files      []File  `json:"files"`
	Layout     Layout  `json:"layout"`
	// BuiltBy is the perch version that built the bundle.
	BuiltBy string `json:"builtBy,omitempty"`
}

// K3sInfo names the k3s inputs inside the bundle.
type K3sInfo struct {
	Version      string `json:"version"`
	Binary       string `json:"binary"`
	AirgapImages string `json:"airgapImages,omitempty"`
	// Images are the references inside AirgapImages, where the build
	// could read them: install counts them as in the bundle.
	Images []string `json:"images,omitempty"`
}

// Image is one image in the OCI layout, by the reference it was pulled as.
type Image struct {
	Reference string `json:"reference"`
	// Digest is the platform manifest's; IndexDigest the multi-arch index it
	// was resolved from, when there was one.
	Digest      string `json:"digest"`
	IndexDigest string `json:"indexDigest,omitempty"`
	// Size counts every blob of the image, shared or not.
	Size int64 `json:"size"`
}

// Chart is a chart archive and the images rendering it referenced.
type Chart struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	Path    string   `json:"path"`
	Images  []string `json:"images,omitempty"`
}

// File is every byte the bundle holds, besides the manifest and signature.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Layout sums the OCI image layout: unique blobs against what the images
// would take stored separately.
type Layout struct {
	Path       string `json:"path"`
	Blobs      int    `json:"blobs"`
	Bytes      int64  `json:"bytes"`
	ImageBytes int64  `json:"imageBytes"`
}

// Saved is what storing shared layers once saves.
func (l Layout) Saved() int64 { return l.ImageBytes - l.Bytes }

// Size is the bundle's payload: every file the manifest lists.
func (m *Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// File returns the manifest entry for a path.
func (m *Manifest) File(p string) (File, bool) {
	i := sort.Search(len(m.Files), func(i int) bool { return m.Files[i].Path >= p })
	if i < len(m.Files) && m.Files[i].Path == p {
		return m.Files[i], true
	}
	return File{}, false
}

// Encode writes the manifest deterministically: the same bundle always
// signs the same bytes.
func (m *Manifest) Encode() ([]byte, error) {
	// empty lists, not nulls, for consumers in other languages
	if m.Images == nil {
		m.Images = []Image{}
	}
	if m.Charts == nil {
		m.Charts = []Chart{}
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseManifest decodes and checks a manifest. Its paths decide where bytes
// go, so every one is checked before any is used.
func ParseManifest(b []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a valid manifest: %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("not a valid manifest: data after the JSON object")
	}
	if m.APIVersion != APIVersion || m.Kind != ManifestKind {
		return nil, fmt.Errorf("apiVersion/kind is %q/%q, want %s/%s; this perch may be too old for the bundle", m.APIVersion, m.Kind, APIVersion, ManifestKind)
	}
	// name and version become install paths: a signature vouches for who
	// built the manifest, not that its builder kept the spec's rules
	if p := nameProblem(m.Name); p != "" {
		return nil, fmt.Errorf("name %s; refused", p)
	}
	if p := versionProblem(m.Version); p != "" {
		return nil, fmt.Errorf("version %s; refused", p)
	}
	if !validArch(m.Arch) {
		return nil, fmt.Errorf("arch %q is not amd64 or arm64", m.Arch)
	}
	if len(m.Files) > maxEntries {
		return nil, fmt.Errorf("lists %d files, more than the limit of %d", len(m.Files), maxEntries)
	}
	if !sort.SliceIsSorted(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path }) {
		return nil, fmt.Errorf("files are not sorted by path")
	}
	for i, f := range m.Files {
		if err := checkPath(f.Path); err != nil {
			return nil, fmt.Errorf("files[%d]: %q: %v", i, f.Path, err)
		}
		if i > 0 && m.Files[i-1].Path == f.Path {
			return nil, fmt.Errorf("files[%d]: %s is listed twice", i, f.Path)
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("files[%d]: %s has negative size", i, f.Path)
		}
		if d, err := hex.DecodeString(f.SHA256); err != nil || len(d) != 32 {
			return nil, fmt.Errorf("files[%d]: %s has no valid sha256", i, f.Path)
		}
	}
	if _, ok := m.File(m.K3s.Binary); !ok {
		return nil, fmt.Errorf("k3s.binary %q is not among the files", m.K3s.Binary)
	}
	if a := m.K3s.AirgapImages; a != "" {
		if _, ok := m.File(a); !ok {
			return nil, fmt.Errorf("k3s.airgapImages %q is not among the files", a)
		}
	}
	for i, c := range m.Charts {
		if _, ok := m.File(c.Path); !ok {
			return nil, fmt.Errorf("charts[%d]: %q is not among the files", i, c.Path)
		}
	}
	for i, im := range m.Images {
		blob, ok := strings.CutPrefix(im.Digest, "sha256:")
		if _, found := m.File(path.Join(m.Layout.Path, "blobs", "sha256", blob)); !ok || !found {
			return nil, fmt.Errorf("images[%d]: %s has no manifest blob %s among the files", i, im.Reference, im.Digest)
		}
	}
	return &m, nil
}

// checkPath accepts only clean relative paths: no "..", no absolute path, no
// backslash or NUL, nothing that could land outside the staging directory.
func checkPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("path longer than %d bytes", maxPathLen)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%s: absolute path", p)
	case strings.ContainsAny(p, "\\\x00"):
		return fmt.Errorf("%q: backslash or NUL in path", p)
	case p != path.Clean(p) || p == "." || p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("%s: not a clean relative path (\"..\" or \".\" elements)", p)
	case p == ManifestName || p == SignatureName:
		return fmt.Errorf("%s: reserved name", p)
	}
	return nil
}

func validArch(a string) bool { return a == "amd64" || a == "arm64" }

// ParseSize reads a size such as 3900MiB, 4G or 1000000 (bytes). K, M, G, T
// and KiB, MiB, … are powers of 1024; KB, MB, … powers of 1000.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size such as 3900MiB", s)
	}
	mult := map[string]float64{"": 1, "B": 1}
	for j, p := range []string{"K", "M", "G", "T"} {
		bin, dec := float64(int64(1)<<(10*(j+1))), 1e3
		for k := 0; k < j; k++ {
			dec *= 1e3
		}
		mult[p], mult[p+"iB"], mult[p+"i"], mult[p+"B"] = bin, bin, bin, dec
	}
	u := strings.ToUpper(unit)
	if strings.HasSuffix(u, "I") || strings.HasSuffix(u, "IB") {
		u = strings.Replace(u, "I", "i", 1)
	}
	m, ok := mult[u]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q; use B, KiB, MiB, GiB or KB, MB, GB", s, unit)
	}
	return int64(n * m), nil
}
