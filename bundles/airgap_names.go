package bundles

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// maxImageIndex bounds the one entry of an image tarball that is decoded:
// docker save's manifest.json or an OCI layout's index.json, a few KiB for
// k3s's dozen images.
const maxImageIndex = 4 << 20

// airgapNames lists the images inside k3s's air-gap tarball (docker save
// or OCI layout, plain, gzip or zstd), by full reference, so that the gate
// knows which of k3s's own images the tarball already carries. ok is false
// for a compression it does not read (lz4, bzip2, xz): those tarballs are
// still bundled, only not looked into.
func airgapNames(file string) (names []string, ok bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	var r io.Reader = f
	switch ext := airgapExt(file); ext {
	case ".tar":
	case ".tar.gz":
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, false, fmt.Errorf("k3s.airgapImages: %w", err)
		}
		r = zr
	case ".tar.zst":
		zr, err := newZstdReader(f)
		if err != nil {
			return nil, false, fmt.Errorf("k3s.airgapImages: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, false, nil
	}
	tr := tar.NewReader(r)
	set := map[string]bool{}
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("k3s.airgapImages: not a readable image tarball: %w", err)
		}
		base := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if base != "manifest.json" && base != "index.json" {
			continue
		}
		if h.Size > maxImageIndex {
			return nil, false, fmt.Errorf("k3s.airgapImages: %s is %d bytes, more than %d: not an image tarball", base, h.Size, maxImageIndex)
		}
		raw, err := io.ReadAll(io.LimitReader(tr, maxImageIndex))
		if err != nil {
			return nil, false, fmt.Errorf("k3s.airgapImages: %w", err)
		}
		refs, err := tarballRefs(base, raw)
		if err != nil {
			return nil, false, fmt.Errorf("k3s.airgapImages: %s: %w", base, err)
		}
		found = true
		for _, r := range refs {
			if ref, err := name.ParseReference(r); err == nil {
				set[FullReference(ref)] = true
			}
		}
	}
	if !found {
		return nil, false, errors.New("k3s.airgapImages: no manifest.json or index.json inside: not an image tarball (docker save or OCI layout)")
	}
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, true, nil
}

func tarballRefs(entry string, raw []byte) ([]string, error) {
	var refs []string
	if entry == "manifest.json" {
		var m []struct{ RepoTags []string }
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		for _, x := range m {
			refs = append(refs, x.RepoTags...)
		}
		return refs, nil
	}
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, err
	}
	for _, m := range idx.Manifests {
		if n := m.Annotations[annotationContainerdName]; n != "" {
			refs = append(refs, n)
		} else if n := m.Annotations[annotationRefName]; strings.Contains(n, "/") {
			refs = append(refs, n)
		}
	}
	return refs, nil
}
