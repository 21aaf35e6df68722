package apps

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/node"
	"github.com/perchedge/perch/manifests/render"
)

// Remote-write credentials are read from the files the config names, each
// bounded and regular: a FIFO in their place fails at once (it would hang
// a read), and the error names the field, never the secret.
func TestRemoteWriteSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	step := func(rw ...config.RemoteWrite) *appsStep {
		cfg := config.Default()
		cfg.Monitoring.RemoteWrite = rw
		return &appsStep{a: &Apps{n: &node.Node{Cfg: &cfg}}}
	}
	pwFile, caFile := write("pw", "hunter2-rw\n"), write("ca.pem", "-----BEGIN CERTIFICATE-----\n")
	got, err := step(config.RemoteWrite{Name: "central", URL: "https://c/w", Username: "u", PasswordFile: pwFile, CAFile: caFile}).remoteWriteSecrets()
	pw, _, ca := render.RemoteWriteKeys("central")
	if err != nil || string(got[pw]) != "hunter2-rw" || string(got[ca]) != "-----BEGIN CERTIFICATE-----\n" {
		t.Fatalf("secrets %q, %v: want the password without its newline and the CA as is", got, err)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := write("big", strings.Repeat("x", maxSecretFile+1))
	for _, tc := range []struct{ file, field string }{
		{fifo, "monitoring.remoteWrite[0].bearerTokenFile"},
		{big, "monitoring.remoteWrite[0].bearerTokenFile"},
		{write("empty", "\n"), "monitoring.remoteWrite[0].bearerTokenFile"},
		{filepath.Join(dir, "absent"), "monitoring.remoteWrite[0].bearerTokenFile"},
	} {
		_, err := step(config.RemoteWrite{URL: "https://c/w", BearerTokenFile: tc.file}).remoteWriteSecrets()
		var inv *config.InvalidError
		if !errors.As(err, &inv) || inv.Errs[0].Path != tc.field {
			t.Errorf("%s: %v, want an invalid %s", filepath.Base(tc.file), err, tc.field)
		}
		if err != nil && strings.Contains(err.Error(), "xxxx") {
			t.Errorf("%s: the error holds the file's content", filepath.Base(tc.file))
		}
	}
}
