//go:build integration

package testimages

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestIntegrationMonitoringImages builds the four monitoring images and
// runs what is in them on this host, on loopback only: each reports its
// upstream version, and Alertmanager and Prometheus serve their APIs,
// Prometheus scraping itself.
func TestIntegrationMonitoringImages(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	images := map[string]func(string) (v1.Image, error){
		"prometheus": Prometheus, "alertmanager": Alertmanager,
		"node_exporter": NodeExporter, "kube-state-metrics": KubeStateMetrics,
	}
	entrypoints := map[string][]string{
		"prometheus":         {"/bin/prometheus"},
		"alertmanager":       {"/bin/alertmanager"},
		"node_exporter":      {"/bin/node_exporter"},
		"kube-state-metrics": {"/kube-state-metrics", "--port=8080", "--telemetry-port=8081"},
	}
	bins := map[string]string{}
	for name, build := range images {
		img, err := build(dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if want := entrypoints[name]; !slices.Equal(cf.Config.Entrypoint, want) {
			t.Errorf("%s: entrypoint %q, want %q", name, cf.Config.Entrypoint, want)
		}
		bins[name] = extract(t, img, cf.Config.Entrypoint[0])
	}
	t.Logf("built the four images in %s", time.Since(start).Round(time.Second))

	for name, want := range map[string]string{
		"prometheus":         "prometheus, version 3.16.0 (branch: HEAD, revision: v0.316.0)",
		"alertmanager":       "alertmanager, version 0.35.0 (branch: HEAD, revision: v0.35.0)",
		"node_exporter":      "node_exporter, version 1.10.2 (branch: HEAD, revision: v1.10.2)",
		"kube-state-metrics": "kube-state-metrics, version v2.16.0 (branch: HEAD, revision: v2.16.0)",
	} {
		arg := "--version"
		if name == "kube-state-metrics" {
			arg = "version" // a subcommand; it has no --version flag
		}
		out, err := exec.Command(bins[name], arg).CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", name, arg, err, out)
		} else if !strings.Contains(string(out), want) {
			t.Errorf("%s %s:\n%s\nwant %q", name, arg, out, want)
		} else {
			t.Logf("%s %s:\n%s", name, arg, strings.TrimSpace(string(out)))
		}
	}

	t.Run("alertmanager", func(t *testing.T) {
		addr := freeAddr(t)
		cfg := writeFile(t, "alertmanager.yml", "route:\n  receiver: none\nreceivers:\n  - name: none\n")
		// An empty cluster address turns off the gossip listener, which
		// would otherwise bind all interfaces.
		serve(t, bins["alertmanager"], "--config.file="+cfg, "--storage.path="+t.TempDir(),
			"--web.listen-address="+addr, "--cluster.listen-address=")
		waitGet(t, "http://"+addr+"/-/ready", nil)
		var status struct{ VersionInfo map[string]string }
		waitGet(t, "http://"+addr+"/api/v2/status", &status)
		if v := status.VersionInfo["version"]; v != "0.35.0" {
			t.Errorf("/api/v2/status version %q, want 0.35.0", v)
		}
	})

	t.Run("prometheus", func(t *testing.T) {
		addr := freeAddr(t)
		cfg := writeFile(t, "prometheus.yml", fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: [%q]
`, addr))
		serve(t, bins["prometheus"], "--config.file="+cfg, "--storage.tsdb.path="+t.TempDir(),
			"--web.listen-address="+addr)
		waitGet(t, "http://"+addr+"/-/ready", nil)
		deadline := time.Now().Add(30 * time.Second)
		for {
			var q struct {
				Status string
				Data   struct {
					Result []struct {
						Value []any
					}
				}
			}
			waitGet(t, "http://"+addr+"/api/v1/query?query=up", &q)
			if q.Status != "success" {
				t.Fatalf("query up: status %q", q.Status)
			}
			if len(q.Data.Result) == 1 && q.Data.Result[0].Value[1] == "1" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("query up: %+v, want the one target up", q.Data.Result)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("node_exporter", func(t *testing.T) {
		addr := freeAddr(t)
		serve(t, bins["node_exporter"], "--web.listen-address="+addr)
		var metrics string
		waitGet(t, "http://"+addr+"/metrics", &metrics)
		if !strings.Contains(metrics, `node_exporter_build_info{branch="HEAD",goarch=`) ||
			!strings.Contains(metrics, `version="1.10.2"`) {
			t.Errorf("/metrics has no node_exporter_build_info of 1.10.2")
		}
	})
}

// extract writes the image's file at path to a temporary executable.
func extract(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the image: %v", path, err)
		}
		if "/"+strings.TrimPrefix(h.Name, "/") != path {
			continue
		}
		if h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
			t.Fatalf("%s: type %c mode %o, want an executable file", path, h.Typeflag, h.Mode)
		}
		out := filepath.Join(t.TempDir(), filepath.Base(path))
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return out
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// serve runs bin until the test ends, its output in the test's log if the
// test fails.
func serve(t *testing.T, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(bin), out.String())
		}
	})
}

// waitGet GETs url until it answers 200 (for up to 30s) and decodes the
// body into v: JSON, or the text itself for a *string.
func waitGet(t *testing.T, url string, v any) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := get(url)
		if err == nil {
			if s, ok := v.(*string); ok {
				*s = string(body)
			} else if v != nil {
				if err := json.Unmarshal(body, v); err != nil {
					t.Fatalf("GET %s: %v\n%s", url, err, body)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	return body, nil
}
