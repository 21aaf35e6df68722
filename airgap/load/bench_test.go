package load_test

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/perchedge/perch/internal/testreg"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/perchedge/perch/airgap"
	"github.com/perchedge/perch/airgap/load"
)

// The registry-load benchmark of issue 4, on a generated layout of 12
// images and about 2 GiB of unique blobs whose images share large base
// layers: in one run, Go's sha256 over the unique blobs, a cold ToStorage,
// the same load again (a no-op), skopeo copying each image into Debian's
// docker-registry, and the peak RSS of a cold load in a child process.
// Goals: perch ≤ 1.25× sha256, ≥ 3× faster than skopeo, no-op ≤ 50 ms,
// RSS ≤ 64 MiB.
//
// The layout is generated once and kept under os.TempDir(), keyed by
// benchLoadVersion and its size; bump the version when the generator
// changes. PERCH_BENCH_LOAD_MIB sets the size (default 2048).

const (
	benchLoadVersion = "v1"
	benchLoadMiBEnv  = "PERCH_BENCH_LOAD_MIB"
	// the child load, for its peak RSS: a layout and a storage directory
	benchChildLayoutEnv  = "PERCH_BENCH_LOAD_LAYOUT"
	benchChildStorageEnv = "PERCH_BENCH_LOAD_STORAGE"
	benchChildHWM        = "perch-bench-load-vmhwm-kib="
	benchRounds          = 2
)

type benchLayout struct {
	dir   string
	refs  []string // full references, as index.json names them
	blobs []string // every unique blob file
	bytes int64
}

func BenchmarkRegistryLoad(b *testing.B) {
	bl := benchLayoutFor(b)
	ctx := context.Background()
	work := b.TempDir()
	buf := make([]byte, 1<<20)

	shaOnce := func() time.Duration {
		t0 := time.Now()
		for _, p := range bl.blobs {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			_, err = io.CopyBuffer(h, f, buf)
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
			h.Sum(nil)
		}
		return time.Since(t0)
	}
	round := 0
	store := ""
	perchOnce := func() time.Duration {
		if store != "" {
			os.RemoveAll(store)
		}
		round++
		store = filepath.Join(work, fmt.Sprintf("storage-%d", round))
		t0 := time.Now()
		res, err := load.ToStorage(ctx, bl.dir, store, load.Options{})
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if res.Written != bl.bytes-manifestBytes(b, bl) || res.Skipped != 0 {
			b.Fatalf("cold load: %+v, want every layer and config written (%d bytes of blobs in the layout)", res, bl.bytes)
		}
		return d
	}
	shaOnce() // warm-up: the page cache

	var perch, sha time.Duration
	best := func(d *time.Duration, x time.Duration) {
		if *d == 0 || x < *d {
			*d = x
		}
	}
	for b.Loop() {
		best(&perch, perchOnce())
	}
	for range benchRounds {
		best(&sha, shaOnce())
		best(&perch, perchOnce())
	}

	// the same load again: what is there is only stat'ed
	var noop time.Duration
	for range 3 {
		t0 := time.Now()
		res, err := load.ToStorage(ctx, bl.dir, store, load.Options{})
		best(&noop, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if res.Written != 0 {
			b.Fatalf("second load wrote %d bytes", res.Written)
		}
	}
	os.RemoveAll(store)

	skopeo := benchSkopeo(b, bl)

	rss, err := childLoadRSS(bl.dir, filepath.Join(work, "storage-child"))
	if err != nil {
		b.Fatal(err)
	}
	base, err := childLoadRSS("-", "")
	if err != nil {
		b.Fatal(err)
	}

	mb := func(d time.Duration) float64 { return float64(bl.bytes) / 1e6 / d.Seconds() }
	b.SetBytes(bl.bytes)
	b.ReportMetric(mb(perch), "perch-MB/s")
	b.ReportMetric(mb(sha), "sha256-MB/s")
	b.ReportMetric(perch.Seconds()/sha.Seconds(), "perch/sha256")
	b.ReportMetric(skopeo.Seconds()/perch.Seconds(), "skopeo/perch")
	b.ReportMetric(float64(noop.Microseconds())/1000, "noop-ms")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(base)/(1<<20), "rss-baseline-MiB")
	fmt.Printf("registry-load: perch=%.2fs noop=%dms skopeo=%.2fs sha256=%.2fs rss=%dMiB\n",
		perch.Seconds(), noop.Milliseconds(), skopeo.Seconds(), sha.Seconds(), rss>>20)
}

func manifestBytes(b *testing.B, bl *benchLayout) int64 {
	// the layout's manifests are blobs too; ToStorage counts only layers
	// and configs as blobs
	var n int64
	raw, err := os.ReadFile(filepath.Join(bl.dir, "index.json"))
	if err != nil {
		b.Fatal(err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		b.Fatal(err)
	}
	seen := map[v1.Hash]bool{}
	for _, d := range idx.Manifests {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			n += d.Size
		}
	}
	return n
}

// benchSkopeo copies every image with skopeo into a fresh docker-registry,
// one after the other, as a script would.
func benchSkopeo(b *testing.B, bl *benchLayout) time.Duration {
	if _, err := exec.LookPath("skopeo"); err != nil {
		b.Fatal("skopeo is not installed: run scripts/test-deps (as root), which installs Debian's skopeo and docker-registry")
	}
	reg := testreg.Start(b)
	t0 := time.Now()
	for _, ref := range bl.refs {
		dst := "docker://" + reg.Addr + "/" + airgap.Repository(mustRef(b, ref)) + ":" + mustRef(b, ref).Identifier()
		cmd := exec.Command("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:"+bl.dir+":"+ref, dst)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("skopeo copy %s: %v\n%s", ref, err, out)
		}
	}
	d := time.Since(t0)
	os.RemoveAll(reg.Storage)
	return d
}

// TestBenchLoadChild is the load the benchmark runs in a child process to
// read its peak RSS. Without the environment variable it does nothing.
func TestBenchLoadChild(t *testing.T) {
	src := os.Getenv(benchChildLayoutEnv)
	if src == "" {
		return
	}
	if src != "-" { // "-": the test binary's own baseline
		if _, err := load.ToStorage(context.Background(), src, os.Getenv(benchChildStorageEnv), load.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	// VmHWM, not the rusage the parent gets: Go starts children with
	// vfork, and Linux carries the parent's high-water mark over exec
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			fmt.Printf("%s%s\n", benchChildHWM, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
}

func childLoadRSS(layoutDir, storageDir string) (int64, error) {
	defer os.RemoveAll(storageDir)
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchLoadChild$", "-test.count=1", "-test.bench=^$")
	cmd.Env = append(os.Environ(), benchChildLayoutEnv+"="+layoutDir, benchChildStorageEnv+"="+storageDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("child load: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, benchChildHWM); ok {
			kib, err := strconv.ParseInt(v, 10, 64)
			return kib << 10, err
		}
	}
	return 0, fmt.Errorf("child load printed no VmHWM:\n%s", out)
}

// benchLayoutFor returns the cached layout, generating it the first time.
func benchLayoutFor(b *testing.B) *benchLayout {
	mib := int64(2048)
	if s := os.Getenv(benchLoadMiBEnv); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 16 {
			b.Fatalf("%s=%q: want a number of MiB, at least 16", benchLoadMiBEnv, s)
		}
		mib = n
	}
	root := filepath.Join(os.TempDir(), fmt.Sprintf("perch-bench-load-%s-%dMiB", benchLoadVersion, mib))
	dir := filepath.Join(root, "layout")
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		// generate beside it and rename: a cut-off run leaves no half layout
		os.RemoveAll(root)
		tmp, err := os.MkdirTemp(os.TempDir(), filepath.Base(root)+".tmp-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		t0 := time.Now()
		if err := generateBenchLayout(filepath.Join(tmp, "layout"), mib<<20); err != nil {
			b.Fatalf("generate bench layout: %v", err)
		}
		if err := os.Rename(tmp, root); err != nil {
			b.Fatal(err)
		}
		b.Logf("generated %s (%d MiB) in %v", root, mib, time.Since(t0).Round(time.Millisecond))
	}
	bl := &benchLayout{dir: dir}
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		b.Fatal(err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		b.Fatal(err)
	}
	for _, d := range idx.Manifests {
		bl.refs = append(bl.refs, d.Annotations["org.opencontainers.image.ref.name"])
	}
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			b.Fatal(err)
		}
		bl.blobs = append(bl.blobs, filepath.Join(dir, "blobs", "sha256", e.Name()))
		bl.bytes += fi.Size()
	}
	return bl
}

// generateBenchLayout writes an OCI layout of 12 images on 3 shared base
// stacks of 3 layers (like CUDA bases), each image with one or two layers of
// its own, under the names of five upstream registries. Layers are tars of
// one random (incompressible) file each, streamed to disk and hashed as
// written, seeded so every run generates the same bytes; together the
// unique blobs come to about size bytes.
func generateBenchLayout(dir string, size int64) error {
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	g := &layerGen{dir: blobs, buf: make([]byte, 1<<20)}
	// sizes in units: base stacks 8+4+2 each, own layers 3 (+1 every other
	// image): 3×14 + 12×3 + 6×1 = 84 units in all
	const units = 84
	unit := size / units
	rng := rand.New(rand.NewPCG(4, 2))
	jitter := func(n int64) int64 { return n - n/16 + rng.Int64N(n/8+1) }
	var bases [3][]v1.Descriptor
	for s := range bases {
		for _, w := range []int64{8, 4, 2} {
			d, err := g.layer(jitter(w * unit))
			if err != nil {
				return err
			}
			bases[s] = append(bases[s], d)
		}
	}
	hosts := []string{"docker.io/perch-bench", "nvcr.io/nvidia/perch-bench", "registry.k8s.io/perch-bench", "quay.io/perch-bench", "ghcr.io/perch-bench"}
	for i := range 12 {
		layers := append([]v1.Descriptor(nil), bases[i%3]...)
		own := []int64{3}
		if i%2 == 0 {
			own = append(own, 1)
		}
		for _, w := range own {
			d, err := g.layer(jitter(w * unit))
			if err != nil {
				return err
			}
			layers = append(layers, d)
		}
		cf := v1.ConfigFile{Architecture: runtime.GOARCH, OS: "linux", Created: v1.Time{Time: time.Unix(0, 0).UTC()},
			Config: v1.Config{Entrypoint: []string{"/bin/sh"}}, RootFS: v1.RootFS{Type: "layers"}}
		for _, l := range layers {
			cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, l.Digest)
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
		ref := fmt.Sprintf("%s/app-%02d:1.0", hosts[i%len(hosts)], i)
		md.Annotations = map[string]string{"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref}
		if err := lp.AppendDescriptor(md); err != nil {
			return err
		}
	}
	return nil
}

type layerGen struct {
	dir string
	seq uint64
	buf []byte
}

// layer writes an uncompressed tar layer holding one file of n random
// bytes, without holding it in memory.
func (g *layerGen) layer(n int64) (v1.Descriptor, error) {
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
	rng := rand.NewChaCha8([32]byte{byte(g.seq), byte(g.seq >> 8), 'l', 'o', 'a', 'd'})
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
	return d, os.Rename(tmp.Name(), filepath.Join(g.dir, d.Digest.Hex))
}

func (g *layerGen) bytes(mt types.MediaType, b []byte) (v1.Descriptor, error) {
	sum := sha256.Sum256(b)
	d := v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}
	return d, os.WriteFile(filepath.Join(g.dir, d.Digest.Hex), b, 0o644)
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
