package bundles

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	getter "github.com/hashicorp/go-getter/v2"
)

// ProgressFunc receives bytes done of total (0 when unknown) for long work.
type ProgressFunc func(what string, done, total int64)

func (p ProgressFunc) report(what string, done, total int64) {
	if p != nil {
		p(what, done, total)
	}
}

// fetcher fetches sources with go-getter, limited to what a bundle needs:
// local files (copied, never symlinked to a stick that will be pulled out)
// and http(s) with ?checksum=. Archives are kept as they are: a chart .tgz
// or an airgap .tar.zst is content, not something to unpack.
type fetcher struct {
	pwd      string
	progress ProgressFunc
}

func (f *fetcher) client() *getter.Client {
	return &getter.Client{
		Getters: []getter.Getter{
			&getter.FileGetter{},
			&getter.HttpGetter{
				Client:              &http.Client{Timeout: 0, Transport: http.DefaultTransport},
				Netrc:               true,
				DoNotCheckHeadFirst: true,
				ReadTimeout:         5 * time.Minute,
			},
		},
		Decompressors:   map[string]getter.Decompressor{},
		DisableSymlinks: true,
	}
}

// get fetches src to dst: a file, or a directory when dir is set.
func (f *fetcher) get(ctx context.Context, what, src, dst string, dir bool) error {
	mode := getter.ModeFile
	if dir {
		mode = getter.ModeAny
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	req := &getter.Request{
		Src:              src,
		Dst:              dst,
		Pwd:              f.pwd,
		GetMode:          mode,
		Copy:             true,
		DisableSymlinks:  true,
		ProgressListener: progressTracker{what: what, fn: f.progress},
	}
	if _, err := f.client().Get(ctx, req); err != nil {
		return fmt.Errorf("%s: fetch %s: %w", what, src, err)
	}
	return nil
}

type progressTracker struct {
	what string
	fn   ProgressFunc
}

func (t progressTracker) TrackProgress(_ string, current, total int64, stream io.ReadCloser) io.ReadCloser {
	if t.fn == nil {
		return stream
	}
	return &countingReader{r: stream, done: current, total: total, what: t.what, fn: t.fn}
}

// countingReader reports progress as bytes pass through it.
type countingReader struct {
	r           io.ReadCloser
	done, total int64
	what        string
	fn          ProgressFunc
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.done += int64(n)
	if n > 0 || err == io.EOF {
		c.fn(c.what, c.done, max(c.total, c.done))
	}
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }
