package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RemoteOptions say how to reach a registry over HTTP(S).
type RemoteOptions struct {
	Options
	// Username and Password, when set, are sent as basic credentials (or
	// exchanged for a token where the registry asks for one).
	Username, Password string
	// CAFile is a PEM bundle the registry's certificate may chain to,
	// besides the system's.
	CAFile string
	// Insecure skips checking the registry's TLS certificate.
	Insecure bool
	// Transport, when set, is the HTTP transport to use as it is (CAFile
	// and Insecure are then its business): for proxies and tests.
	Transport http.RoundTripper
}

// ToRemote pushes every image of the OCI layout at layoutDir to the
// registry at target (https://HOST:PORT, http://HOST:PORT, optionally with
// a path prefix for the repositories), under the same repository names
// ToStorage uses.
//
// Each blob is uploaded once, into the first repository that uses it,
// unless the registry has it there already; the other repositories get it
// by a cross-repository mount, which copies nothing. Blobs first, then
// manifests (unchanged, so digests are kept), then tags. The registry
// checks every blob against its digest as it receives it.
func ToRemote(ctx context.Context, layoutDir, target string, o RemoteOptions) (Result, error) {
	l, err := readLayout(layoutDir)
	if err != nil {
		return Result{}, err
	}
	reg, prefix, err := parseTarget(target)
	if err != nil {
		return Result{}, err
	}
	tr := o.Transport
	if tr == nil {
		if tr, err = o.transport(); err != nil {
			return Result{}, err
		}
	}
	if reg.Scheme() == "http" && !strings.HasPrefix(target, "http://") {
		// the image library speaks plain HTTP to loopback and private
		// addresses, where appliances live, and falls back to it when TLS
		// fails: https:// (or no scheme) means TLS or an error
		tr = tlsOnly{tr}
	}
	var auth authn.Authenticator = authn.Anonymous
	if o.Username != "" {
		auth = &authn.Basic{Username: o.Username, Password: o.Password}
	}
	p, err := remote.NewPusher(remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuth(auth), remote.WithJobs(o.jobs()))
	if err != nil {
		return Result{}, err
	}
	rp := &pusher{l: l, reg: reg, prefix: prefix, target: target, p: p, o: o}
	if err := rp.check(ctx, auth, tr); err != nil {
		return Result{Images: len(l.images), Blobs: len(l.blobs), Bytes: l.size()}, err
	}
	return rp.run(ctx)
}

// check reaches the registry and tries the credentials once, so that an
// unknown CA or a wrong password is said plainly, before any blob is read.
func (rp *pusher) check(ctx context.Context, auth authn.Authenticator, tr http.RoundTripper) error {
	ch, err := transport.Ping(ctx, rp.reg, tr)
	if err != nil {
		return fmt.Errorf("registry %s: %s; if its certificate is from a private CA, pass its CA file (--ca-file)", rp.target, strings.TrimSpace(err.Error()))
	}
	if len(rp.l.images) == 0 {
		return nil
	}
	scopes := []string{rp.repo(rp.l.images[0].repo).Scope(transport.PushScope)}
	rt, err := transport.NewWithContext(ctx, rp.reg, auth, tr, scopes)
	if err != nil {
		return fmt.Errorf("registry %s: %w; check the username and password", rp.target, err)
	}
	scheme := "https"
	if ch.Insecure {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+rp.reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("registry %s: %w", rp.target, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("registry %s refused the credentials (%s); check the username and password", rp.target, resp.Status)
	}
	return fmt.Errorf("registry %s: GET /v2/: %s", rp.target, resp.Status)
}

// CheckTarget refuses a target ToRemote could not push to, so that a
// command can say so before it reads a bundle.
func CheckTarget(target string) error {
	_, _, err := parseTarget(target)
	return err
}

// parseTarget splits https://HOST:PORT/PREFIX into a registry and a
// repository prefix.
func parseTarget(target string) (name.Registry, string, error) {
	s := target
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.User != nil {
		msg := "want https://HOST[:PORT][/PREFIX] (or http:// for a plain-HTTP registry)"
		if err == nil && u.User != nil {
			msg = "credentials go in --username and --password-file, not in the URL"
		}
		return name.Registry{}, "", fmt.Errorf("--to %q: %s", redact(target), msg)
	}
	var opts []name.Option
	if u.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, opts...)
	if err != nil {
		return name.Registry{}, "", fmt.Errorf("--to %q: %w", redact(target), err)
	}
	return reg, strings.Trim(u.Path, "/"), nil
}

// tlsOnly sends every request over TLS, whatever scheme the image library
// chose for it.
type tlsOnly struct{ base http.RoundTripper }

func (t tlsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		req = req.Clone(req.Context())
		req.URL.Scheme = "https"
	}
	return t.base.RoundTrip(req)
}

// redact drops the userinfo of a --to that carries one: it may hold the
// password.
func redact(target string) string {
	scheme, rest, ok := strings.Cut(target, "://")
	if at := strings.LastIndex(rest, "@"); ok && at >= 0 {
		return scheme + "://***" + rest[at:]
	}
	if at := strings.LastIndex(target, "@"); !ok && at >= 0 {
		return "***" + target[at:]
	}
	return target
}

func (o RemoteOptions) transport() (http.RoundTripper, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: o.Insecure} //nolint:gosec // only when asked for
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t, nil
}

type pusher struct {
	l      *layout
	reg    name.Registry
	prefix string
	target string
	p      *remote.Pusher
	o      RemoteOptions
}

func (rp *pusher) repo(repo string) name.Repository {
	if rp.prefix != "" {
		repo = rp.prefix + "/" + repo
	}
	return rp.reg.Repo(repo)
}

func (rp *pusher) run(ctx context.Context) (Result, error) {
	res := Result{Images: len(rp.l.images), Blobs: len(rp.l.blobs), Bytes: rp.l.size()}
	pr := newProgress(rp.o.Progress, "images", res.Bytes)

	// every blob into its first repository, the largest first
	blobs := append([]*blob(nil), rp.l.blobs...)
	sortBySize(blobs)
	var written atomic.Int64
	var skipped atomic.Int32
	err := parallel(ctx, rp.o.jobs(), len(blobs), func(ctx context.Context, i int) error {
		b := blobs[i]
		fl := &fileLayer{b: b, pr: pr}
		if err := rp.p.Upload(ctx, rp.repo(b.repos[0]), fl); err != nil {
			return fmt.Errorf("push %s to %s: %w", b, rp.repo(b.repos[0]), err)
		}
		n := fl.read.Load()
		written.Add(n)
		if n == 0 {
			skipped.Add(1)
		}
		pr.add(b.size - min(n, b.size)) // what was there counts as done
		return nil
	})
	res.Written, res.Skipped = written.Load(), int(skipped.Load())
	if err != nil {
		return res, err
	}

	// then into every other repository that uses it, by mount
	type mount struct {
		b    *blob
		repo string
	}
	var mounts []mount
	for _, b := range rp.l.blobs {
		for _, r := range b.repos[1:] {
			mounts = append(mounts, mount{b, r})
		}
	}
	err = parallel(ctx, rp.o.jobs(), len(mounts), func(ctx context.Context, i int) error {
		m := mounts[i]
		from := rp.repo(m.b.repos[0]).Digest(m.b.digest.String())
		fl := &fileLayer{b: m.b}
		ml := &remote.MountableLayer{Layer: fl, Reference: from}
		if err := rp.p.Upload(ctx, rp.repo(m.repo), ml); err != nil {
			return fmt.Errorf("push %s to %s: %w", m.b, rp.repo(m.repo), err)
		}
		written.Add(fl.read.Load()) // a registry that refuses mounts gets the bytes again
		return nil
	})
	res.Written = written.Load()
	if err != nil {
		return res, err
	}

	// manifests, an index's children first, then the reference itself
	for _, im := range rp.l.images {
		repo := rp.repo(im.repo)
		for _, m := range im.manifests {
			var ref name.Reference = repo.Digest(m.digest.String())
			if m == im.top && im.tag != "" {
				ref = repo.Tag(im.tag)
			}
			if err := rp.p.Put(ctx, ref, rawManifest{m}); err != nil {
				return res, fmt.Errorf("image %s: put manifest %s to %s: %w", im.ref, m.digest, ref, err)
			}
		}
	}
	return res, nil
}

// parallel runs f(0..n-1), jobs at a time, stopping at the first error.
func parallel(ctx context.Context, jobs, n int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		next  int
		first error
		wg    sync.WaitGroup
	)
	for range min(jobs, n) {
		wg.Go(func() {
			for {
				mu.Lock()
				if first != nil || next == n {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := f(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// fileLayer is a layout blob as go-containerregistry uploads it: streamed
// from its file, counted.
type fileLayer struct {
	b    *blob
	pr   *progress
	read atomic.Int64
}

func (f *fileLayer) Digest() (v1.Hash, error) { return v1.NewHash(f.b.digest.String()) }
func (f *fileLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{}, errors.New("a layout blob's diff ID is not known")
}
func (f *fileLayer) Size() (int64, error) { return f.b.size, nil }
func (f *fileLayer) MediaType() (types.MediaType, error) {
	if f.b.mediaType == "" {
		return types.OCILayer, nil
	}
	return types.MediaType(f.b.mediaType), nil
}
func (f *fileLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("a layout blob is pushed as it is")
}
func (f *fileLayer) Compressed() (io.ReadCloser, error) {
	file, err := os.Open(f.b.path)
	if err != nil {
		return nil, err
	}
	return &countingFile{f: file, l: f}, nil
}

type countingFile struct {
	f *os.File
	l *fileLayer
}

func (c *countingFile) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.l.read.Add(int64(n))
	c.l.pr.add(int64(n))
	return n, err
}

func (c *countingFile) Close() error { return c.f.Close() }

// rawManifest puts a manifest's bytes as they are.
type rawManifest struct{ m *manifest }

func (r rawManifest) RawManifest() ([]byte, error) { return r.m.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) {
	return types.MediaType(r.m.mediaType), nil
}
