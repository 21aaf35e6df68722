package bundles

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func minisignCLI(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("minisign")
	if err != nil {
		t.Fatal("Debian's minisign is not installed: run scripts/test-deps")
	}
	return p
}

func TestKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	pubPath, keyPath, err := GenerateKey(filepath.Join(dir, "site"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(keyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %04o, want 0600", fi.Mode().Perm())
	}
	if _, _, err := GenerateKey(filepath.Join(dir, "site")); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("keygen overwrote a key: %v", err)
	}
	key, err := LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"name":"site-a","version":"1.4.0"}`)
	sig, err := Sign(key, bytes.NewReader(msg), "bundle site-a 1.4.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(pub, bytes.NewReader(msg), sig, "perch-bundle.json"); err != nil {
		t.Fatalf("own signature rejected: %v", err)
	}
	if got := TrustedComment(sig); got != "bundle site-a 1.4.0" {
		t.Errorf("trusted comment %q", got)
	}
	tampered := bytes.Replace(msg, []byte("1.4.0"), []byte("1.4.1"), 1)
	err = Verify(pub, bytes.NewReader(tampered), sig, "perch-bundle.json")
	if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "perch-bundle.json does not match its signature") {
		t.Fatalf("tampered manifest: %v", err)
	}
	otherPub, _, _ := GenerateKey(filepath.Join(dir, "other"))
	other, _ := LoadPublicKey(otherPub)
	if err := Verify(other, bytes.NewReader(msg), sig, "perch-bundle.json"); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "not by the trusted key") {
		t.Fatalf("wrong key: %v", err)
	}
	if err := Verify(pub, bytes.NewReader(msg), []byte("garbage"), "perch-bundle.json"); !errors.Is(err, ErrSignature) {
		t.Fatalf("garbage signature: %v", err)
	}
}

// Debian's stock minisign must accept what Perch signs, and reject it once
// the manifest changes; Perch must accept what minisign signs.
func TestMinisignInterop(t *testing.T) {
	cli := minisignCLI(t)
	dir := t.TempDir()
	pubPath, keyPath, err := GenerateKey(filepath.Join(dir, "perch"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "perch-bundle.json")
	os.WriteFile(manifest, []byte(`{"name":"site-a"}`), 0o644)
	key, _ := LoadPrivateKey(keyPath)
	sig, err := Sign(key, bytes.NewReader([]byte(`{"name":"site-a"}`)), "bundle site-a")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(manifest+".minisig", sig, 0o644)
	if out, err := exec.Command(cli, "-Vm", manifest, "-p", pubPath).CombinedOutput(); err != nil {
		t.Fatalf("minisign -V rejected a perch signature: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "bundle site-a") {
		t.Errorf("minisign did not show the trusted comment:\n%s", out)
	}
	os.WriteFile(manifest, []byte(`{"name":"site-b"}`), 0o644)
	if out, err := exec.Command(cli, "-Vm", manifest, "-p", pubPath).CombinedOutput(); err == nil {
		t.Fatalf("minisign accepted a modified manifest:\n%s", out)
	}

	// the other way round: a key and a signature made by minisign itself
	mkey, mpub := filepath.Join(dir, "m.key"), filepath.Join(dir, "m.pub")
	if out, err := exec.Command(cli, "-G", "-W", "-s", mkey, "-p", mpub).CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v\n%s", err, out)
	}
	if out, err := exec.Command(cli, "-S", "-s", mkey, "-m", manifest, "-t", "from minisign").CombinedOutput(); err != nil {
		t.Fatalf("minisign -S: %v\n%s", err, out)
	}
	pub, err := LoadPublicKey(mpub)
	if err != nil {
		t.Fatal(err)
	}
	msig, _ := os.ReadFile(manifest + ".minisig")
	body, _ := os.ReadFile(manifest)
	if err := Verify(pub, bytes.NewReader(body), msig, "perch-bundle.json"); err != nil {
		t.Fatalf("perch rejected a minisign signature: %v", err)
	}
	if _, err := LoadPrivateKey(mkey); err != nil {
		t.Fatalf("perch cannot sign with a minisign -W key: %v", err)
	}
}

func TestLooseKeyModeRefused(t *testing.T) {
	_, keyPath, err := GenerateKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(keyPath, 0o644)
	if _, err := LoadPrivateKey(keyPath); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("got %v", err)
	}
}

// TestPublicKeyGivenToSign: the .pub where the .key belongs is named for
// what it is, with the file to use instead, not sent to chmod.
func TestPublicKeyGivenToSign(t *testing.T) {
	pub, key, err := GenerateKey(filepath.Join(t.TempDir(), "site"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pub, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadPrivateKey(pub)
	if err == nil || !strings.Contains(err.Error(), "is a public key") || !strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "chmod") {
		t.Fatalf("got %v, want it to say the file is the public key and name %s", err, key)
	}
	// an endless device is refused, not read until memory runs out
	if _, err := LoadPrivateKey("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero as a key: got %v", err)
	}
	if _, err := LoadPublicKey("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero as a public key: got %v", err)
	}
	if _, err := LoadPublicKey(pub); err != nil {
		t.Errorf("the .pub keygen wrote: %v", err)
	}
}

// TestSpecFIFORefused: a FIFO given as --spec is refused, not waited on.
func TestSpecFIFORefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "bundle.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := LoadSpec(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("got %v, want a FIFO refused as not a regular file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("LoadSpec of a FIFO still blocked after 5s")
	}
}
