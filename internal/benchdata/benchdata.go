// Package benchdata generates the large, deterministic OCI layout that the
// bundle and registry benchmarks measure: images sharing big base layers,
// as CUDA-based images do.
package benchdata

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image is one generated image: its reference, manifest digest, and the
// size of all its blobs, shared or not.
type Image struct {
	Reference string
	Digest    v1.Hash
	Size      int64
}

// Generated is what Layout wrote.
type Generated struct {
	Images []Image
	// Blobs are the unique blobs with their sizes.
	Blobs map[v1.Hash]int64
}

// Layout writes an OCI layout at dir of 12 images on 3 shared base stacks
// of 3 layers, each image with one or two layers of its own, named under
// the given repository prefixes in turn (such as docker.io/perch-bench).
// Layers are tars of one random (incompressible) file each, streamed to
// disk and hashed as written, so memory stays small; the same seed gives
// the same bytes, and the unique blobs come to about size bytes.
func Layout(dir string, size int64, seed uint64, prefixes []string) (*Generated, error) {
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	g := &gen{dir: filepath.Join(dir, "blobs", "sha256"), seed: seed, buf: make([]byte, 1<<20),
		out: &Generated{Blobs: map[v1.Hash]int64{}}}
	if err := os.MkdirAll(g.dir, 0o755); err != nil {
		return nil, err
	}
	// sizes in units: base stacks 8+4+2 each, own layers 3 (+1 every other
	// image): 3×14 + 12×3 + 6×1 = 84 units in all
	unit := size / 84
	rng := rand.New(rand.NewPCG(seed, 2))
	jitter := func(n int64) int64 { return n - n/16 + rng.Int64N(n/8+1) }
	var bases [3][]v1.Descriptor
	for s := range bases {
		for _, w := range []int64{8, 4, 2} {
			d, err := g.layer(jitter(w * unit))
			if err != nil {
				return nil, err
			}
			bases[s] = append(bases[s], d)
		}
	}
	for i := range 12 {
		layers := append([]v1.Descriptor(nil), bases[i%3]...)
		own := []int64{3}
		if i%2 == 0 {
			own = append(own, 1)
		}
		for _, w := range own {
			d, err := g.layer(jitter(w * unit))
			if err != nil {
				return nil, err
			}
			layers = append(layers, d)
		}
		ref := fmt.Sprintf("%s/app-%02d:1.0", prefixes[i%len(prefixes)], i)
		if err := g.image(lp, ref, layers); err != nil {
			return nil, err
		}
	}
	return g.out, nil
}

type gen struct {
	dir  string
	seed uint64
	seq  uint64
	buf  []byte
	out  *Generated
}

// layer writes an uncompressed tar layer holding one file of n random
// bytes, so its diff ID is its digest.
func (g *gen) layer(n int64) (v1.Descriptor, error) {
	g.seq++
	tmp, err := os.CreateTemp(g.dir, ".tmp-layer-")
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	tw := tar.NewWriter(cw)
	err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("opt/bench/data-%03d.bin", g.seq), Size: n, Mode: 0o644,
		ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
	rng := rand.NewChaCha8([32]byte{byte(g.seq), byte(g.seq >> 8), byte(g.seed), 'p', 'e', 'r', 'c', 'h'})
	for left := n; err == nil && left > 0; {
		k := min(left, int64(len(g.buf)))
		rng.Read(g.buf[:k])
		_, err = tw.Write(g.buf[:k])
		left -= k
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return v1.Descriptor{}, err
	}
	d := v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: cw.n,
		Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}}
	if err := os.Rename(tmp.Name(), filepath.Join(g.dir, d.Digest.Hex)); err != nil {
		return v1.Descriptor{}, err
	}
	g.out.Blobs[d.Digest] = d.Size
	return d, nil
}

func (g *gen) bytes(mt types.MediaType, b []byte) (v1.Descriptor, error) {
	sum := sha256.Sum256(b)
	d := v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}
	g.out.Blobs[d.Digest] = d.Size
	return d, os.WriteFile(filepath.Join(g.dir, d.Digest.Hex), b, 0o644)
}

// image writes an image's config and manifest and names it in index.json.
func (g *gen) image(lp layout.Path, ref string, layers []v1.Descriptor) error {
	cf := v1.ConfigFile{Architecture: runtime.GOARCH, OS: "linux", Created: v1.Time{Time: time.Unix(0, 0).UTC()},
		Config: v1.Config{Entrypoint: []string{"/bin/sh"}}, RootFS: v1.RootFS{Type: "layers"}}
	size := int64(0)
	for _, l := range layers {
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, l.Digest)
		size += l.Size
	}
	rawCfg, err := json.Marshal(cf)
	if err != nil {
		return err
	}
	cfg, err := g.bytes(types.OCIConfigJSON, rawCfg)
	if err != nil {
		return err
	}
	rawMan, err := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cfg, Layers: layers})
	if err != nil {
		return err
	}
	md, err := g.bytes(types.OCIManifestSchema1, rawMan)
	if err != nil {
		return err
	}
	md.Platform = &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	md.Annotations = map[string]string{"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref}
	g.out.Images = append(g.out.Images, Image{Reference: ref, Digest: md.Digest, Size: size + cfg.Size + md.Size})
	return lp.AppendDescriptor(md)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
