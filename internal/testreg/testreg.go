// Package testreg runs Debian's docker-registry for tests: the real upstream
// registry that images are built into and pulled back from.
package testreg

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Registry is a running docker-registry on loopback, plain HTTP.
type Registry struct {
	Addr    string // 127.0.0.1:PORT
	Storage string // its filesystem storage
}

// Start runs docker-registry on a free loopback port with its own storage,
// stopped when the test ends.
func Start(t testing.TB) *Registry {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		t.Fatal("docker-registry is not installed: run scripts/test-deps (as root), which installs Debian's docker-registry")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	dir := t.TempDir()
	r := &Registry{Addr: addr, Storage: filepath.Join(dir, "storage")}
	cfg := filepath.Join(dir, "config.yml")
	// upload purging off: a test counts what is stored
	err = os.WriteFile(cfg, fmt.Appendf(nil, `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`, r.Storage, addr), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command("docker-registry", "serve", cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v; run scripts/test-deps", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			b, _ := os.ReadFile(logPath)
			t.Fatalf("docker-registry serve %s exited: %v\n%s", cfg, err, b)
		default:
		}
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry on %s did not answer GET /v2/ within 30s (last: %v)", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
