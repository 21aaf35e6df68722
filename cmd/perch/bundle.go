package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/manifests/images"
)

func newBundleCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{Use: "bundle", Short: "Air-gap bundles: build, verify, inspect, signing keys"}
	cmd.AddCommand(newBundleKeygenCmd(s), newBundleBuildCmd(s), newBundleImagesCmd(s), newBundleVerifyCmd(s), newBundleInspectCmd(s))
	return cmd
}

func newBundleKeygenCmd(s *streams) *cobra.Command {
	var out string
	keygen := &cobra.Command{
		Use:   "keygen --out NAME",
		Short: "Make a bundle signing key pair: NAME.key (secret, 0600) and NAME.pub",
		Long: "Make an ed25519 key pair in minisign's format. Keep NAME.key on the build\n" +
			"machine; give NAME.pub to every site (bundle.publicKey). A stock\n" +
			"`minisign -V -p NAME.pub` verifies what perch signs.",
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return &usageError{fmt.Errorf("--out NAME is required")}
			}
			pub, key, err := bundles.GenerateKey(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "secret key: %s (keep it off the sites)\npublic key: %s (set bundle.publicKey to it)\n", key, pub)
			return nil
		},
	}
	keygen.Flags().StringVar(&out, "out", "", "path and name of the key pair, without extension")
	return keygen
}

// reporting is the --output flag of bundle commands: progress and log lines
// as text, or JSON events, the same stream install writes.
type reporting struct{ output output }

func (r *reporting) flags(c *cobra.Command) { addOutput(c.Flags(), &r.output, "events") }

func (r *reporting) reporter(s *streams, step string) *engine.Reporter {
	if r.output.json() {
		return engine.NewReporter(step, engine.JSONPrinter(s.out))
	}
	return engine.NewReporter(step, engine.TextPrinter(s.err))
}

func newBundleBuildCmd(s *streams) *cobra.Command {
	var spec, out, key, split string
	var mirrors []string
	var allowUnverified bool
	var rep reporting
	var sf siteFlags
	cmd := &cobra.Command{
		Use:   "build --spec SPEC --out PATH [--key NAME.key] [--split SIZE] [--config APPLIANCE ...]",
		Short: "Build a signed air-gap bundle from a BundleSpec (on a connected machine)",
		Long: "Fetch the k3s binary, charts, images (for the spec's arch) and files the spec\n" +
			"names and write them as one bundle with a signed manifest. PATH ending in\n" +
			".tar.zst gives one archive (with --split SIZE, numbered parts such as\n" +
			"PATH.001 for FAT32 sticks: --split 3900MiB); any other PATH a directory\n" +
			"(one that exists must be empty). Other archive names (.tar.gz, .zip) are\n" +
			"refused, and a failed build removes what it made. Every image the appliance\n" +
			"pulls is found as `perch bundle images` lists it; with --config, a bundle\n" +
			"that misses one is refused (--allow-missing IMAGE lets it).",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if spec == "" || out == "" {
				return &usageError{fmt.Errorf("--spec and --out are required")}
			}
			r := rep.reporter(s, "bundle-build")
			var limit int64
			if split != "" {
				var err error
				if limit, err = bundles.ParseSize(split); err != nil {
					return &usageError{fmt.Errorf("--split: %w", err)}
				}
			}
			mm, err := bundles.ParseMirrors(mirrors)
			if err != nil {
				return &usageError{fmt.Errorf("--mirror: %w", err)}
			}
			sites, gate, err := sf.sites(s)
			if err != nil {
				return err
			}
			sp, err := bundles.LoadSpec(spec)
			if err != nil {
				return inputError(err)
			}
			o := bundles.BuildOptions{Out: out, Split: limit, Pwd: filepath.Dir(absPath(spec)), Mirrors: mm, Progress: r.Progress, Log: r.Logf, BuiltBy: version,
				AllowUnverifiedSources: allowUnverified, Needs: images.Func(sites), Gate: gate, AllowMissing: sf.allowMissing}
			if key != "" {
				k, err := bundles.LoadPrivateKey(key)
				if err != nil {
					return err
				}
				o.Key = &k
			} else {
				r.Logf("warning: no --key; the bundle is unsigned and sites will refuse it unless told --insecure-skip-signature")
			}
			res, err := bundles.Build(cmd.Context(), sp, o)
			if err != nil {
				return inputError(err)
			}
			m := res.Manifest
			r.Logf("built %s %s (%s): %d files, %s, %d images in %d blobs (%s saved by shared layers)",
				m.Name, m.Version, m.Arch, len(m.Files), engine.Bytes(m.Size()), len(m.Images), m.Layout.Blobs, engine.Bytes(m.Layout.Saved()))
			for _, p := range res.Paths {
				if !rep.output.json() {
					fmt.Fprintln(s.out, p)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&spec, "spec", "", "BundleSpec file (YAML or JSON)")
	cmd.Flags().StringVar(&out, "out", "", "bundle to write: a directory, or NAME.tar.zst")
	cmd.Flags().StringVar(&key, "key", "", "signing key from `perch bundle keygen`")
	cmd.Flags().StringVar(&split, "split", "", "cut the archive into parts of this size, such as 3900MiB")
	cmd.Flags().BoolVar(&allowUnverified, "allow-unverified-sources", false, "accept http(s) sources without ?checksum= (the signature then vouches for whatever was downloaded)")
	cmd.Flags().StringArrayVar(&mirrors, "mirror", nil, "pull a registry's images from a mirror, REGISTRY=MIRROR[/PATH] (repeatable); the bundle keeps the upstream names")
	sf.register(cmd)
	rep.flags(cmd)
	return cmd
}

// inputError makes what the bundles package refuses as bad input (the
// spec, its sources, --out) a usage error, so it exits 2.
func inputError(err error) error {
	if errors.Is(err, bundles.ErrInvalidInput) {
		return &usageError{err}
	}
	return err
}

// openFlags are how verify, inspect and install accept a bundle.
type openFlags struct {
	pubkey   string
	insecure bool
	arch     string
}

func (f *openFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.pubkey, "pubkey", "", "public key the bundle must be signed with (NAME.pub)")
	c.Flags().BoolVar(&f.insecure, "insecure-skip-signature", false, "accept an unsigned bundle or one signed by another key (tests only)")
	c.Flags().StringVar(&f.arch, "arch", runtime.GOARCH, "architecture the bundle must be for")
}

func (f *openFlags) options() (bundles.OpenOptions, error) {
	o := bundles.OpenOptions{InsecureSkipSignature: f.insecure, Arch: f.arch}
	if f.pubkey != "" {
		k, err := bundles.LoadPublicKey(f.pubkey)
		if err != nil {
			return o, &usageError{err}
		}
		o.PublicKey = &k
	}
	if o.PublicKey == nil && !o.InsecureSkipSignature {
		return o, &usageError{fmt.Errorf("--pubkey NAME.pub is required (or --insecure-skip-signature for a test bundle)")}
	}
	return o, nil
}

func newBundleVerifyCmd(s *streams) *cobra.Command {
	var of openFlags
	var rep reporting
	cmd := &cobra.Command{
		Use:   "verify SRC --pubkey NAME.pub",
		Short: "Check a bundle's signature and every byte of it, writing nothing",
		Long: "SRC is a bundle directory, a .tar.zst, the first part (.001) of a split\n" +
			"archive, or a URL. Exit 0 only if every file is exactly what the signed\n" +
			"manifest lists; otherwise the error names the file at fault.",
		Args: exactArgs(1, "SRC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := of.options()
			if err != nil {
				return err
			}
			r := rep.reporter(s, "bundle-verify")
			o.Progress = r.Progress
			op, err := openBundle(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			m := op.Manifest
			how := "signature good (" + op.Comment + ")"
			if !op.Signed {
				how = "SIGNATURE NOT CHECKED"
			}
			r.Logf("%s %s %s: %d files, %s verified; %s", m.Name, m.Version, m.Arch, len(m.Files), engine.Bytes(m.Size()), how)
			return nil
		},
	}
	of.register(cmd)
	rep.flags(cmd)
	return cmd
}

func newBundleInspectCmd(s *streams) *cobra.Command {
	var of openFlags
	var format output
	var full bool
	cmd := &cobra.Command{
		Use:   "inspect SRC",
		Short: "Show what a bundle holds: k3s, images, charts, sizes, bytes saved by shared layers",
		Long: "Reads the signed manifest only (checking its signature when --pubkey is\n" +
			"given); `perch bundle verify` checks every byte, --verify does both.",
		Args: exactArgs(1, "SRC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := bundles.OpenOptions{InsecureSkipSignature: of.pubkey == "" || of.insecure}
			if of.pubkey != "" {
				k, err := bundles.LoadPublicKey(of.pubkey)
				if err != nil {
					return err
				}
				o.PublicKey = &k
			}
			var m *bundles.Manifest
			var signed bool
			if full {
				op, err := openBundle(cmd.Context(), args[0], o)
				if err != nil {
					return err
				}
				m, signed = op.Manifest, op.Signed
			} else {
				op, err := bundles.ReadManifest(cmd.Context(), args[0], o)
				if err != nil {
					return err
				}
				m, signed = op.Manifest, op.Signed
			}
			if format.json() {
				return writeJSON(s.out, m)
			}
			printManifest(s.out, m, signed, of.pubkey != "")
			return nil
		},
	}
	cmd.Flags().StringVar(&of.pubkey, "pubkey", "", "check the manifest's signature with this key")
	cmd.Flags().BoolVar(&full, "verify", false, "also verify every byte, as bundle verify does")
	addOutput(cmd.Flags(), &format, "the manifest")
	return cmd
}

func printManifest(w io.Writer, m *bundles.Manifest, signed, checked bool) {
	sig := "signature not checked (pass --pubkey)"
	if checked && signed {
		sig = "signature good"
	}
	fmt.Fprintf(w, "bundle   %s %s (%s), %s\n", m.Name, m.Version, m.Arch, sig)
	fmt.Fprintf(w, "k3s      %s\n", m.K3s.Version)
	fmt.Fprintf(w, "size     %s in %d files\n", engine.Bytes(m.Size()), len(m.Files))
	fmt.Fprintf(w, "images   %d in %d blobs: %s stored, %s if stored apart (%s saved by shared layers)\n",
		len(m.Images), m.Layout.Blobs, engine.Bytes(m.Layout.Bytes), engine.Bytes(m.Layout.ImageBytes), engine.Bytes(m.Layout.Saved()))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, im := range m.Images {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", im.Reference, shortDigest(im.Digest), engine.Bytes(im.Size))
	}
	tw.Flush()
	fmt.Fprintf(w, "charts   %d\n", len(m.Charts))
	for _, c := range m.Charts {
		f, _ := m.File(c.Path)
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d images\n", c.Name, c.Version, engine.Bytes(f.Size), len(c.Images))
	}
	tw.Flush()
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// openBundle verifies a bundle from a path or a URL without keeping it.
func openBundle(ctx context.Context, src string, o bundles.OpenOptions) (*bundles.Opened, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	return bundles.Open(ctx, src, o)
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{fmt.Errorf("%s takes %s, got %d arguments", cmd.CommandPath(), names, len(args))}
		}
		return nil
	}
}
