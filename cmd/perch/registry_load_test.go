package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	"github.com/perchedge/perch/airgap"
)

// loadRegistry is distribution's registry application in-process, as
// `perch registry serve` runs it: the source of bundled images, and the
// target of loads.
type loadRegistry struct {
	host string
	srv  *httptest.Server
}

func startLoadRegistry(t *testing.T, storage, htpasswd string, tls bool) *loadRegistry {
	t.Helper()
	auth := ""
	if htpasswd != "" {
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: perch-test\n    path: %s\n", htpasswd)
	}
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
%s`, storage, auth)))
	if err != nil {
		t.Fatal(err)
	}
	// NewApp leaves logging to its caller; distribution logs every request
	logrus.SetLevel(logrus.ErrorLevel)
	ctx, cancel := context.WithCancel(context.Background())
	app := handlers.NewApp(ctx, cfg)
	r := &loadRegistry{}
	if tls {
		r.srv = httptest.NewTLSServer(app)
	} else {
		r.srv = httptest.NewServer(app)
	}
	t.Cleanup(func() {
		r.srv.Close()
		cancel()
	})
	r.host = strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "http://"), "https://")
	return r
}

type loadImage struct {
	ref    string
	digest v1.Hash
}

// pushLoadImages pushes two images for this host's arch that share a base
// layer, one Docker-typed and one OCI-typed, and returns their references.
func pushLoadImages(t *testing.T, reg *loadRegistry) []loadImage {
	t.Helper()
	layer := func(n int64) v1.Layer {
		l, err := random.Layer(n, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	base := layer(200 << 10)
	var out []loadImage
	for i, oci := range []bool{false, true} {
		img := empty.Image
		if oci {
			img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
		}
		img, err := mutate.AppendLayers(img, base, layer(int64(30+i)<<10))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", runtime.GOARCH
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		ref := fmt.Sprintf("%s/perch-test/app-%c:1.%d", reg.host, 'a'+i, i)
		if err := remote.Write(loadRef(t, ref), img); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, loadImage{ref: ref, digest: d})
	}
	return out
}

func loadRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// buildLoadBundle builds a signed bundle of the images with perch itself,
// as a directory and as an archive; it returns both and the public key.
func buildLoadBundle(t *testing.T, images []loadImage) (dir, archive, pub string) {
	t.Helper()
	work := t.TempDir()
	k3s := filepath.Join(work, "k3s")
	if err := os.WriteFile(k3s, []byte("#!/bin/sh\necho 'k3s version v1.31.1+k3s1 (abcdef)'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("apiVersion: perch.dev/v1alpha1\nkind: BundleSpec\nname: load-test\nversion: 1.0.0\narch: %s\nk3s:\n  binary: %s\nimages:\n", runtime.GOARCH, k3s)
	for _, im := range images {
		spec += "- " + im.ref + "\n"
	}
	specPath := filepath.Join(work, "spec.yaml")
	if err := os.WriteFile(specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(work, "site")
	if out, errOut, code := perch(t, "", "bundle", "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %s%s", out, errOut)
	}
	dir, archive = filepath.Join(work, "bundle"), filepath.Join(work, "bundle.tar.zst")
	for _, out := range []string{dir, archive} {
		if o, e, code := perch(t, "", "bundle", "build", "--spec", specPath, "--out", out, "--key", key+".key"); code != 0 {
			t.Fatalf("bundle build %s exited %d:\n%s%s", out, code, o, e)
		}
	}
	return dir, archive, key + ".pub"
}

// pullLoaded pulls every image from the registry at host under its
// appliance name and compares digests.
func pullLoaded(t *testing.T, host string, images []loadImage, opts ...remote.Option) {
	t.Helper()
	for _, im := range images {
		ref := loadRef(t, im.ref)
		s := host + "/" + airgap.Repository(ref) + ":" + ref.Identifier()
		desc, err := remote.Get(loadRef(t, s), opts...)
		if err != nil {
			t.Errorf("pull %s: %v", s, err)
			continue
		}
		if desc.Digest != im.digest {
			t.Errorf("%s is %s, pushed as %s", s, desc.Digest, im.digest)
		}
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
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
				t.Errorf("%s: layer: %v", s, err)
			}
		}
	}
}

func TestRegistryLoadBundle(t *testing.T) {
	src := startLoadRegistry(t, t.TempDir(), "", false)
	images := pushLoadImages(t, src)
	dir, archive, pub := buildLoadBundle(t, images)

	// a bundle directory: verified in place, loaded from there
	store := filepath.Join(t.TempDir(), "registry")
	out, errOut, code := perch(t, "", "registry", "load", dir, "--dir", store, "--pubkey", pub)
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "loaded 2 images into "+store) || !strings.Contains(errOut, "5 blobs, 0 already there") {
		t.Errorf("stderr does not report 2 images in 5 blobs (a shared layer, two own, two configs):\n%s", errOut)
	}
	served := startLoadRegistry(t, store, "", false)
	pullLoaded(t, served.host, images)

	// again: nothing to write, said as JSON events on stdout
	out, errOut, code = perch(t, "", "registry", "load", dir, "--dir", store, "--pubkey", pub, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	var last struct{ Event, Message string }
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("stdout line %q: %v", l, err)
		}
	}
	if last.Event != "log" || !strings.Contains(last.Message, "all 2 images already in") {
		t.Errorf("the last event of a second load is %+v, want it to say all images were there", last)
	}

	// an archive: staged next to the storage, removed after
	store2 := filepath.Join(t.TempDir(), "registry")
	if out, errOut, code := perch(t, "", "registry", "load", archive, "--dir", store2, "--pubkey", pub); code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	pullLoaded(t, startLoadRegistry(t, store2, "", false).host, images)
	entries, err := os.ReadDir(filepath.Dir(store2))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("beside the storage after the load: %v; want the staged bundle removed", entries)
	}
}

func TestRegistryLoadToRemote(t *testing.T) {
	src := startLoadRegistry(t, t.TempDir(), "", false)
	images := pushLoadImages(t, src)
	_, archive, pub := buildLoadBundle(t, images)

	work := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(work, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("perch:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := startLoadRegistry(t, t.TempDir(), htpasswd, true)
	ca := filepath.Join(work, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: dst.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	good, bad := filepath.Join(work, "password"), filepath.Join(work, "wrong")
	os.WriteFile(good, []byte("s3cret\n"), 0o600)
	os.WriteFile(bad, []byte("guess\n"), 0o600)
	to := "https://" + dst.host

	_, errOut, code := perch(t, "", "registry", "load", archive, "--pubkey", pub, "--to", to, "--username", "perch", "--password-file", bad, "--ca-file", ca)
	t.Logf("wrong password: %s", lastLine(errOut))
	if code != 1 || !strings.Contains(strings.ToLower(errOut), "unauthorized") {
		t.Errorf("a wrong password: exit %d, %s; want exit 1 and the registry's refusal", code, errOut)
	}
	_, errOut, code = perch(t, "", "registry", "load", archive, "--pubkey", pub, "--to", to, "--username", "perch", "--password-file", good)
	t.Logf("no CA: %s", lastLine(errOut))
	if code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("without --ca-file: exit %d, %s; want the certificate refused", code, errOut)
	}
	out, errOut, code := perch(t, "", "registry", "load", archive, "--pubkey", pub, "--to", to, "--username", "perch", "--password-file", good, "--ca-file", ca)
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "loaded 2 images into "+to) {
		t.Errorf("stderr:\n%s", errOut)
	}
	pool := dst.srv.Client().Transport
	pullLoaded(t, dst.host, images, remote.WithTransport(pool), remote.WithAuth(&authn.Basic{Username: "perch", Password: "s3cret"}))
}

func TestRegistryLoadRefuses(t *testing.T) {
	src := startLoadRegistry(t, t.TempDir(), "", false)
	images := pushLoadImages(t, src)
	dir, _, pub := buildLoadBundle(t, images)
	other := filepath.Join(t.TempDir(), "other")
	if _, errOut, code := perch(t, "", "bundle", "keygen", "--out", other); code != 0 {
		t.Fatal(errOut)
	}
	// a plain OCI layout of the same images
	plain := t.TempDir()
	lp, err := layout.Write(plain, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(loadRef(t, images[0].ref))
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": images[0].ref})); err != nil {
		t.Fatal(err)
	}
	// a bundle directory with one layer changed
	tampered := t.TempDir()
	if err := os.CopyFS(tampered, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[1].Digest()
	lpath := filepath.Join(tampered, "images", "blobs", "sha256", ld.Hex)
	b, err := os.ReadFile(lpath)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.WriteFile(lpath, b, 0o644)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"neither --dir nor --to", []string{dir, "--pubkey", pub}, 2, "exactly one of --dir"},
		{"both --dir and --to", []string{dir, "--pubkey", pub, "--dir", "STORE", "--to", "https://example.invalid"}, 2, "exactly one of --dir"},
		{"credentials with --dir", []string{dir, "--pubkey", pub, "--dir", "STORE", "--username", "u", "--password-file", "f"}, 2, "are for --to"},
		{"username without password", []string{dir, "--pubkey", pub, "--to", "https://example.invalid", "--username", "u"}, 2, "go together"},
		{"no key", []string{dir, "--dir", "STORE"}, 2, "--pubkey"},
		{"bad output", []string{dir, "--pubkey", pub, "--dir", "STORE", "-o", "yaml"}, 2, "--output"},
		{"plain layout, unverified not allowed", []string{plain, "--pubkey", pub, "--dir", "STORE"}, 2, "--insecure-skip-signature"},
		{"signed by another key", []string{dir, "--pubkey", other + ".pub", "--dir", "STORE"}, 1, "perch-bundle.json.minisig"},
		{"a layer changed", []string{tampered, "--pubkey", pub, "--dir", "STORE"}, 1, "images/blobs/sha256/" + ld.Hex},
		{"bad --to", []string{plain, "--insecure-skip-signature", "--to", "ftp://x"}, 2, `--to "ftp://x": want https://`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "registry")
			args := append([]string{"registry", "load"}, tc.args...)
			for i, a := range args {
				if a == "STORE" {
					args[i] = store
				}
			}
			out, errOut, code := perch(t, "", args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s%s\nwant exit %d and %q", code, errOut, out, tc.code, tc.want)
			}
			if m, _ := filepath.Glob(filepath.Join(store, "docker/registry/v2/blobs/sha256/*/*")); len(m) > 0 {
				t.Errorf("a refused load left %d blobs in the storage", len(m))
			}
		})
	}

	// and the plain layout, when asked for
	store := filepath.Join(t.TempDir(), "registry")
	_, errOut, code := perch(t, "", "registry", "load", plain, "--insecure-skip-signature", "--dir", store)
	if code != 0 || !strings.Contains(errOut, "unverified") {
		t.Fatalf("plain layout with --insecure-skip-signature: exit %d\n%s", code, errOut)
	}
	pullLoaded(t, startLoadRegistry(t, store, "", false).host, images[:1])
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}
