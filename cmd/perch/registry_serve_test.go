package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRegistryServeUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no dir", []string{}, exitUsage, "--dir DIR is required"},
		{"cert without key", []string{"--dir", dir, "--tls-cert", "c.pem"}, exitUsage, "--tls-cert and --tls-key go together"},
		{"key without cert", []string{"--dir", dir, "--tls-key", "k.pem"}, exitUsage, "--tls-cert and --tls-key go together"},
		{"addr without port", []string{"--dir", dir, "--addr", "127.0.0.1"}, exitUsage, "want HOST:PORT"},
		{"argument", []string{"--dir", dir, "extra"}, exitUsage, "takes no arguments"},
		// off loopback only with TLS and passwords, or when said
		{"every interface, plain", []string{"--dir", dir, "--addr", "0.0.0.0:5000"}, exitUsage, "reachable from other machines"},
		{"no host, plain", []string{"--dir", dir, "--addr", ":5000"}, exitUsage, "reachable from other machines"},
		{"TLS without passwords", []string{"--dir", dir, "--addr", "0.0.0.0:5000", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, exitUsage, "reachable from other machines"},
		{"insecure said", []string{"--dir", dir, "--addr", "0.0.0.0:0", "--insecure", "--htpasswd", filepath.Join(dir, "nope")}, exitFailure, "perch install writes it"},
		{"unknown flag", []string{"--dir", dir, "--port", "5000"}, exitUsage, "unknown flag"},
		{"missing htpasswd", []string{"--dir", dir, "--addr", "127.0.0.1:0", "--htpasswd", filepath.Join(dir, "nope")}, exitFailure, "perch install writes it"},
		{"missing cert files", []string{"--dir", dir, "--addr", "127.0.0.1:0", "--tls-cert", filepath.Join(dir, "c.pem"), "--tls-key", filepath.Join(dir, "k.pem")}, exitFailure, "c.pem"},
	} {
		_, errOut, code := perch(t, "", append([]string{"registry", "serve"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d mentioning %q", tc.name, code, errOut, tc.code, tc.want)
		}
	}
}

// TestRegistryServeStopsOnSIGTERM runs the real main in a child process and
// stops it the way systemd does.
func TestRegistryServeStopsOnSIGTERM(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "registry")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PERCH_TEST_MAIN_ARGS=registry serve --dir "+dir+" --addr "+addr)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(body) == "ok\n" {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("perch registry serve exited at start: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no healthy registry on %s after 30s:\n%s", addr, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/v2/: %d, want 200", resp.StatusCode)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("still running 40s after SIGTERM:\n%s", stderr.String())
	}
	for _, want := range []string{"registry serving", "registry stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("storage directory: %v", err)
	}
}

// In the child of TestRegistryServeStopsOnSIGTERM, the test binary is perch:
// main runs with the given arguments and exits.
func init() {
	if args := os.Getenv("PERCH_TEST_MAIN_ARGS"); args != "" {
		os.Args = append([]string{"perch"}, strings.Fields(args)...)
		main()
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
