package bundles

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"sigs.k8s.io/yaml"
)

// Spec is a BundleSpec: what `perch bundle build` puts in a bundle. Sources
// are go-getter sources (a path, file://, http(s):// with ?checksum=).
type Spec struct {
	APIVersion       string      `json:"apiVersion"`
	Kind             string      `json:"kind"`
	Name             string      `json:"name"`
	Version          string      `json:"version"`
	Arch             string      `json:"arch"`
	K3s              SpecK3s     `json:"k3s"`
	Charts           []SpecChart `json:"charts,omitempty"`
	Images           []string    `json:"images,omitempty"`
	ImagesFromCharts bool        `json:"imagesFromCharts,omitempty"`
	Files            []SpecFile  `json:"files,omitempty"`
}

// SpecK3s names where the k3s inputs come from.
type SpecK3s struct {
	Binary       string `json:"binary"`
	AirgapImages string `json:"airgapImages,omitempty"`
}

// SpecChart is a chart archive (.tgz) or a chart directory.
type SpecChart struct {
	Name   string `json:"name"`
	Source string `json:"source"`
}

// SpecFile is any other file, placed at dest under files/.
type SpecFile struct {
	Source string `json:"source"`
	Dest   string `json:"dest"`
}

const SpecKind = "BundleSpec"

// ErrInvalidInput marks a build refused for what it was given (the spec,
// its sources, --out) rather than for something that failed on the way:
// the person can fix it, and the CLI exits 2.
var ErrInvalidInput = errors.New("invalid input")

type inputError struct{ err error }

func (e *inputError) Error() string        { return e.err.Error() }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == ErrInvalidInput }

func invalid(format string, a ...any) error { return &inputError{fmt.Errorf(format, a...)} }

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// versions end up in file names and image tags
	versionRe = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]{0,127}$`)
)

// nameProblem and versionProblem are the rules for what names a bundle on
// disk (NAME-VERSION); a spec and a signed manifest both obey them.
func nameProblem(n string) string {
	if dnsLabel.MatchString(n) {
		return ""
	}
	return fmt.Sprintf("%q must be lowercase letters, digits and '-' (it names the bundle on disk)", n)
}

func versionProblem(v string) string {
	if versionRe.MatchString(v) {
		return ""
	}
	return fmt.Sprintf("%q must be letters, digits, '.', '+', '_' or '-', such as 1.4.0", v)
}

// LoadSpec reads a BundleSpec file. Relative local sources in it are
// relative to the file's directory.
func LoadSpec(file string) (*Spec, error) {
	raw, err := ReadSmall(file, maxSpecSize)
	if err != nil {
		return nil, invalid("bundle spec: %w", err)
	}
	return parseSpec(raw, file)
}

// maxSpecSize bounds what a spec may make the YAML decoder hold: a real
// one is a few KiB.
const maxSpecSize = 1 << 20

func parseSpec(raw []byte, file string) (*Spec, error) {
	if len(raw) > maxSpecSize {
		return nil, invalid("bundle spec %s: larger than %d bytes; is this a BundleSpec?", file, maxSpecSize)
	}
	var s Spec
	if err := yaml.UnmarshalStrict(raw, &s); err != nil {
		return nil, invalid("bundle spec %s: %v", file, strings.TrimPrefix(err.Error(), "error unmarshaling JSON: while decoding JSON: "))
	}
	if err := s.Validate(); err != nil {
		return nil, invalid("bundle spec %s:\n%w", file, err)
	}
	return &s, nil
}

// Validate lists every problem at once, each with its field.
func (s *Spec) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("  %s: %s", field, fmt.Sprintf(format, a...)))
	}
	if s.APIVersion != APIVersion {
		bad("apiVersion", "is %q; set it to %s", s.APIVersion, APIVersion)
	}
	if s.Kind != SpecKind {
		bad("kind", "is %q; set it to %s", s.Kind, SpecKind)
	}
	if p := nameProblem(s.Name); p != "" {
		bad("name", "%s", p)
	}
	if p := versionProblem(s.Version); p != "" {
		bad("version", "%s", p)
	}
	if !validArch(s.Arch) {
		bad("arch", "%q must be amd64 or arm64", s.Arch)
	}
	if s.K3s.Binary == "" {
		bad("k3s.binary", "is required: a path or URL of the k3s binary for %s", s.Arch)
	}
	names := map[string]bool{}
	for i, c := range s.Charts {
		f := fmt.Sprintf("charts[%d]", i)
		if !dnsLabel.MatchString(c.Name) {
			bad(f+".name", "%q must be the chart's name: lowercase letters, digits and '-'", c.Name)
		}
		if names[c.Name] {
			bad(f+".name", "%q is listed twice", c.Name)
		}
		names[c.Name] = true
		if c.Source == "" {
			bad(f+".source", "is required: a .tgz or chart directory, path or URL")
		}
	}
	seen := map[string]bool{}
	for i, ref := range s.Images {
		f := fmt.Sprintf("images[%d]", i)
		if _, err := name.ParseReference(ref, name.StrictValidation); err != nil {
			if _, err2 := name.ParseReference(ref); err2 != nil {
				bad(f, "%q is not an image reference: %v", ref, err2)
				continue
			}
		}
		if seen[ref] {
			bad(f, "%q is listed twice", ref)
		}
		seen[ref] = true
	}
	dests := map[string]destUse{}
	for i, fl := range s.Files {
		f := fmt.Sprintf("files[%d]", i)
		if fl.Source == "" {
			bad(f+".source", "is required")
		}
		switch {
		case slices.Contains(strings.Split(fl.Dest, "/"), "."):
			bad(f+".dest", "%q has a \".\" element; leave it out (models/a, not models/./a)", fl.Dest)
		case checkPath(fl.Dest) != nil || strings.HasSuffix(fl.Dest, "/"):
			bad(f+".dest", "%q must be a relative file path without \"..\", such as models/model.onnx", fl.Dest)
		default:
			if p := claimDest(dests, f+".dest", fl.Dest); p != "" {
				bad(f+".dest", "%s", p)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &inputError{errors.Join(errs...)}
}

// destUse is a path under files/ that a dest takes: the file itself, or a
// directory above it, as the first dest to take it spells it.
type destUse struct {
	spelling string
	field    string // the dest that took it
	dest     string
	file     bool
}

// claimDest takes dest and the directories above it in used, which is
// keyed by lowercase path: FAT32 and exFAT sticks fold case, so two paths
// that differ only in case are one there. It says what is wrong, or "".
func claimDest(used map[string]destUse, field, dest string) string {
	elems := strings.Split(dest, "/")
	for n := 1; n <= len(elems); n++ {
		q, isFile := strings.Join(elems[:n], "/"), n == len(elems)
		u, ok := used[strings.ToLower(q)]
		if !ok {
			used[strings.ToLower(q)] = destUse{spelling: q, field: field, dest: dest, file: isFile}
			continue
		}
		switch {
		case u.spelling != q && isFile && u.file:
			return fmt.Sprintf("%q differs from %s %q only in case; FAT32 and exFAT sticks would hold one file for both", dest, u.field, u.dest)
		case u.spelling != q:
			return fmt.Sprintf("%q and %s %q spell %q in different cases; FAT32 and exFAT sticks would make them one", dest, u.field, u.dest, q)
		case isFile && u.file:
			return fmt.Sprintf("%q is used twice", dest)
		case isFile:
			return fmt.Sprintf("%q is a directory of %s %q; a path cannot be both a file and a directory", dest, u.field, u.dest)
		case u.file:
			return fmt.Sprintf("%q is inside %s %q, which is a file", dest, u.field, u.dest)
		}
	}
	return ""
}

// specSource is one source the spec names, with its field for errors.
type specSource struct{ field, src string }

func (s *Spec) sources() []specSource {
	out := []specSource{{"k3s.binary", s.K3s.Binary}}
	if s.K3s.AirgapImages != "" {
		out = append(out, specSource{"k3s.airgapImages", s.K3s.AirgapImages})
	}
	for i, c := range s.Charts {
		out = append(out, specSource{fmt.Sprintf("charts[%d].source", i), c.Source})
	}
	for i, f := range s.Files {
		out = append(out, specSource{fmt.Sprintf("files[%d].source", i), f.Source})
	}
	return out
}

// forcedGetter is go-getter's "getter::" prefix, which picks the getter.
var forcedGetter = regexp.MustCompile(`^([A-Za-z0-9]+)::(.+)$`)

// checkSources refuses, before anything is fetched, a source whose content
// nobody vouches for: a download without a checksum (the bundle's
// signature would vouch for whatever the network, or a proxy on it, sent),
// and a local one with a link or a special file in it (go-getter follows
// links: one to /etc/shadow put the file into the signed chart).
func (s *Spec) checkSources(allowUnverified bool, pwd string) error {
	var errs []error
	for _, src := range s.sources() {
		raw, scheme := src.src, ""
		if m := forcedGetter.FindStringSubmatch(raw); m != nil {
			scheme, raw = m[1], m[2]
		}
		u, err := url.Parse(raw)
		if err != nil {
			continue // go-getter names what is wrong with it
		}
		if scheme == "" && len(u.Scheme) > 1 {
			scheme = u.Scheme
		}
		switch strings.ToLower(scheme) {
		case "http", "https":
			if u.Query().Get("checksum") == "" && !allowUnverified {
				errs = append(errs, fmt.Errorf("  %s: %s has no checksum, and a download without one is whatever the server (or anything between) sent, which the bundle's signature would then vouch for; add ?checksum=sha256:HEX (or checksum=file:URL of a sums file), or pass --allow-unverified-sources", src.field, u.Redacted()))
			}
		case "", "file":
			p := u.Path
			if !filepath.IsAbs(p) {
				p = filepath.Join(pwd, p)
			}
			if err := regularTree(p); err != nil {
				errs = append(errs, fmt.Errorf("  %s: %w", src.field, err))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &inputError{errors.Join(errs...)}
}

// regularTree refuses p unless it is a regular file, or a directory of
// nothing but regular files and directories. A missing p is go-getter's to
// report.
func regularTree(p string) error {
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t&fs.ModeSymlink != 0:
			to, _ := os.Readlink(q)
			return fmt.Errorf("%s is a symlink (to %s); a bundle takes regular files and directories only: put the file itself there, or name the link's target", q, to)
		case !t.IsRegular() && !t.IsDir():
			return fmt.Errorf("%s is not a regular file or directory (%v); a bundle takes regular files and directories only", q, t)
		}
		return nil
	})
}
