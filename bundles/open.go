package bundles

import (
	"context"
	"errors"
	"fmt"
	"os"

	"aead.dev/minisign"
)

// ErrRejected is every reason a bundle is refused.
var ErrRejected = errors.New("bundle rejected")

// RejectError names the file that made a bundle unacceptable.
type RejectError struct {
	Source string // the bundle
	File   string // the entry at fault, as it is named in the bundle
	Reason string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("bundle %s rejected: %s: %s", e.Source, e.File, e.Reason)
}

func (e *RejectError) Unwrap() error { return ErrRejected }

// OpenOptions says what a bundle must be to be accepted.
type OpenOptions struct {
	// PublicKey is the key the manifest must be signed with.
	PublicKey *minisign.PublicKey
	// InsecureSkipSignature accepts a bundle without a (valid) signature.
	InsecureSkipSignature bool
	// Arch, when set, must be the bundle's arch.
	Arch string
	// Staging receives the verified bundle; it must not exist. Empty
	// verifies without writing anything.
	Staging  string
	Progress ProgressFunc
}

// Opened is a verified bundle.
type Opened struct {
	Manifest    *Manifest
	ManifestRaw []byte
	Signed      bool
	// Dir holds the bundle when it was staged, or is the directory Stage
	// verified in place.
	Dir string
	// Comment is the signature's trusted comment.
	Comment string
}

// Open verifies a bundle in one pass — every byte read once, hashed while
// it is copied to staging — and returns it only if every file is exactly
// what the signed manifest says. On any failure nothing is left in staging.
//
// src is a directory, an archive, the first part of a split archive, a
// file:// URL, or an http(s) URL of an archive (streamed, not downloaded
// first; a URL with go-getter options such as ?checksum= is fetched first).
func Open(ctx context.Context, src string, o OpenOptions) (op *Opened, err error) {
	return open(ctx, src, o, false)
}

// ReadManifest reads and checks only the manifest and its signature: what
// inspect and plan need, at the cost of two small reads.
func ReadManifest(ctx context.Context, src string, o OpenOptions) (*Opened, error) {
	o.Staging = ""
	return open(ctx, src, o, true)
}

func open(ctx context.Context, src string, o OpenOptions, manifestOnly bool) (op *Opened, err error) {
	if o.PublicKey == nil && !o.InsecureSkipSignature {
		return nil, fmt.Errorf("bundle %s: no public key to verify it with; pass --pubkey (or set bundle.publicKey), or --insecure-skip-signature for an unsigned test bundle", src)
	}
	s, cleanup, err := openAny(ctx, src, o)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	defer s.Close()
	v := &verifier{src: src, s: s, o: o, manifestOnly: manifestOnly}
	if o.Staging != "" {
		if err := os.Mkdir(o.Staging, 0o700); err != nil {
			return nil, fmt.Errorf("bundle staging: %w", err)
		}
		if v.root, err = os.OpenRoot(o.Staging); err != nil {
			os.RemoveAll(o.Staging)
			return nil, err
		}
		defer func() {
			v.root.Close()
			if err != nil {
				os.RemoveAll(o.Staging)
			}
		}()
	}
	return v.run(ctx)
}
