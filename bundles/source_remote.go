package bundles

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// openAny turns src into a source, and says how to clean up after it.
func openAny(ctx context.Context, src string, o OpenOptions) (source, func(), error) {
	none := func() {}
	u, err := url.Parse(src)
	if err != nil || u.Scheme == "" || len(u.Scheme) == 1 {
		s, err := openSource(src)
		return s, none, err
	}
	switch {
	case u.Scheme == "file":
		s, err := openSource(u.Path)
		return s, none, err
	case (u.Scheme == "http" || u.Scheme == "https") && u.RawQuery == "" && strings.HasSuffix(u.Path, ArchiveExt):
		s, err := openHTTP(ctx, src)
		return s, none, err
	}
	// anything else go-getter understands is fetched first, beside staging
	// (the same disk it is going to) or in the temp dir
	dir := os.TempDir()
	if o.Staging != "" {
		dir = filepath.Dir(o.Staging)
	}
	tmp, err := os.MkdirTemp(dir, ".perch-bundle-fetch-")
	if err != nil {
		return nil, none, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	f := &fetcher{progress: o.Progress}
	dst := filepath.Join(tmp, "bundle"+ArchiveExt)
	if err := f.get(ctx, "bundle", src, dst, false); err != nil {
		cleanup()
		return nil, none, err
	}
	s, err := openSource(dst)
	if err != nil {
		cleanup()
		return nil, none, err
	}
	return s, cleanup, nil
}

func openHTTP(ctx context.Context, src string) (source, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", src, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", src, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("bundle %s: %s", src, resp.Status)
	}
	base := path.Base(req.URL.Path)
	return newTarSource(resp.Body, func() string { return base })
}
