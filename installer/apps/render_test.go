package apps

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/manifests"
	"github.com/perchedge/perch/manifests/render"
)

func TestSpecFollowsTheConfig(t *testing.T) {
	cfg := config.Default()
	cfg.GPU.Mode = config.GPUOff
	cfg.GPU.Sharing.Replicas = 3
	cfg.Pipeline.Streams = []config.Stream{{Name: "gate-1", URL: "rtsp://192.0.2.10/live"}}
	cfg.Monitoring = config.Monitoring{Enabled: true, Grafana: false, Alertmanager: true, Retention: "14d", RetentionSize: "5GB"}
	cfg.K3s.Disable = []string{"servicelb"}
	got := Spec(&cfg)
	want := &manifests.Appliance{
		GPU:        manifests.GPU{Off: true, Replicas: 3},
		Pipeline:   manifests.Pipeline{Enabled: true, Streams: []manifests.Stream{{Name: "gate-1", URL: "rtsp://192.0.2.10/live"}}},
		Monitoring: manifests.Monitoring{Enabled: true, Alertmanager: true, Retention: "14d", RetentionSize: "5GB", ExternalLabels: map[string]string{}},
		K3s:        manifests.K3s{Disable: []string{"servicelb"}},
	}
	if got.GPU != want.GPU || !reflect.DeepEqual(got.Monitoring, want.Monitoring) || got.Pipeline.Enabled != want.Pipeline.Enabled ||
		len(got.Pipeline.Streams) != 1 || got.Pipeline.Streams[0] != want.Pipeline.Streams[0] ||
		strings.Join(got.K3s.Disable, ",") != "servicelb" {
		t.Errorf("Spec = %+v, want %+v", got, want)
	}
	if got.ServiceType() != "ClusterIP" {
		t.Errorf("servicelb disabled: %s", got.ServiceType())
	}
	for _, mode := range []config.GPUMode{config.GPUAuto, config.GPURequired} {
		cfg.GPU.Mode = mode
		if Spec(&cfg).GPU.Off {
			t.Errorf("gpu.mode %s rendered as off", mode)
		}
	}
}

// A bundle source review cannot use is bad input, named by its field.
func TestReviewRefusesBundleItCannotCheck(t *testing.T) {
	for _, c := range []struct{ source, pub, field string }{
		{config.BundleAuto, "site.pub", "bundle.source"},
		{"/media/usb/site.tar.zst", "", "bundle.publicKey"},
	} {
		cfg := config.Default()
		cfg.Bundle = config.Bundle{Source: c.source, PublicKey: c.pub}
		_, _, err := Review(context.Background(), &cfg, nil)
		var inv *config.InvalidError
		if !errors.As(err, &inv) || len(inv.Errs) != 1 || inv.Errs[0].Path != c.field {
			t.Errorf("source %q, key %q: %v; want an invalid %s", c.source, c.pub, err, c.field)
		}
	}
}

func TestWriteDirLeavesUnchangedFiles(t *testing.T) {
	cfg := config.Default()
	cfg.Monitoring.Enabled = false
	first, skipped, err := Review(context.Background(), &cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 1 || first[0].Name != render.Analytics || len(skipped) != 3 {
		t.Fatalf("without a bundle or monitoring: %d apps, skipped %v; want the pipeline only", len(first), skipped)
	}
	dir := t.TempDir()
	written, err := WriteDir(dir, first)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 {
		t.Errorf("first write: %v", written)
	}
	app := first[0]
	for _, f := range []struct {
		rel  string
		data []byte
		mode os.FileMode
	}{{app.File, app.YAML, 0o600}, {app.Chart.Path, app.Chart.Data, 0o644}} {
		got, err := os.ReadFile(filepath.Join(dir, f.rel))
		if err != nil || !bytes.Equal(got, f.data) {
			t.Errorf("%s: not written as rendered (%v)", f.rel, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, f.rel)); err != nil || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.rel, fi.Mode().Perm(), f.mode)
		}
	}
	yamlFile := filepath.Join(dir, app.File)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(yamlFile, old, old); err != nil {
		t.Fatal(err)
	}
	second, _, err := Review(context.Background(), &cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if written, err = WriteDir(dir, second); err != nil || len(written) != 0 {
		t.Errorf("re-writing unchanged apps touched %v (%v)", written, err)
	}
	if fi, err := os.Stat(yamlFile); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("%s was rewritten though unchanged", yamlFile)
	}
}
