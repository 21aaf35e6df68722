// Package testimages builds the small images the test tiers run as pods,
// without a registry on the internet: a pause image from our own pause
// command, a busybox image from Debian's busybox-static, and upstream
// programs built from their Go modules (upstream/, monitoring/,
// kubestatemetrics/), each pinned by a nested module. Layers are
// reproducible (fixed owners and times), so an image's digest depends
// only on the binaries in it.
package testimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where Debian's busybox-static puts its binary.
const BusyboxPath = "/bin/busybox"

type entry struct {
	name string
	mode int64
	data []byte
	link string // a symlink target, for applets
}

// Pause builds the pause command statically and wraps it as an image with
// /pause as its entrypoint. dir is scratch space for the build.
func Pause(dir string) (v1.Image, error) {
	return program("", dir, "pause", "github.com/perchedge/perch/internal/testimages/pause")
}

// program is an image of one static binary, /NAME, as its entrypoint,
// built from pkg of the module in modDir (goBuildIn).
func program(modDir, dir, name, pkg string) (v1.Image, error) {
	data, err := goBuildIn(modDir, dir, name, pkg)
	if err != nil {
		return nil, err
	}
	return binary("/"+name, data)
}

// binary is an image of one static binary at path, its entrypoint followed
// by args: /NAME for most, /bin/NAME where upstream's image puts it there,
// since charts and operators may name the path.
func binary(path string, data []byte, args ...string) (v1.Image, error) {
	files := []entry{{name: strings.TrimPrefix(path, "/"), mode: 0o755, data: data}}
	return image(files, append([]string{path}, args...), nil)
}

// HelmJob builds the helmjob command (helm-controller's Job contract,
// through helm's Go packages) into an image k3s can use as its
// --helm-job-image. It runs as a non-root user, as helm-controller's pod
// security context requires, with its home where the Job mounts volumes.
func HelmJob(dir string) (v1.Image, error) {
	img, err := program("", dir, "helmjob", "github.com/perchedge/perch/internal/testimages/helmjob")
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config.User = "1000:1000"
	cf.Config.Env = append(cf.Config.Env, "HOME=/home/klipper-helm")
	return mutate.ConfigFile(img, cf)
}

// goBuildIn builds pkg of the nested module in modDir (relative to this
// package), "" for Perch's own module.
func goBuildIn(modDir, dir, name, pkg string) ([]byte, error) {
	bin, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
	if modDir != "" {
		_, self, _, _ := runtime.Caller(0)
		cmd.Dir = filepath.Join(filepath.Dir(self), modDir)
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	return os.ReadFile(bin)
}

// Busybox is busybox with sh and sleep, running cmd by default.
func Busybox(cmd ...string) (v1.Image, error) {
	files, err := busybox()
	if err != nil {
		return nil, err
	}
	return image(files, nil, cmd)
}

func busybox() ([]entry, error) {
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("%w: install busybox-static (scripts/test-deps)", err)
	}
	files := []entry{{name: "bin/busybox", mode: 0o755, data: data}}
	for _, applet := range []string{"sh", "sleep", "grep", "cat", "ls"} {
		files = append(files, entry{name: "bin/" + applet, link: "busybox"})
	}
	return files, nil
}

// CoreDNS is CoreDNS from its Go module, with the plugins k3s's Corefile
// uses (upstream/coredns), where k3s's coredns manifest runs /coredns.
func CoreDNS(dir string) (v1.Image, error) {
	return program("upstream", dir, "coredns", "./coredns")
}

// NATS is the NATS server from its Go module, with the official image's
// entrypoint: the chart passes only --config.
func NATS(dir string) (v1.Image, error) {
	return program("upstream", dir, "nats-server", "github.com/nats-io/nats-server/v2")
}

// MediaMTXStandIn is the gateway stand-in (standins/cmd/mediamtx): RTSP
// push and pull, HLS and metrics as the chart uses MediaMTX, since
// MediaMTX's module is not served here.
func MediaMTXStandIn(dir string) (v1.Image, error) {
	return program("standins", dir, "mediamtx", "./cmd/mediamtx")
}

// NATSExporterStandIn stands in for prometheus-nats-exporter
// (standins/cmd/nats-exporter).
func NATSExporterStandIn(dir string) (v1.Image, error) {
	return program("standins", dir, "prometheus-nats-exporter", "./cmd/nats-exporter")
}

// WorkerStandIn stands in for the CPU worker image (dlstreamer): busybox's
// shell for the chart's run and probe scripts, and a gst-launch-1.0 that
// plays each stream over RTSP and counts frames (standins/cmd/gst-launch).
func WorkerStandIn(dir string) (v1.Image, error) {
	data, err := goBuildIn("standins", dir, "gst-launch-1.0", "./cmd/gst-launch")
	if err != nil {
		return nil, err
	}
	files, err := busybox()
	if err != nil {
		return nil, err
	}
	return image(append(files, entry{name: "bin/gst-launch-1.0", mode: 0o755, data: data}), nil, []string{"/bin/sh"})
}

func image(files []entry, entrypoint, cmd []string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	for _, f := range files {
		if d := filepath.Dir(f.name); d != "." && !dirs[d] {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
				return nil, err
			}
		}
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: epoch, Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if f.link != "" {
			h = &tar.Header{Name: f.name, Mode: 0o777, ModTime: epoch, Typeflag: tar.TypeSymlink, Linkname: f.link}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if f.link == "" {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return nil, err
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		OS: "linux", Architecture: runtime.GOARCH,
		Config: v1.Config{Entrypoint: entrypoint, Cmd: cmd, Env: []string{"PATH=/bin"}},
	})
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, layer)
}
