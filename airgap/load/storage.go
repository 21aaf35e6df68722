package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sync"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// copyBuffer is what each copying goroutine reads at a time: large enough
// that syscalls cost nothing next to hashing, small enough for the RSS goal.
const copyBuffer = 1 << 20

// ToStorage loads every image of the OCI layout at layoutDir into the
// distribution filesystem storage at storageDir — the directory `perch
// registry serve --dir` serves, which may be serving it now — through
// distribution's own storage code, so what it writes is what the registry
// would have written for a push.
//
// Each blob the storage lacks is streamed from its file once: distribution's
// writer hashes it as it writes and commits it only under the digest the
// layout says, so a damaged blob fails, named. A blob the storage has (from
// another image, or an earlier load) is not read at all: it is linked into
// each repository that uses it, the cheap way a cross-repository mount does.
// Manifests go in only when all their blobs are, with their bytes unchanged,
// then tags: a load that fails leaves no image half there, and loading the
// same layout again only checks what is present.
func ToStorage(ctx context.Context, layoutDir, storageDir string, o Options) (Result, error) {
	l, err := readLayout(layoutDir)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(storageDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("registry storage: %w", err)
	}
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: storageDir, MaxThreads: 100})
	// no resumable uploads: nothing here resumes one, and saving the hash
	// state costs a write and two fsyncs per blob
	ns, err := storage.NewRegistry(ctx, drv, storage.DisableDigestResumption)
	if err != nil {
		return Result{}, fmt.Errorf("registry storage %s: %w", storageDir, err)
	}
	s := &storer{l: l, ns: ns, drv: drv, dir: storageDir, o: o}
	return s.run(ctx)
}

type storer struct {
	l   *layout
	ns  distribution.Namespace
	drv storagedriver.StorageDriver
	dir string
	o   Options
}

func (s *storer) run(ctx context.Context) (Result, error) {
	res := Result{Images: len(s.l.images), Blobs: len(s.l.blobs), Bytes: s.l.size()}

	// what the storage lacks, by the global blob store: a stat each
	var missing []*blob
	var total int64
	present := map[*blob]bool{}
	for _, b := range s.l.blobs {
		desc, err := s.ns.BlobStatter().Stat(ctx, b.digest)
		switch {
		case errors.Is(err, distribution.ErrBlobUnknown):
			missing = append(missing, b)
			total += b.size
		case err != nil:
			return res, fmt.Errorf("registry storage %s: %s: %w", s.dir, b, err)
		case desc.Size != b.size:
			return res, fmt.Errorf("registry storage %s holds %s with %d bytes, the layout %d: the storage is damaged; remove %s and load again",
				s.dir, b.digest, desc.Size, b.size, s.blobDataPath(b.digest))
		default:
			present[b] = true
			res.Skipped++
		}
	}

	sortBySize(missing)
	pr := newProgress(s.o.Progress, "images", total)
	written, err := s.writeAll(ctx, missing, pr)
	res.Written = written
	if err != nil {
		return res, err
	}

	// every repository gets a link to every blob its images use; the one a
	// blob was written through has it already. Links and manifests are
	// small files, each written with two fsyncs: many at once.
	type link struct {
		repo string
		b    *blob
	}
	var links []link
	for _, b := range s.l.blobs {
		for i, repo := range b.repos {
			if i > 0 || present[b] {
				links = append(links, link{repo, b})
			}
		}
	}
	err = parallel(ctx, metadataJobs, len(links), func(ctx context.Context, i int) error {
		return s.link(ctx, links[i].repo, links[i].b)
	})
	if err != nil {
		return res, err
	}

	// then manifests (an index's children first) and tags, a repository's
	// images one after the other
	var repos [][]*image
	at := map[string]int{}
	for _, im := range s.l.images {
		i, ok := at[im.repo]
		if !ok {
			i = len(repos)
			at[im.repo] = i
			repos = append(repos, nil)
		}
		repos[i] = append(repos[i], im)
	}
	err = parallel(ctx, metadataJobs, len(repos), func(ctx context.Context, i int) error {
		for _, im := range repos[i] {
			if err := s.putImage(ctx, im); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// metadataJobs is how many links or manifests are written at once: they
// wait on fsyncs, not on the CPU.
const metadataJobs = 8

// writeAll copies the missing blobs, a few at a time.
func (s *storer) writeAll(ctx context.Context, blobs []*blob, pr *progress) (int64, error) {
	if len(blobs) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		next    int
		written int64
		first   error
		wg      sync.WaitGroup
	)
	take := func() *blob {
		mu.Lock()
		defer mu.Unlock()
		if first != nil || next == len(blobs) {
			return nil
		}
		next++
		return blobs[next-1]
	}
	for range min(s.o.jobs(), len(blobs)) {
		wg.Go(func() {
			buf := make([]byte, copyBuffer)
			for b := take(); b != nil; b = take() {
				n, err := s.write(ctx, b, buf, pr)
				mu.Lock()
				written += n
				if err != nil && first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return written, first
}

// write streams one blob from the layout into its first repository.
func (s *storer) write(ctx context.Context, b *blob, buf []byte, pr *progress) (int64, error) {
	repo, err := s.repository(ctx, b.repos[0])
	if err != nil {
		return 0, err
	}
	f, err := os.Open(b.path)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", b, err)
	}
	defer f.Close()
	w, err := repo.Blobs(ctx).Create(ctx)
	if err != nil {
		return 0, fmt.Errorf("registry storage %s: upload %s: %w", s.dir, b.digest, err)
	}
	wb := startWriteback(filepath.Join(s.dir, "docker/registry/v2/repositories", filepath.FromSlash(b.repos[0]), "_uploads", w.ID(), "data"))
	defer wb.close()
	committed, tried := false, false
	defer func() {
		if !committed {
			s.abandon(w, b.repos[0], tried)
		}
	}()
	var n int64
	for n <= b.size {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, rerr := f.Read(buf)
		if k > 0 {
			if _, err := w.Write(buf[:k]); err != nil {
				return n, fmt.Errorf("registry storage %s: write %s: %w", s.dir, b.digest, err)
			}
			n += int64(k)
			pr.add(int64(k))
			wb.advance(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, fmt.Errorf("%s: read: %w", b, rerr)
		}
	}
	if n != b.size {
		return n, fmt.Errorf("%s: read %d bytes, the manifest says %d: the layout changed while it was loaded", b, n, b.size)
	}
	tried = true
	_, err = w.Commit(ctx, ocispec.Descriptor{Digest: b.digest, Size: b.size, MediaType: b.mediaType})
	var bad distribution.ErrBlobInvalidDigest
	switch {
	case errors.As(err, &bad):
		return n, fmt.Errorf("%s: its content does not match its digest: the layout is damaged; verify the bundle again or rebuild it", b)
	case errors.Is(err, distribution.ErrBlobInvalidLength):
		return n, fmt.Errorf("%s: its size does not match the manifest: the layout is damaged", b)
	case err != nil:
		return n, fmt.Errorf("registry storage %s: commit %s: %w", s.dir, b, err)
	}
	committed = true
	return n, nil
}

// abandon removes a failed upload. distribution's writer cannot be
// cancelled once Commit has run, so then its upload directory is removed by
// its path (the storage layout's _uploads/<id>).
func (s *storer) abandon(w distribution.BlobWriter, repo string, committing bool) {
	ctx := context.Background()
	if !committing && w.Cancel(ctx) == nil {
		return
	}
	_ = s.drv.Delete(ctx, path.Join("/docker/registry/v2/repositories", repo, "_uploads", w.ID()))
}

func (s *storer) blobDataPath(d digest.Digest) string {
	return path.Join(s.dir, "docker/registry/v2/blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data")
}

func (s *storer) repository(ctx context.Context, repo string) (distribution.Repository, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	r, err := s.ns.Repository(ctx, named)
	if err != nil {
		return nil, fmt.Errorf("registry storage %s: repository %s: %w", s.dir, repo, err)
	}
	return r, nil
}

// link makes a blob the storage holds part of a repository, unless it is:
// a cross-repository mount given the blob's descriptor, which writes the
// link file and reads nothing.
func (s *storer) link(ctx context.Context, repo string, b *blob) error {
	r, err := s.repository(ctx, repo)
	if err != nil {
		return err
	}
	bs := r.Blobs(ctx)
	if _, err := bs.Stat(ctx, b.digest); err == nil {
		return nil
	} else if !errors.Is(err, distribution.ErrBlobUnknown) {
		return fmt.Errorf("registry storage %s: %s in %s: %w", s.dir, b.digest, repo, err)
	}
	from, err := reference.WithDigest(r.Named(), b.digest)
	if err != nil {
		return err
	}
	w, err := bs.Create(ctx, mountFrom{from: from, desc: ocispec.Descriptor{Digest: b.digest, Size: b.size, MediaType: b.mediaType}})
	var mounted distribution.ErrBlobMounted
	if errors.As(err, &mounted) {
		return nil
	}
	if err == nil {
		w.Cancel(ctx)
		err = errors.New("the storage started an upload instead of linking")
	}
	return fmt.Errorf("registry storage %s: link %s into %s: %w", s.dir, b.digest, repo, err)
}

// mountFrom is distribution's WithMountFrom with the blob's descriptor
// given, so the mount neither needs a source repository nor stats one.
type mountFrom struct {
	from reference.Canonical
	desc ocispec.Descriptor
}

func (m mountFrom) Apply(v any) error {
	o, ok := v.(*distribution.CreateOptions)
	if !ok {
		return fmt.Errorf("unexpected blob create options %T", v)
	}
	o.Mount.ShouldMount = true
	o.Mount.From = m.from
	o.Mount.Stat = &m.desc
	return nil
}

// putImage puts an image's manifests that the repository lacks, then tags
// it.
func (s *storer) putImage(ctx context.Context, im *image) error {
	r, err := s.repository(ctx, im.repo)
	if err != nil {
		return err
	}
	ms, err := r.Manifests(ctx)
	if err != nil {
		return fmt.Errorf("registry storage %s: %s: %w", s.dir, im.repo, err)
	}
	for _, m := range im.manifests {
		ok, err := ms.Exists(ctx, m.digest)
		if err != nil {
			return fmt.Errorf("registry storage %s: %s@%s: %w", s.dir, im.repo, m.digest, err)
		}
		if ok {
			continue
		}
		dm, _, err := distribution.UnmarshalManifest(m.mediaType, m.raw)
		if err != nil {
			return fmt.Errorf("image %s: manifest %s: %w", im.ref, m.digest, err)
		}
		got, err := ms.Put(ctx, dm)
		if err != nil {
			return fmt.Errorf("image %s: put manifest %s: %w", im.ref, m.digest, err)
		}
		if got != m.digest {
			return fmt.Errorf("image %s: the registry stored manifest %s as %s", im.ref, m.digest, got)
		}
	}
	if im.tag == "" {
		return nil
	}
	tags := r.Tags(ctx)
	if d, err := tags.Get(ctx, im.tag); err == nil && d.Digest == im.top.digest {
		return nil
	}
	if err := tags.Tag(ctx, im.tag, ocispec.Descriptor{Digest: im.top.digest, MediaType: im.top.mediaType}); err != nil {
		return fmt.Errorf("image %s: tag: %w", im.ref, err)
	}
	return nil
}
