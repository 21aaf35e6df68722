package registry

import (
	"context"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	repositorymiddleware "github.com/distribution/distribution/v3/registry/middleware/repository"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
)

// Distribution serves a blob's data file as it finds it: a layer that rotted
// on disk goes out with status 200 and the digest it was stored under.
// containerd would refuse it, but only after the transfer, with an error
// that points at the network; the pod then retries the same bad bytes
// forever. So Perch checks content on the server, in a repository
// middleware (it runs after authentication and after distribution has found
// the blob linked in the repository):
//
//   - A blob GET hashes the data file before the first byte goes out, unless
//     this process already verified the file as it is now (same size and
//     modification time). A mismatch is answered 500 with a JSON error
//     naming the blob, and logged with the file to remove.
//   - Every full (200) blob response is also hashed as it streams, and its
//     last byte is held back until the hash matches; on a mismatch the
//     connection is cut, so the client sees a failed transfer, never a
//     complete one. This catches decay after the first check, which leaves
//     size and time alone, for the cost of one more sha256 pass.
//   - A manifest is small: its bytes are checked against its digest on every
//     GET.
//
// HEAD requests are not checked: pushes HEAD every blob to skip those
// present, and hashing gigabytes for that would make a no-op push slow.
const verifyMiddleware = "perch-verify"

func init() {
	if err := repositorymiddleware.Register(verifyMiddleware, newVerifiedRepository); err != nil {
		panic(err)
	}
}

// verifier holds one server's record of checked blob files.
type verifier struct {
	dir     string
	log     *slog.Logger
	corrupt *prometheus.CounterVec

	mu       sync.Mutex
	verified map[digest.Digest]fileStamp
	bad      map[digest.Digest]fileStamp // known corrupt: refused without hashing again
	inflight map[digest.Digest]*verification
}

// fileStamp identifies a file's state cheaply: any write through the
// filesystem changes its modification time.
type fileStamp struct {
	size  int64
	mtime time.Time
}

type verification struct {
	done    chan struct{}
	err     error
	corrupt bool
}

func newVerifier(dir string, log *slog.Logger, corrupt *prometheus.CounterVec) *verifier {
	return &verifier{dir: dir, log: log, corrupt: corrupt, verified: map[digest.Digest]fileStamp{},
		bad: map[digest.Digest]fileStamp{}, inflight: map[digest.Digest]*verification{}}
}

// blobDir is where distribution's filesystem driver keeps a blob: the
// directory to delete to get rid of a bad copy.
func (v *verifier) blobDir(d digest.Digest) string {
	return filepath.Join(v.dir, "docker", "registry", "v2", "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
}

func (v *verifier) stamp(d digest.Digest) (fileStamp, bool) {
	fi, err := os.Stat(filepath.Join(v.blobDir(d), "data"))
	if err != nil {
		return fileStamp{}, false
	}
	return fileStamp{fi.Size(), fi.ModTime()}, true
}

// check makes sure the blob's data file holds its digest's content, hashing
// it unless this file state was checked before. Concurrent checks of one
// blob share one hash pass. fresh reports that this call hashed the file.
func (v *verifier) check(ctx context.Context, d digest.Digest) (fresh bool, err error) {
	if err := d.Validate(); err != nil {
		return false, err
	}
	st, ok := v.stamp(d)
	if !ok {
		// Distribution found the blob a moment ago; let it report what it
		// finds now.
		return false, nil
	}
	v.mu.Lock()
	switch {
	case v.verified[d] == st:
		v.mu.Unlock()
		return false, nil
	case v.bad[d] == st:
		v.mu.Unlock()
		return false, v.refuse(d)
	}
	if c, ok := v.inflight[d]; ok {
		v.mu.Unlock()
		select {
		case <-c.done:
			if c.corrupt {
				return false, v.refuse(d)
			}
			return false, c.err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	c := &verification{done: make(chan struct{})}
	v.inflight[d] = c
	v.mu.Unlock()

	got, err := hashFile(d, filepath.Join(v.blobDir(d), "data"))
	v.mu.Lock()
	delete(v.inflight, d)
	if err == nil && got == d {
		v.verified[d] = st
	}
	v.mu.Unlock()
	if err == nil && got != d {
		v.markCorrupt(d, st, got)
		c.corrupt = true
		err = v.refuse(d)
	}
	c.err = err
	close(c.done)
	return true, err
}

func hashFile(d digest.Digest, path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read blob %s: %w", d, err)
	}
	defer f.Close()
	h := d.Algorithm().Hash()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("read blob %s: %w", d, err)
	}
	return digest.NewDigest(d.Algorithm(), h), nil
}

// markCorrupt records that the blob's file, as of st, does not hold its
// content, and logs what to do about it.
func (v *verifier) markCorrupt(d digest.Digest, st fileStamp, got digest.Digest) {
	v.mu.Lock()
	delete(v.verified, d)
	v.bad[d] = st
	v.mu.Unlock()
	v.log.Error("corrupt blob not served: its data no longer matches its digest; delete the directory and load the bundle again (perch registry load)",
		"digest", d.String(), "content", got.String(), "dir", v.blobDir(d))
}

// refuse counts a refused blob and is the error its client gets (500, and
// no server paths).
func (v *verifier) refuse(d digest.Digest) error {
	v.corrupt.WithLabelValues("blob").Inc()
	return errcode.ErrorCodeUnknown.WithMessage(fmt.Sprintf("blob %s is corrupt in the registry's storage; the registry's log says how to repair it", d))
}

func newVerifiedRepository(_ context.Context, repo distribution.Repository, options map[string]any) (distribution.Repository, error) {
	v, ok := options["verifier"].(*verifier)
	if !ok {
		return nil, fmt.Errorf("%s middleware without a verifier", verifyMiddleware)
	}
	return &verifiedRepository{Repository: repo, v: v}, nil
}

type verifiedRepository struct {
	distribution.Repository
	v *verifier
}

func (r *verifiedRepository) Blobs(ctx context.Context) distribution.BlobStore {
	return &verifiedBlobs{BlobStore: r.Repository.Blobs(ctx), v: r.v}
}

func (r *verifiedRepository) Manifests(ctx context.Context, options ...distribution.ManifestServiceOption) (distribution.ManifestService, error) {
	ms, err := r.Repository.Manifests(ctx, options...)
	if err != nil {
		return nil, err
	}
	return &verifiedManifests{ManifestService: ms, v: r.v}, nil
}

type verifiedBlobs struct {
	distribution.BlobStore
	v *verifier
}

func (b *verifiedBlobs) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, d digest.Digest) error {
	if r.Method != http.MethodGet {
		return b.BlobStore.ServeBlob(ctx, w, r, d)
	}
	fresh, err := b.v.check(ctx, d)
	if err != nil {
		return err
	}
	if fresh {
		// Hashed a moment ago: a second pass would only cost CPU.
		return b.BlobStore.ServeBlob(ctx, w, r, d)
	}
	desc, err := b.BlobStore.Stat(ctx, d)
	if err != nil {
		return err
	}
	return b.BlobStore.ServeBlob(ctx, &checkingWriter{ResponseWriter: w, v: b.v, want: d, size: desc.Size, h: d.Algorithm().Hash()}, r, d)
}

// checkingWriter hashes a full blob response as it goes out and holds its
// last byte back until the hash matches.
type checkingWriter struct {
	http.ResponseWriter
	v      *verifier
	want   digest.Digest
	size   int64
	h      hash.Hash
	status int
	n      int64
}

func (w *checkingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *checkingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status != http.StatusOK || len(p) == 0 {
		return w.ResponseWriter.Write(p)
	}
	w.h.Write(p)
	w.n += int64(len(p))
	if w.n < w.size {
		return w.ResponseWriter.Write(p)
	}
	last := len(p) - 1
	if n, err := w.ResponseWriter.Write(p[:last]); err != nil {
		return n, err
	}
	if got := digest.NewDigestFromBytes(w.want.Algorithm(), w.h.Sum(nil)); w.n != w.size || got != w.want {
		if st, ok := w.v.stamp(w.want); ok {
			w.v.markCorrupt(w.want, st, got)
		}
		w.v.corrupt.WithLabelValues("blob").Inc()
		// The status and all but the last byte are out; cutting the
		// connection is the one way left to tell the client.
		panic(http.ErrAbortHandler)
	}
	n, err := w.ResponseWriter.Write(p[last:])
	return last + n, err
}

func (w *checkingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type verifiedManifests struct {
	distribution.ManifestService
	v *verifier
}

func (m *verifiedManifests) Get(ctx context.Context, d digest.Digest, options ...distribution.ManifestServiceOption) (distribution.Manifest, error) {
	man, err := m.ManifestService.Get(ctx, d, options...)
	if err != nil {
		return man, err
	}
	_, payload, err := man.Payload()
	if err != nil {
		return nil, err
	}
	if got := d.Algorithm().FromBytes(payload); got != d {
		m.v.corrupt.WithLabelValues("manifest").Inc()
		m.v.log.Error("corrupt manifest not served: its data no longer matches its digest; delete the directory and load the bundle again (perch registry load)",
			"digest", d.String(), "content", got.String(), "dir", m.v.blobDir(d))
		return nil, errcode.ErrorCodeUnknown.WithMessage(fmt.Sprintf("manifest %s is corrupt in the registry's storage; the registry's log says how to repair it", d))
	}
	return man, nil
}
