package load_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perchedge/perch/internal/testreg"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"

	"github.com/perchedge/perch/airgap"
	"github.com/perchedge/perch/airgap/load"
)

func TestMain(m *testing.M) {
	// distribution logs every request through logrus at info level
	logrus.SetLevel(logrus.ErrorLevel)
	os.Exit(m.Run())
}

// testImage is one reference of a generated layout and what a registry must
// serve for it.
type testImage struct {
	ref    string // the full reference in index.json
	digest v1.Hash
	index  bool
	// own is a layer no other image uses, to damage
	own v1.Hash
}

type testLayout struct {
	dir    string
	images []testImage
	files  int // blob files in the layout: what a registry stores
	// blobs are the layers and configs (Result.Blobs); mounts the links
	// into repositories past the first that use each
	blobs, mounts int
}

// writeTestLayout writes an OCI layout as a bundle has it: a Docker-typed
// image, OCI-typed ones, one named only by digest, the Docker one also by
// digest, and a two-platform index, sharing two base layers across four
// repositories on four registries (one with a port).
func writeTestLayout(t testing.TB, dir string) *testLayout {
	t.Helper()
	layer := func(size int64) v1.Layer {
		l, err := random.Layer(size, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	digestOf := func(x interface{ Digest() (v1.Hash, error) }) v1.Hash {
		h, err := x.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	build := func(oci bool, layers ...v1.Layer) v1.Image {
		base := empty.Image
		mt := types.DockerLayer
		if oci {
			base = mutate.ConfigMediaType(mutate.MediaType(base, types.OCIManifestSchema1), types.OCIConfigJSON)
			mt = types.OCILayer
		}
		var adds []mutate.Addendum
		for _, l := range layers {
			adds = append(adds, mutate.Addendum{Layer: l, MediaType: mt})
		}
		img, err := mutate.Append(base, adds...)
		if err != nil {
			t.Fatal(err)
		}
		// a config of its own, as real images have
		img, err = mutate.Config(img, v1.Config{Labels: map[string]string{"perch.test": fmt.Sprint(digestOf(layers[len(layers)-1]))}})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}

	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLayout{dir: dir}
	add := func(ref string, own v1.Layer, img v1.Image, idx v1.ImageIndex) {
		ti := testImage{ref: ref, own: digestOf(own)}
		ann := layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})
		if img != nil {
			ti.digest = digestOf(img)
			err = lp.AppendImage(img, ann)
		} else {
			ti.digest, ti.index = digestOf(idx), true
			err = lp.AppendIndex(idx, ann)
		}
		if err != nil {
			t.Fatal(err)
		}
		tl.images = append(tl.images, ti)
	}

	base1, base2 := layer(300<<10), layer(200<<10)
	own := []v1.Layer{layer(64 << 10), layer(96 << 10), layer(80 << 10), layer(40 << 10), layer(48 << 10)}
	nginx := build(false, base1, base2, own[0])
	add("docker.io/library/nginx:1.27", own[0], nginx, nil)
	add("docker.io/library/nginx@"+digestOf(nginx).String(), own[0], nginx, nil)
	add("127.0.0.1:5000/perch-test/app:1.0", own[1], build(true, base1, base2, own[1]), nil)
	tool := build(true, base1, own[2])
	add("ghcr.io/perch-test/tool@"+digestOf(tool).String(), own[2], tool, nil)
	amd, arm := build(true, base2, own[3]), build(true, base2, own[4])
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	add("registry.k8s.io/pause:3.10", own[3], nil, idx)

	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	tl.files = len(entries)
	// 2 base + 5 own layers, 5 configs; 5 image manifests and an index
	tl.blobs = 12
	// base1: nginx, app, tool; base2: nginx, app, pause
	tl.mounts = 4
	if tl.files != tl.blobs+6 {
		t.Fatalf("the layout holds %d blobs, the test means it to hold %d", tl.files, tl.blobs+6)
	}
	return tl
}

// serveStorage serves a storage directory with distribution's own registry
// application, in-process: what `perch registry serve` runs.
func serveStorage(t testing.TB, dir string) string {
	t.Helper()
	cfg, err := configuration.Parse(strings.NewReader(fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  maintenance:
    uploadpurging:
      enabled: false
http:
  secret: perch-test
`, dir)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(handlers.NewApp(ctx, cfg))
	t.Cleanup(func() {
		srv.Close()
		cancel()
	})
	return strings.TrimPrefix(srv.URL, "http://")
}

// pullAll pulls every image of the layout from host (a registry that holds
// them under airgap.Repository) by its tag or digest and again by digest,
// and reads every layer and config, which go-containerregistry checks
// against their digests.
func pullAll(t *testing.T, host, prefix string, tl *testLayout) {
	t.Helper()
	for _, ti := range tl.images {
		ref, err := name.ParseReference(ti.ref)
		if err != nil {
			t.Fatal(err)
		}
		repo := host + "/" + prefix + airgap.Repository(ref)
		for _, s := range []string{repo + sep(ref) + ref.Identifier(), repo + "@" + ti.digest.String()} {
			pull(t, s, ti)
		}
	}
}

func sep(ref name.Reference) string {
	if _, ok := ref.(name.Digest); ok {
		return "@"
	}
	return ":"
}

func pull(t *testing.T, s string, ti testImage) {
	t.Helper()
	desc, err := remote.Get(mustRef(t, s))
	if err != nil {
		t.Errorf("pull %s (%s): %v", s, ti.ref, err)
		return
	}
	if desc.Digest != ti.digest {
		t.Errorf("%s is %s, the layout has %s", s, desc.Digest, ti.digest)
	}
	var imgs []v1.Image
	if ti.index {
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range im.Manifests {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatalf("%s: %s: %v", s, d.Digest, err)
			}
			imgs = append(imgs, img)
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	for _, img := range imgs {
		if _, err := img.RawConfigFile(); err != nil {
			t.Errorf("%s: config: %v", s, err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			if err != nil {
				d, _ := l.Digest()
				t.Errorf("%s: layer %s: %v", s, d, err)
			}
		}
	}
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// storedBlobs counts the blobs in a distribution storage directory.
func storedBlobs(t testing.TB, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "docker/registry/v2/blobs/sha256/*/*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func TestToStorage(t *testing.T) {
	ctx := t.Context()
	tl := writeTestLayout(t, t.TempDir())
	store := t.TempDir()
	// the registry serves the directory while the load writes into it
	host := serveStorage(t, store)

	var calls int
	var last, total int64
	t0 := time.Now()
	res, err := load.ToStorage(ctx, tl.dir, store, load.Options{Progress: func(what string, done, tot int64) {
		calls++
		if done < last || what != "images" {
			t.Errorf("progress went %d -> %d (%q)", last, done, what)
		}
		last, total = done, tot
	}})
	cold := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold load: %v, %+v", cold.Round(time.Microsecond), res)
	if res.Images != len(tl.images) || res.Blobs != tl.blobs || res.Skipped != 0 || res.Written != res.Bytes || res.Bytes == 0 {
		t.Errorf("result %+v, want %d images, %d blobs, none skipped, all bytes written", res, len(tl.images), tl.blobs)
	}
	if calls == 0 || last != total || total != res.Bytes {
		t.Errorf("progress: %d calls, ending at %d of %d; want it to end at %d", calls, last, total, res.Bytes)
	}
	if n := storedBlobs(t, store); n != tl.files {
		t.Errorf("the storage holds %d blobs, the layout %d: every blob once", n, tl.files)
	}
	pullAll(t, host, "", tl)
	checkNoUploads(t, store)

	t0 = time.Now()
	res, err = load.ToStorage(ctx, tl.dir, store, load.Options{Progress: func(string, int64, int64) { t.Error("progress from a load with nothing to copy") }})
	again := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second load: %v, %+v", again.Round(time.Microsecond), res)
	if res.Written != 0 || res.Skipped != tl.blobs || res.Images != len(tl.images) {
		t.Errorf("second load: %+v, want nothing written and all %d blobs skipped", res, tl.blobs)
	}
	if again > time.Second {
		t.Errorf("the second load took %v; it only stats what is there", again)
	}
	if n := storedBlobs(t, store); n != tl.files {
		t.Errorf("after the second load the storage holds %d blobs, want %d", n, tl.files)
	}
	pullAll(t, host, "", tl)
}

// checkNoUploads: no upload is left half done in the storage.
func checkNoUploads(t *testing.T, store string) {
	t.Helper()
	filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "_uploads" {
			if e, _ := os.ReadDir(p); len(e) > 0 {
				t.Errorf("%s holds %d uploads left behind", p, len(e))
			}
		}
		return nil
	})
}

func TestToStorageDamagedBlob(t *testing.T) {
	ctx := t.Context()
	tl := writeTestLayout(t, t.TempDir())
	// the app image's own layer: same name and size, one byte changed
	victim := tl.images[2]
	p := filepath.Join(tl.dir, "blobs", "sha256", victim.own.Hex)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	good := bytes.Clone(b)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}

	store := t.TempDir()
	host := serveStorage(t, store)
	// one at a time, largest first: the two base layers, then the damaged
	_, err = load.ToStorage(ctx, tl.dir, store, load.Options{Jobs: 1})
	if err == nil {
		t.Fatal("a layout with a damaged blob loaded")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{victim.own.String(), victim.ref, "does not match its digest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	repo := airgap.Repository(mustRef(t, victim.ref))
	if _, err := os.Stat(filepath.Join(store, "docker/registry/v2/repositories", repo, "_manifests")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the damaged image's repository has manifests (%v)", err)
	}
	if _, err := remote.Get(mustRef(t, host+"/"+repo+":1.0")); err == nil {
		t.Errorf("%s/%s:1.0 can be pulled after a failed load", host, repo)
	}
	if _, err := os.Stat(filepath.Join(store, "docker/registry/v2/blobs/sha256", victim.own.Hex[:2], victim.own.Hex)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the damaged blob is in the storage (%v)", err)
	}
	checkNoUploads(t, store)

	// repaired, the same load finishes, copying only what it had not
	if err := os.WriteFile(p, good, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := load.ToStorage(ctx, tl.dir, store, load.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != 2 || res.Written >= res.Bytes {
		t.Errorf("after the failure: %+v, want the 2 base layers written before it skipped", res)
	}
	pullAll(t, host, "", tl)
}

func TestToStorageRefusesBadLayouts(t *testing.T) {
	tl := writeTestLayout(t, t.TempDir())
	index, err := os.ReadFile(filepath.Join(tl.dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	nginx := tl.images[0]
	for _, tc := range []struct {
		name  string
		index func(string) string
		blobs func(dir string)
		want  string
	}{
		{name: "tag only in ref.name", index: func(s string) string {
			return strings.Replace(s, `"docker.io/library/nginx:1.27"`, `"1.27"`, 1)
		}, want: "not a full image reference"},
		{name: "no name", index: func(s string) string {
			return strings.Replace(s, `"org.opencontainers.image.ref.name": "docker.io/library/nginx:1.27"`, `"x": "y"`, 1)
		}, want: "no org.opencontainers.image.ref.name"},
		{name: "digest reference of another manifest", index: func(s string) string {
			return strings.Replace(s, "nginx@"+nginx.digest.String(), "nginx@sha256:"+strings.Repeat("ab", 32), 1)
		}, want: "names another digest"},
		{name: "manifest missing", blobs: func(dir string) {
			os.Remove(filepath.Join(dir, "blobs/sha256", nginx.digest.Hex))
		}, want: nginx.digest.String()},
		{name: "layer missing", blobs: func(dir string) {
			os.Remove(filepath.Join(dir, "blobs/sha256", nginx.own.Hex))
		}, want: nginx.own.String()},
		{name: "layer truncated", blobs: func(dir string) {
			os.Truncate(filepath.Join(dir, "blobs/sha256", nginx.own.Hex), 10)
		}, want: "is 10 bytes"},
		{name: "manifest changed", blobs: func(dir string) {
			p := filepath.Join(dir, "blobs/sha256", nginx.digest.Hex)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte(`"schemaVersion":2`), []byte(`"schemaVersion":3`), 1), 0o644)
		}, want: "the layout is damaged"},
		{name: "not a layout", blobs: func(dir string) {
			os.Remove(filepath.Join(dir, "oci-layout"))
		}, want: "not an OCI image layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyLayout(t, tl.dir)
			if tc.index != nil {
				s := tc.index(string(index))
				if s == string(index) {
					t.Fatal("the test changed nothing in index.json")
				}
				if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.blobs != nil {
				tc.blobs(dir)
			}
			store := t.TempDir()
			_, err := load.ToStorage(t.Context(), dir, store, load.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if n := storedBlobs(t, store); n != 0 {
				t.Errorf("a refused layout left %d blobs in the storage", n)
			}
		})
	}
}

func copyLayout(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// countingTransport counts the blob uploads a registry completed and the
// blobs it mounted from another repository.
type countingTransport struct {
	base            http.RoundTripper
	mu              sync.Mutex
	uploads, mounts int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusCreated || !strings.Contains(req.URL.Path, "/blobs/uploads/") {
		return resp, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case req.Method == http.MethodPut:
		c.uploads++
	case req.Method == http.MethodPost && req.URL.Query().Get("mount") != "":
		c.mounts++
	}
	return resp, err
}

func TestToRemote(t *testing.T) {
	ctx := t.Context()
	tl := writeTestLayout(t, t.TempDir())
	reg := testreg.Start(t)

	ct := &countingTransport{base: http.DefaultTransport}
	res, err := load.ToRemote(ctx, tl.dir, "http://"+reg.Addr+"/mirror", load.RemoteOptions{Transport: ct})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push: %+v; %d uploads, %d mounts", res, ct.uploads, ct.mounts)
	if ct.uploads != tl.blobs || ct.mounts != tl.mounts {
		t.Errorf("%d blob uploads and %d mounts, want each of the %d blobs uploaded once and %d mounts", ct.uploads, ct.mounts, tl.blobs, tl.mounts)
	}
	if res.Written != res.Bytes || res.Skipped != 0 || res.Blobs != tl.blobs {
		t.Errorf("result %+v, want all %d blobs written", res, tl.blobs)
	}
	if n := storedBlobs(t, reg.Storage); n != tl.files {
		t.Errorf("docker-registry stores %d blobs, the layout has %d", n, tl.files)
	}
	pullAll(t, reg.Addr, "mirror/", tl)

	ct.uploads, ct.mounts = 0, 0
	res, err = load.ToRemote(ctx, tl.dir, "http://"+reg.Addr+"/mirror", load.RemoteOptions{Transport: ct})
	if err != nil {
		t.Fatal(err)
	}
	if ct.uploads != 0 || ct.mounts != 0 || res.Written != 0 || res.Skipped != tl.blobs {
		t.Errorf("second push: %+v, %d uploads, %d mounts; want nothing sent", res, ct.uploads, ct.mounts)
	}
}

func TestToRemoteTarget(t *testing.T) {
	for _, bad := range []string{"ftp://host", "https://user:pw-planted@host", "user:pw-planted@host", "https://host?x=1", "://"} {
		_, err := load.ToRemote(t.Context(), writeTestLayout(t, t.TempDir()).dir, bad, load.RemoteOptions{})
		if err == nil || !strings.Contains(err.Error(), "--to") {
			t.Errorf("--to %q: got %v, want it refused", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "pw-planted") {
			t.Errorf("--to %q: the error shows the password: %v", bad, err)
		}
	}
}

// https:// means TLS: never plain HTTP, not even to a loopback or private
// address, where the image library would fall back to it and send the
// credentials in clear.
func TestToRemoteHTTPSNeverFallsBackToHTTP(t *testing.T) {
	tl := writeTestLayout(t, t.TempDir())
	reg := testreg.Start(t) // plain HTTP on loopback
	for _, target := range []string{"https://" + reg.Addr + "/mirror", reg.Addr + "/mirror"} {
		var plain atomic.Int32
		spy := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.URL.Scheme != "https" {
				plain.Add(1)
			}
			return http.DefaultTransport.RoundTrip(req)
		})
		_, err := load.ToRemote(t.Context(), tl.dir, target, load.RemoteOptions{Transport: spy, Username: "u", Password: "pw"})
		if err == nil {
			t.Errorf("--to %s pushed to a plain-HTTP registry", target)
		}
		if n := plain.Load(); n != 0 {
			t.Errorf("--to %s: %d plain-HTTP requests", target, n)
		}
	}
	if n := storedBlobs(t, reg.Storage); n != 0 {
		t.Errorf("the plain-HTTP registry stored %d blobs", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
