package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/perchedge/perch/airgap/load"
	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/engine"
)

// registryLoad is `perch registry load`: where the images come from, where
// they go, and how to reach a remote registry.
type registryLoad struct {
	open     openFlags
	rep      reporting
	dir      string
	to       string
	username string
	passFile string
	caFile   string
	skipTLS  bool
}

func newRegistryLoadCmd(s *streams) *cobra.Command {
	var l registryLoad
	cmd := &cobra.Command{
		Use:   "load SRC (--dir DIR | --to URL)",
		Short: "Load a bundle's images into the appliance registry, or push them to another",
		Long: "SRC is a bundle (a directory, a .tar.zst, the first part of a split archive,\n" +
			"or a URL), verified in full before any image is loaded; or, with\n" +
			"--insecure-skip-signature, a plain OCI image layout directory.\n\n" +
			"--dir DIR writes the images straight into the storage of `perch registry\n" +
			"serve --dir DIR` (it may be running): each blob checked and written once,\n" +
			"what is there skipped, manifests and tags last. --to https://HOST:PORT\n" +
			"pushes them to another registry instead, each blob uploaded once.\n" +
			"Either way every image keeps its upstream name and digest, under its\n" +
			"registry's host: docker.io/library/nginx:1.27 is REGISTRY/docker.io/library/nginx:1.27,\n" +
			"which is where the nodes' mirror configuration looks for it.",
		Args: exactArgs(1, "SRC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return l.run(cmd.Context(), s, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&l.dir, "dir", "", "the registry storage `DIR` to load into (what perch registry serve --dir serves)")
	f.StringVar(&l.to, "to", "", "push to the registry at `URL` instead: https://HOST:PORT[/PREFIX]")
	f.StringVar(&l.username, "username", "", "`USER` for --to")
	f.StringVar(&l.passFile, "password-file", "", "`FILE` holding the password for --to")
	f.StringVar(&l.caFile, "ca-file", "", "CA certificate `FILE` (PEM) the --to registry's certificate chains to")
	f.BoolVar(&l.skipTLS, "tls-skip-verify", false, "do not check the --to registry's certificate (tests only)")
	l.open.register(cmd)
	l.rep.flags(cmd)
	return cmd
}

func (l *registryLoad) run(ctx context.Context, s *streams, src string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if (l.dir == "") == (l.to == "") {
		return &usageError{errors.New("give exactly one of --dir DIR (the registry's storage) or --to URL (a registry to push to)")}
	}
	if l.to == "" && (l.username != "" || l.passFile != "" || l.caFile != "" || l.skipTLS) {
		return &usageError{errors.New("--username, --password-file, --ca-file and --tls-skip-verify are for --to")}
	}
	if (l.username == "") != (l.passFile == "") {
		return &usageError{errors.New("--username and --password-file go together")}
	}
	if l.to != "" {
		if err := load.CheckTarget(l.to); err != nil {
			return &usageError{err}
		}
	}
	var password string
	if l.passFile != "" {
		b, err := os.ReadFile(l.passFile)
		if err != nil {
			return &usageError{fmt.Errorf("--password-file: %w; give the file that holds the --to registry's password", err)}
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	r := l.rep.reporter(s, "registry-load")
	// distribution logs through logrus; every failure comes back as an
	// error naming the blob, so its lines would only say it twice
	std := logrus.StandardLogger()
	prev := std.Out
	std.SetOutput(io.Discard)
	defer std.SetOutput(prev)

	layoutDir, cleanup, err := l.source(ctx, r, src)
	if err != nil {
		return err
	}
	defer cleanup()
	if layoutDir == "" {
		r.Logf("the bundle holds no images; nothing to load")
		return nil
	}

	t0 := time.Now()
	var res load.Result
	where := l.dir
	if l.dir != "" {
		res, err = load.ToStorage(ctx, layoutDir, l.dir, load.Options{Progress: r.Progress})
	} else {
		o := load.RemoteOptions{Options: load.Options{Progress: r.Progress}, Username: l.username, Password: password, CAFile: l.caFile, Insecure: l.skipTLS}
		where = l.to
		res, err = load.ToRemote(ctx, layoutDir, l.to, o)
	}
	if err != nil {
		return err
	}
	took := time.Since(t0).Round(time.Millisecond)
	if res.Written == 0 {
		r.Logf("all %d images already in %s (%d blobs, %s); nothing written, checked in %s", res.Images, where, res.Blobs, engine.Bytes(res.Bytes), took)
		return nil
	}
	rate := ""
	if r := engine.RateOf(res.Written, took); r > 0 {
		rate = fmt.Sprintf(", %s/s", engine.Bytes(int64(r)))
	}
	r.Logf("loaded %d images into %s: %d blobs, %d already there, %s written in %s%s",
		res.Images, where, res.Blobs, res.Skipped, engine.Bytes(res.Written), took, rate)
	return nil
}

// source verifies SRC and returns the OCI layout to load from ("" when the
// bundle has no images), and what to remove afterwards. A bundle directory
// is verified where it is and loaded from there; any other bundle is staged
// beside the registry storage (the same disk) and removed after the load.
func (l *registryLoad) source(ctx context.Context, r *engine.Reporter, src string) (string, func(), error) {
	none := func() {}
	local := bundles.LocalDir(src)
	if local != "" && isPlainLayout(local) {
		if !l.open.insecure {
			return "", none, &usageError{fmt.Errorf("%s is a plain OCI image layout, not a signed bundle; pass --insecure-skip-signature to load it unverified", src)}
		}
		r.Logf("warning: %s is a plain OCI layout; loading it unverified (each blob is still checked against its digest)", src)
		return local, none, nil
	}
	o, err := l.open.options()
	if err != nil {
		return "", none, err
	}
	o.Progress = r.Progress
	so := bundles.StageOptions{OpenOptions: o, InPlace: true}
	if local == "" && l.dir != "" {
		if err := os.MkdirAll(l.dir, 0o755); err != nil {
			return "", none, fmt.Errorf("registry storage: %w", err)
		}
		so.Parent = filepath.Dir(filepath.Clean(absPath(l.dir)))
	}
	staged, err := bundles.Stage(ctx, src, so)
	if err != nil {
		return "", none, err
	}
	return staged.ImagesDir(), func() { staged.Close() }, nil
}

// isPlainLayout: an OCI image layout that is not a bundle's directory.
func isPlainLayout(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, bundles.ManifestName)); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "oci-layout"))
	return err == nil
}
