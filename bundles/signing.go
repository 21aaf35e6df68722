// Package bundles holds the air-gap bundle: its keys and signatures for now,
// its spec, build, format and verification as they land.
package bundles

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"aead.dev/minisign"
)

// Bundles are signed in minisign's file format (ed25519 over a BLAKE2b
// prehash, "ED"), so an operator can check one with a stock `minisign -V`
// and no Perch at hand.

// KeyPasswordEnv holds the password of an encrypted signing key (one made by
// `minisign -G` without -W); keys from `perch bundle keygen` are not
// encrypted and live at 0600, as `minisign -G -W` makes them.
const KeyPasswordEnv = "PERCH_BUNDLE_KEY_PASSWORD"

// GenerateKey writes NAME.key (0600) and NAME.pub. It never overwrites: a
// lost signing key means every site must be given a new public key.
func GenerateKey(name string) (pubPath, keyPath string, err error) {
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	keyText, err := priv.MarshalText()
	if err != nil {
		return "", "", err
	}
	pubText, err := pub.MarshalText()
	if err != nil {
		return "", "", err
	}
	keyPath, pubPath = name+".key", name+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists; choose another --out name or move the old key away first", p)
		}
	}
	if err := writeNew(keyPath, append(bytes.TrimSpace(keyText), '\n'), 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(pubPath, append(bytes.TrimSpace(pubText), '\n'), 0o644); err != nil {
		os.Remove(keyPath)
		return "", "", err
	}
	return pubPath, keyPath, nil
}

// writeNew writes a file that must not exist yet, fsynced before it is
// visible under its name.
func writeNew(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// a hard link fails if path exists, unlike rename: never overwrite
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoadPrivateKey reads a signing key, decrypting it with $PERCH_BUNDLE_KEY_PASSWORD
// when minisign encrypted it.
func LoadPrivateKey(path string) (minisign.PrivateKey, error) {
	raw, err := ReadSmall(path, maxKeySize)
	if err != nil {
		return minisign.PrivateKey{}, fmt.Errorf("signing key: %w", err)
	}
	// checked before the mode: a public key is world-readable by design,
	// and "chmod 600 it" would send its owner the wrong way
	if _, ok := parsePublicKey(raw); ok {
		return minisign.PrivateKey{}, fmt.Errorf("signing key %s is a public key, which only verifies; sign with the secret key perch bundle keygen wrote beside it (%s)",
			path, strings.TrimSuffix(path, ".pub")+".key")
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return minisign.PrivateKey{}, fmt.Errorf("signing key %s is readable by others (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	var key minisign.PrivateKey
	if minisign.IsEncrypted(raw) {
		pw, ok := os.LookupEnv(KeyPasswordEnv)
		if !ok {
			return key, fmt.Errorf("signing key %s is encrypted; set %s to its password", path, KeyPasswordEnv)
		}
		if key, err = minisign.DecryptKey(pw, raw); err != nil {
			return key, fmt.Errorf("signing key %s: %w (is %s right?)", path, err, KeyPasswordEnv)
		}
		return key, nil
	}
	if err := key.UnmarshalText(raw); err != nil {
		return key, fmt.Errorf("signing key %s is not a minisign secret key: %w", path, err)
	}
	return key, nil
}

// LoadPublicKey reads a public key file (NAME.pub or minisign.pub).
func LoadPublicKey(path string) (minisign.PublicKey, error) {
	raw, err := ReadSmall(path, maxKeySize)
	if err != nil {
		return minisign.PublicKey{}, fmt.Errorf("public key: %w; pass the .pub file made by perch bundle keygen", err)
	}
	k, ok := parsePublicKey(raw)
	if !ok {
		return k, fmt.Errorf("public key %s is not a minisign public key; pass the .pub file made by perch bundle keygen", path)
	}
	return k, nil
}

// Sign returns a detached signature of message. The trusted comment is
// signed too, so what it says (bundle name, version) cannot be altered.
func Sign(key minisign.PrivateKey, message io.Reader, trusted string) ([]byte, error) {
	r := minisign.NewReader(message)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	if trusted == "" {
		trusted = "timestamp:" + strconv.FormatInt(time.Now().Unix(), 10)
	}
	return r.SignWithComments(key, trusted, fmt.Sprintf("signature from perch key %X", key.ID())), nil
}

// ErrSignature is every reason a signature does not vouch for a bundle.
var ErrSignature = errors.New("bad signature")

// Verify checks a detached signature; name is the signed file, for errors.
func Verify(pub minisign.PublicKey, message io.Reader, sig []byte, name string) error {
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return fmt.Errorf("%w: %s.minisig is not a minisign signature: %v", ErrSignature, name, err)
	}
	if s.KeyID != pub.ID() {
		return fmt.Errorf("%w: %s was signed by key %X, not by the trusted key %X; get the bundle's public key from its publisher", ErrSignature, name, s.KeyID, pub.ID())
	}
	r := minisign.NewReader(message)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if !r.Verify(pub, sig) {
		return fmt.Errorf("%w: %s does not match its signature: it was modified after signing", ErrSignature, name)
	}
	return nil
}

// TrustedComment returns the signed comment of a signature.
func TrustedComment(sig []byte) string {
	var s minisign.Signature
	if s.UnmarshalText(sig) != nil {
		return ""
	}
	return strings.TrimSpace(s.TrustedComment)
}

// maxKeySize bounds a key file: minisign's are under 1 KiB.
const maxKeySize = 64 << 10

// parsePublicKey reads minisign's .pub layout (a comment line, then the
// key) or the key line alone.
func parsePublicKey(raw []byte) (minisign.PublicKey, bool) {
	var pub minisign.PublicKey
	if pub.UnmarshalText(bytes.TrimSpace(raw)) == nil {
		return pub, true
	}
	_, rest, ok := bytes.Cut(raw, []byte("\n"))
	return pub, ok && pub.UnmarshalText(bytes.TrimSpace(rest)) == nil
}

// ReadSmall reads a regular file of at most max bytes: a key, a spec, a
// credential a config names. The open does not block, so a FIFO given in
// their place cannot hang the command.
func ReadSmall(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	raw, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(raw)) > max {
		err = fmt.Errorf("%s is larger than %d KiB", path, max>>10)
	}
	return raw, err
}
