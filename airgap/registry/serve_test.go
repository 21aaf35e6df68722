package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestServe runs the registry as the appliance does (TLS from a generated
// CA, htpasswd) and drives it with go-containerregistry and Debian's
// skopeo: push, pull with digests compared, a wrong password, a restart,
// 50 parallel pulls, corrupted content on disk, health, metrics and a
// graceful stop with a download in flight.
func TestServe(t *testing.T) {
	skopeoBin, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatal("skopeo not found: run scripts/test-deps (Debian's skopeo)")
	}
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "storage")
	certDir := filepath.Join(tmp, "certs") // skopeo's --cert-dir: CAs as *.crt
	caPEM, caKey := mustCA(t)
	certPEM, keyPEM, err := IssueServerCert(caPEM, caKey, []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	password, err := RandomPassword()
	if err != nil {
		t.Fatal(err)
	}
	line, err := HtpasswdLine("perch", password)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(certDir, "ca.crt"), caPEM)
	writeFile(t, filepath.Join(tmp, "tls.crt"), certPEM)
	writeFile(t, filepath.Join(tmp, "tls.key"), keyPEM)
	writeFile(t, filepath.Join(tmp, "htpasswd"), []byte(line+"\n"))

	logs := &syncBuffer{}
	cfg := Config{Dir: dir, TLSCert: filepath.Join(tmp, "tls.crt"), TLSKey: filepath.Join(tmp, "tls.key"), Htpasswd: filepath.Join(tmp, "htpasswd"), Log: logs}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	creds := &authn.Basic{Username: "perch", Password: password}
	client := &http.Client{Transport: tr, Timeout: time.Minute}

	srv := startServer(t, cfg, tr)
	top := t // servers outlive the subtest that starts them
	images := testImages(t)
	ref := func(s *server, im testImage) name.Reference {
		r, err := name.ParseReference(s.host + "/" + im.repo)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("push", func(t *testing.T) {
		for _, im := range images {
			if err := remote.Write(ref(srv, im), im.img, remote.WithAuth(creds), remote.WithTransport(tr)); err != nil {
				t.Fatalf("push %s: %v", im.repo, err)
			}
		}
	})

	// what an operator runs first to see what the appliance holds
	t.Run("catalog lists every pushed repository", func(t *testing.T) {
		for _, q := range []string{"", "?n=100"} {
			req, _ := http.NewRequest("GET", srv.url+"/v2/_catalog"+q, nil)
			req.SetBasicAuth("perch", password)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var cat struct{ Repositories []string }
			err = json.NewDecoder(resp.Body).Decode(&cat)
			resp.Body.Close()
			if resp.StatusCode != 200 || err != nil {
				t.Fatalf("/v2/_catalog%s: %d, %v", q, resp.StatusCode, err)
			}
			for _, im := range images {
				repo, _, _ := strings.Cut(im.repo, ":")
				repo, _, _ = strings.Cut(repo, "@")
				if !slices.Contains(cat.Repositories, repo) {
					t.Errorf("/v2/_catalog%s = %v, lacks %s", q, cat.Repositories, repo)
				}
			}
		}
	})

	t.Run("skopeo pulls every image over TLS with credentials", func(t *testing.T) {
		for _, im := range images {
			out, err := exec.Command(skopeoBin, "inspect", "--cert-dir", certDir, "--creds", "perch:"+password, "docker://"+srv.host+"/"+im.repo).CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo inspect %s: %v\n%s", im.repo, err, out)
			}
			var info struct{ Digest string }
			if err := json.Unmarshal(out, &info); err != nil {
				t.Fatalf("skopeo inspect output: %v\n%s", err, out)
			}
			if info.Digest != im.digest.String() {
				t.Errorf("skopeo inspect %s: digest %s, pushed %s", im.repo, info.Digest, im.digest)
			}

			dest := filepath.Join(tmp, "skopeo", strings.NewReplacer("/", "_", ":", "_").Replace(im.repo))
			if err := os.MkdirAll(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err = exec.Command(skopeoBin, "--insecure-policy", "copy", "--quiet", "--preserve-digests",
				"--src-cert-dir", certDir, "--src-creds", "perch:"+password,
				"docker://"+srv.host+"/"+im.repo, "dir:"+dest).CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo copy %s: %v\n%s", im.repo, err, out)
			}
			if got := fileDigest(t, filepath.Join(dest, "manifest.json")); got != im.digest.String() {
				t.Errorf("skopeo copy %s: manifest %s, pushed %s", im.repo, got, im.digest)
			}
			m, err := im.img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range append(m.Layers, m.Config) {
				if got := fileDigest(t, filepath.Join(dest, l.Digest.Hex)); got != l.Digest.String() {
					t.Errorf("skopeo copy %s: blob %s arrived as %s", im.repo, l.Digest, got)
				}
			}
		}
	})

	t.Run("wrong password is refused", func(t *testing.T) {
		im := images[0]
		out, err := exec.Command(skopeoBin, "inspect", "--cert-dir", certDir, "--creds", "perch:"+password[1:]+"x", "docker://"+srv.host+"/"+im.repo).CombinedOutput()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "unauthorized") {
			t.Errorf("skopeo with a wrong password: err=%v\n%s", err, out)
		}
		for _, c := range []struct{ user, pass string }{{"perch", "wrong"}, {"root", password}, {"", ""}} {
			req, _ := http.NewRequest("GET", srv.url+"/v2/"+strings.Split(im.repo, ":")[0]+"/manifests/"+im.digest.String(), nil)
			if c.user != "" {
				req.SetBasicAuth(c.user, c.pass)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("user %q: status %d, WWW-Authenticate %q; want 401 with a Basic challenge", c.user, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
		bad := &authn.Basic{Username: "perch", Password: "wrong"}
		if _, err := remote.Image(ref(srv, im), remote.WithAuth(bad), remote.WithTransport(tr)); err == nil {
			t.Error("go-containerregistry pulled with a wrong password")
		}
	})

	t.Run("50 parallel pulls", func(t *testing.T) {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- pull(ref(srv, images[i%3]), images[i%3].digest, creds, tr)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		t.Logf("50 parallel pulls in %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("healthz and metrics", func(t *testing.T) {
		if code, body := get(t, client, srv.url+"/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		code, body := get(t, client, srv.url+"/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		for _, want := range []string{`registry_http_requests_total{code="200",handler="blob",method="get"}`, `handler="manifest"`, "registry_storage_action_seconds", "go_goroutines"} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("restart keeps everything", func(t *testing.T) {
		if err := srv.stop(t); err != nil {
			t.Fatalf("Serve returned %v after a graceful stop, want nil", err)
		}
		srv = startServer(top, cfg, tr)
		for _, im := range images {
			if err := pull(ref(srv, im), im.digest, creds, tr); err != nil {
				t.Error(err)
			}
		}
		out, err := exec.Command(skopeoBin, "inspect", "--cert-dir", certDir, "--creds", "perch:"+password, "docker://"+srv.host+"/"+images[1].repo).CombinedOutput()
		if err != nil || !strings.Contains(string(out), images[1].digest.String()) {
			t.Errorf("skopeo inspect after restart: %v\n%s", err, out)
		}
	})

	getBlob := func(repo string, d v1.Hash) (*http.Response, error) {
		req, _ := http.NewRequest("GET", srv.url+"/v2/"+repo+"/blobs/"+d.String(), nil)
		req.SetBasicAuth("perch", password)
		return client.Do(req)
	}

	t.Run("corrupt blob is not served", func(t *testing.T) {
		a := images[0]
		repo := strings.Split(a.repo, ":")[0]
		m, _ := a.img.Manifest()
		unique := m.Layers[1] // app-a's own layer, pulled (so verified) since the restart
		data := blobData(dir, unique.Digest)
		fi, err := os.Stat(data)
		if err != nil {
			t.Fatal(err)
		}

		// Decay that leaves size and time alone: the file was verified, so
		// it streams, and the connection is cut before the last byte.
		flipByte(t, data, unique.Size/2)
		if err := os.Chtimes(data, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
		resp, err := getBlob(repo, unique.Digest)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || int64(len(body)) >= unique.Size {
			t.Fatalf("bit-rotted blob: status %d, read %d of %d bytes, err %v; want the transfer cut short", resp.StatusCode, len(body), unique.Size, err)
		}

		// From then on it is refused up front, with an error response.
		for range 2 {
			resp, err = getBlob(repo, unique.Digest)
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusInternalServerError || !bytes.Contains(body, []byte("corrupt")) || int64(len(body)) >= unique.Size {
				t.Errorf("corrupt blob: status %d, %d bytes %.200q; want 500 with an error naming the corruption", resp.StatusCode, len(body), body)
			}
		}
		if err := pull(ref(srv, a), a.digest, creds, tr, remote.WithRetryStatusCodes()); err == nil {
			t.Error("pulled app-a with a corrupt layer")
		}

		// A write (new mtime, other size) to a verified blob: refused up front.
		b := images[1]
		mb, _ := b.img.Manifest()
		trunc := mb.Layers[1]
		if err := os.Truncate(blobData(dir, trunc.Digest), trunc.Size-100); err != nil {
			t.Fatal(err)
		}
		resp, err = getBlob(strings.Split(b.repo, ":")[0], trunc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("truncated blob: status %d, want 500", resp.StatusCode)
		}

		// The shared layer is untouched: app-b's other layers still come.
		resp, err = getBlob(strings.Split(b.repo, ":")[0], mb.Layers[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		got := digestOf(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || got != mb.Layers[0].Digest.String() {
			t.Errorf("intact shared layer: status %d digest %s", resp.StatusCode, got)
		}
		if !strings.Contains(logs.String(), "corrupt blob not served") || !strings.Contains(logs.String(), filepath.Dir(data)) {
			t.Errorf("the log does not name the corrupt blob's directory:\n%s", logs.String())
		}

		// The repair the log asks for, done live: delete, upload the blob
		// again. (remote.Write would skip it: the manifest is intact.)
		if err := os.RemoveAll(filepath.Dir(data)); err != nil {
			t.Fatal(err)
		}
		layers, err := a.img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteLayer(ref(srv, a).Context(), layers[1], remote.WithAuth(creds), remote.WithTransport(tr)); err != nil {
			t.Fatalf("upload after deleting the corrupt blob: %v", err)
		}
		if err := pull(ref(srv, a), a.digest, creds, tr); err != nil {
			t.Errorf("after the repair: %v", err)
		}
	})

	t.Run("corrupt manifest is not served", func(t *testing.T) {
		c := images[2]
		data := blobData(dir, c.digest)
		raw, err := os.ReadFile(data)
		if err != nil {
			t.Fatal(err)
		}
		// Still valid JSON, still a manifest: only the digest check sees it.
		i := bytes.Index(raw, []byte(`"sha256:`)) + len(`"sha256:`)
		if raw[i] == '0' {
			raw[i] = '1'
		} else {
			raw[i] = '0'
		}
		writeFile(t, data, raw)
		repo, tag, _ := strings.Cut(c.repo, ":")
		for _, what := range []string{tag, c.digest.String()} {
			req, _ := http.NewRequest("GET", srv.url+"/v2/"+repo+"/manifests/"+what, nil)
			req.SetBasicAuth("perch", password)
			req.Header.Set("Accept", string(types.DockerManifestSchema2)+","+string(types.OCIManifestSchema1))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusInternalServerError || !bytes.Contains(body, []byte("corrupt")) {
				t.Errorf("manifest by %s: status %d %.200q, want 500 naming the corruption", what, resp.StatusCode, body)
			}
		}
		_, body := get(t, client, srv.url+"/metrics")
		for _, want := range []string{`perch_registry_corrupt_total{kind="blob"} 5`, `perch_registry_corrupt_total{kind="manifest"} 2`} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("quiet log", func(t *testing.T) {
		l := logs.String()
		for _, noise := range []string{"response completed\"", "authorized request", "invalid authorization credential", "level=DEBUG"} {
			if strings.Contains(l, noise) {
				t.Errorf("log has per-request line %q", noise)
			}
		}
		if !strings.Contains(l, "registry serving") {
			t.Errorf("log lacks the start line:\n%s", l)
		}
	})

	t.Run("graceful stop finishes a download in flight", func(t *testing.T) {
		big := images[3]
		m, _ := big.img.Manifest()
		layer := m.Layers[0]
		// HTTP/1.1 and no read-ahead: the server is still writing when
		// the stop comes.
		h1 := tr.Clone()
		h1.ForceAttemptHTTP2 = false
		h1.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		h1.TLSClientConfig = &tls.Config{RootCAs: roots}
		req, _ := http.NewRequest("GET", srv.url+"/v2/"+strings.Split(big.repo, ":")[0]+"/blobs/"+layer.Digest.String(), nil)
		req.SetBasicAuth("perch", password)
		resp, err := (&http.Client{Transport: h1}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		if _, err := io.CopyN(h, resp.Body, 64<<10); err != nil {
			t.Fatal(err)
		}
		srv.cancel()
		select {
		case err := <-srv.done:
			t.Fatalf("Serve returned %v with a download in flight", err)
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := io.Copy(h, resp.Body); err != nil {
			t.Fatalf("download cut by the stop: %v", err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != layer.Digest.String() {
			t.Errorf("download during stop: %s, want %s", got, layer.Digest)
		}
		if err := srv.stop(t); err != nil {
			t.Errorf("Serve returned %v after a graceful stop, want nil", err)
		}
		if _, err := net.DialTimeout("tcp", srv.host, time.Second); err == nil {
			t.Error("still accepting connections after the stop")
		}
	})
}

func TestServePlainHTTPHealth(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "storage")
	srv := startServer(t, Config{Dir: dir}, http.DefaultTransport)
	client := &http.Client{Timeout: 10 * time.Second}
	if code, _ := get(t, client, srv.url+"/v2/"); code != 200 {
		t.Errorf("/v2/ without auth configured: %d, want 200", code)
	}
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, client, srv.url+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz with the storage gone: %d, want 503", code)
	}
	if err := os.Rename(dir+".gone", dir); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, client, srv.url+"/healthz"); code != 200 {
		t.Errorf("/healthz with the storage back: %d, want 200", code)
	}
	if err := srv.stop(t); err != nil {
		t.Errorf("stop: %v", err)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	tmp := t.TempDir()
	caPEM, caKey := mustCA(t)
	certPEM, keyPEM, err := IssueServerCert(caPEM, caKey, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tmp, "tls.crt"), certPEM)
	writeFile(t, filepath.Join(tmp, "tls.key"), keyPEM)
	writeFile(t, filepath.Join(tmp, "other.key"), caKey)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := filepath.Join(tmp, "storage")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dir", Config{Addr: "127.0.0.1:0"}, "storage directory"},
		{"cert without key", Config{Dir: dir, Addr: "127.0.0.1:0", TLSCert: filepath.Join(tmp, "tls.crt")}, "both"},
		{"missing cert", Config{Dir: dir, Addr: "127.0.0.1:0", TLSCert: filepath.Join(tmp, "nope.crt"), TLSKey: filepath.Join(tmp, "tls.key")}, "nope.crt"},
		{"key of another cert", Config{Dir: dir, Addr: "127.0.0.1:0", TLSCert: filepath.Join(tmp, "tls.crt"), TLSKey: filepath.Join(tmp, "other.key")}, "other.key"},
		{"missing htpasswd", Config{Dir: dir, Addr: "127.0.0.1:0", Htpasswd: filepath.Join(tmp, "htpasswd")}, "perch install"},
		{"address in use", Config{Dir: dir, Addr: busy.Addr().String()}, "pick another address"},
		{"storage under a file", Config{Dir: filepath.Join(tmp, "tls.crt", "x"), Addr: "127.0.0.1:0"}, "registry storage"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := Serve(ctx, tc.cfg)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Serve = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

type server struct {
	host, url string
	cancel    context.CancelFunc
	done      chan error
	once      sync.Once
	err       error
}

// startServer runs Serve on a free loopback port and waits for /healthz.
func startServer(t *testing.T, cfg Config, tr http.RoundTripper) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{host: cfg.Addr, url: "http://" + cfg.Addr, cancel: cancel, done: make(chan error, 1)}
	if cfg.TLSCert != "" {
		s.url = "https://" + cfg.Addr
	}
	go func() { s.done <- Serve(ctx, cfg) }()
	t.Cleanup(func() { s.stop(t) })
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-s.done:
			t.Fatalf("Serve returned at start: %v", err)
		default:
		}
		resp, err := client.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on %s not healthy after 20s: %v", cfg.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) stop(t *testing.T) error {
	s.once.Do(func() {
		s.cancel()
		select {
		case s.err = <-s.done:
		case <-time.After(45 * time.Second):
			t.Fatal("Serve did not return within 45s of cancel")
		}
	})
	return s.err
}

type testImage struct {
	repo   string // repository:tag, under the upstream registry's prefix
	img    v1.Image
	digest v1.Hash
}

// testImages are four images: two OCI ones sharing their first layer, one
// Docker schema 2 image from random.Image, and one with a 32 MiB layer.
func testImages(t *testing.T) []testImage {
	t.Helper()
	layer := func(size int64) v1.Layer {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	oci := func(layers ...v1.Layer) v1.Image {
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		img, err := mutate.AppendLayers(img, layers...)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	shared := layer(2 << 20)
	dockerImg, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 32<<20)
	rand.NewChaCha8([32]byte{1}).Read(big)
	out := []testImage{
		{repo: "docker.io/library/app-a:1.0", img: oci(shared, layer(1<<20))},
		{repo: "quay.io/perch/app-b:2", img: oci(shared, layer(1<<20), layer(512<<10))},
		{repo: "ghcr.io/perch/app-c:v3", img: dockerImg},
		{repo: "docker.io/perch/big:1", img: oci(static.NewLayer(big, types.OCILayer))},
	}
	for i := range out {
		d, err := out[i].img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out[i].digest = d
	}
	return out
}

// pull fetches an image's manifest and every blob the way a node does;
// go-containerregistry checks each blob against its digest.
func pull(ref name.Reference, want v1.Hash, creds authn.Authenticator, tr http.RoundTripper, opts ...remote.Option) error {
	img, err := remote.Image(ref, append(opts, remote.WithAuth(creds), remote.WithTransport(tr))...)
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if d, err := img.Digest(); err != nil || d != want {
		return fmt.Errorf("pull %s: digest %s (%v), pushed %s", ref, d, err, want)
	}
	if _, err := img.RawConfigFile(); err != nil {
		return fmt.Errorf("pull %s: config: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("pull %s: %w", ref, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("pull %s: layer: %w", ref, err)
		}
	}
	return nil
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func blobData(dir string, d v1.Hash) string {
	return filepath.Join(dir, "docker", "registry", "v2", "blobs", d.Algorithm, d.Hex[:2], d.Hex, "data")
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return digestOf(t, f)
}

func digestOf(t *testing.T, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
