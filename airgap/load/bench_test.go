package load_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/perchedge/perch/internal/benchdata"
	"github.com/perchedge/perch/internal/testreg"

	v1 "github.com/google/go-containerregistry/pkg/v1"

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
	benchLoadVersion = "v2"
	benchLoadMiBEnv  = "PERCH_BENCH_LOAD_MIB"
	// the child load, for its peak RSS: a layout and a storage directory
	benchChildLayoutEnv  = "PERCH_BENCH_LOAD_LAYOUT"
	benchChildStorageEnv = "PERCH_BENCH_LOAD_STORAGE"
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
	if err := benchdata.PrintPeakRSS(); err != nil {
		t.Fatal(err)
	}
}

func childLoadRSS(layoutDir, storageDir string) (int64, error) {
	defer os.RemoveAll(storageDir)
	return benchdata.ChildPeakRSS("TestBenchLoadChild", benchChildLayoutEnv+"="+layoutDir, benchChildStorageEnv+"="+storageDir)
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

// generateBenchLayout writes the benchmark's layout under the names of five
// upstream registries.
func generateBenchLayout(dir string, size int64) error {
	_, err := benchdata.Layout(dir, size, 4, []string{"docker.io/perch-bench", "nvcr.io/nvidia/perch-bench", "registry.k8s.io/perch-bench", "quay.io/perch-bench", "ghcr.io/perch-bench"})
	return err
}
