package testimages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The monitoring stack's programs are built from their Go modules, each
// pinned by a nested module of its own under monitoring/. One module for
// all four does not compile: kube-state-metrics v2.16.0 is written
// against client-go v0.32 and Prometheus needs v0.37 (its MetricsStore
// lacks the Bookmark method v0.37's cache.Store requires); Alertmanager
// v0.35.0 calls automemlimit v0.7's API and Prometheus needs v1.0;
// node_exporter v1.10.2 reads procfs v0.19's mdadm type and Prometheus
// and Alertmanager need v0.22. Three modules would compile, with
// node_exporter and kube-state-metrics together, but that moves
// kube-state-metrics off over a dozen of its dependency versions
// (client_golang, common, procfs, x/net...). Alone in its module, each
// program links exactly the versions its release's go.mod names, and the
// four builds run at once, so the split costs no time.

// Prometheus is Prometheus 3.16.0 from its Go module, at
// /bin/prometheus as in quay.io/prometheus/prometheus; the operator passes
// every flag. The web UI is not in it: upstream embeds it with the
// builtinassets tag from files its npm build generates, which the module
// lacks. The API and /-/ready, which the stack and the tests use, are
// there.
func Prometheus(dir string) (v1.Image, error) { return monitoringImage(dir, "prometheus") }

// Alertmanager is Alertmanager 0.35.0 from its Go module, at
// /bin/alertmanager as in quay.io/prometheus/alertmanager, serving a
// stand-in page for its web UI (alertmanagerUIStub).
func Alertmanager(dir string) (v1.Image, error) { return monitoringImage(dir, "alertmanager") }

// NodeExporter is node_exporter 1.10.2 from its Go module, at
// /bin/node_exporter as in quay.io/prometheus/node-exporter.
func NodeExporter(dir string) (v1.Image, error) { return monitoringImage(dir, "node_exporter") }

// KubeStateMetrics is kube-state-metrics v2.16.0 from its Go module, with
// the entrypoint of
// registry.k8s.io/kube-state-metrics/kube-state-metrics, ports included.
func KubeStateMetrics(dir string) (v1.Image, error) {
	return monitoringImage(dir, "kube-state-metrics")
}

// monitoringProgram is one program of the monitoring stack and how
// upstream's release build and image present it.
type monitoringProgram struct {
	name   string // the binary's name; its module is monitoring/NAME
	module string
	pkg    string
	path   string   // in the image, where upstream's image has it
	args   []string // the rest of upstream's entrypoint
	// tagVersion: the program reports its git tag (v2.16.0), as
	// kube-state-metrics' Makefile sets it, rather than the VERSION file
	// promu reads for the Prometheus projects (3.16.0).
	tagVersion bool
	dateLayout string // of version.BuildDate, as each upstream build writes it
	// stubs are files the module lacks that its build needs, by path in
	// the module; each is a stand-in.
	stubs map[string]string
	// tags are upstream's own build tags the build sets.
	tags string
}

const promuDate = "20060102-15:04:05"

var monitoringPrograms = []monitoringProgram{
	// Prometheus keeps, of its service discoveries, Kubernetes (which the
	// appliance's config uses) and the file and HTTP ones it always has,
	// through the build tags upstream provides for that (plugins/*.go):
	// the cloud SDKs the others link (AWS, Azure, OCI, GCE...) are 113 of
	// its 277 MiB of module zips and 243 of its 1518 packages, for nothing
	// the appliance reads. A site's bundle carries upstream's image, with
	// them all.
	{name: "prometheus", module: "github.com/prometheus/prometheus",
		pkg: "github.com/prometheus/prometheus/cmd/prometheus", path: "/bin/prometheus", dateLayout: promuDate,
		tags: "remove_all_sd,enable_kubernetes_sd"},
	{name: "alertmanager", module: "github.com/prometheus/alertmanager",
		pkg: "github.com/prometheus/alertmanager/cmd/alertmanager", path: "/bin/alertmanager", dateLayout: promuDate,
		stubs: map[string]string{
			"ui/app/dist/elm/index.html":     alertmanagerUIStub,
			"ui/app/dist/mantine/index.html": alertmanagerUIStub,
		}},
	{name: "node_exporter", module: "github.com/prometheus/node_exporter",
		pkg: "github.com/prometheus/node_exporter", path: "/bin/node_exporter", dateLayout: promuDate},
	{name: "kube-state-metrics", module: "k8s.io/kube-state-metrics/v2",
		pkg: "k8s.io/kube-state-metrics/v2", path: "/kube-state-metrics", args: []string{"--port=8080", "--telemetry-port=8081"},
		tagVersion: true, dateLayout: "2006-01-02T15:04:05Z"},
}

// alertmanagerUIStub stands in for Alertmanager's two web UIs (Elm at /,
// Mantine at /ui/). ui/web.go embeds app/dist, which its npm build
// generates and the module does not carry, so without these files the
// program does not compile. The API and /-/ready are unaffected.
const alertmanagerUIStub = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Alertmanager</title></head>
<body><p>Alertmanager's web UI is not built into this test image: Perch's
test images are built from Go modules, which do not carry the UI. The API
is at <a href="/api/v2/status">/api/v2/</a>.</p></body></html>
`

// monitoringBuilds holds this process's one build of the four programs
// per scratch dir: the e2e tier asks for their images one at a time, and
// four go builds at once take not much longer than Prometheus's alone,
// which from a cold cache takes minutes.
var monitoringBuilds sync.Map // absolute dir → func() (map[string]string, error)

func monitoringImage(dir, name string) (v1.Image, error) {
	bin, err := MonitoringBinary(dir, name)
	if err != nil {
		return nil, err
	}
	for _, p := range monitoringPrograms {
		if p.name == name {
			data, err := os.ReadFile(bin)
			if err != nil {
				return nil, err
			}
			return binary(p.path, data, p.args...)
		}
	}
	return nil, fmt.Errorf("no monitoring program %q", name)
}

// MonitoringBinary is the path of one program's binary, built (once per
// dir, with the other three) as for its image: the e2e runs the
// Prometheus it bundles on the host as well, as the central store sites
// remote-write to.
func MonitoringBinary(dir, name string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	build, _ := monitoringBuilds.LoadOrStore(abs, sync.OnceValues(func() (map[string]string, error) {
		return buildMonitoring(abs)
	}))
	bins, err := build.(func() (map[string]string, error))()
	if err != nil {
		return "", err
	}
	if bin, ok := bins[name]; ok {
		return bin, nil
	}
	return "", fmt.Errorf("no monitoring program %q", name)
}

// DownloadMonitoring fetches into the module cache what the four builds
// need, and builds nothing: make test runs it in the background while the
// first tiers run, so a cold machine's 400 MiB of downloads overlap their
// CPU work instead of waiting in the e2e tier.
func DownloadMonitoring() error {
	errs := make([]error, len(monitoringPrograms))
	var wg sync.WaitGroup
	for i, p := range monitoringPrograms {
		// -e: a package missing the files its stubs add (Alertmanager's
		// UI) is listed with its dependencies all the same
		wg.Go(func() { _, errs[i] = goCmd(moduleDir(p), "list", "-e", "-deps", "-tags="+p.tags, p.pkg) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// moduleDir is the nested module that pins p.
func moduleDir(p monitoringProgram) string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "monitoring", p.name)
}

// buildMonitoring builds every monitoring program into dir/monitoring,
// all at once, and returns each binary's path.
func buildMonitoring(dir string) (map[string]string, error) {
	bins := map[string]string{}
	errs := make([]error, len(monitoringPrograms))
	var wg sync.WaitGroup
	for i, p := range monitoringPrograms {
		work := filepath.Join(dir, "monitoring", p.name)
		bins[p.name] = filepath.Join(work, p.name)
		wg.Go(func() { errs[i] = buildProgram(p, work) })
	}
	wg.Wait()
	return bins, errors.Join(errs...)
}

// moduleInfo is what `go mod download -json` says of a module.
type moduleInfo struct {
	Path, Version, Dir, Info string
	Error                    string
}

// buildProgram builds p into work/NAME. A program that needs stubs is
// built from a copy of its module under work, which the build uses
// through a replace with a relative path: the path goes into the binary's
// build info, and a relative one keeps it the same wherever work is.
func buildProgram(p monitoringProgram, work string) error {
	src := moduleDir(p)
	// A copy left by another process's build of the same dir would make
	// CopyFS fail.
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	out, err := goCmd(src, "mod", "download", "-json", p.module)
	if err != nil {
		return err
	}
	var m moduleInfo
	if err := json.Unmarshal(out, &m); err != nil {
		return fmt.Errorf("go mod download %s: %w", p.module, err)
	}
	if m.Error != "" {
		return fmt.Errorf("go mod download %s: %s", p.module, m.Error)
	}

	buildDir := src
	if len(p.stubs) > 0 {
		buildDir = filepath.Join(work, "src")
		if err := stubbedModule(src, buildDir, m, p.stubs); err != nil {
			return fmt.Errorf("%s with stubs: %w", p.module, err)
		}
	}
	flags, err := versionFlags(p, m)
	if err != nil {
		return err
	}
	_, err = goCmd(buildDir, "build", "-trimpath", "-tags="+p.tags, "-ldflags=-s -w "+flags,
		"-o", filepath.Join(work, p.name), p.pkg)
	return err
}

// stubbedModule writes to dst a copy of the tools module in src that
// builds module m from a copy with stubs added.
func stubbedModule(src, dst string, m moduleInfo, stubs map[string]string) error {
	copyDir := filepath.Join(dst, "upstream")
	if err := os.CopyFS(copyDir, os.DirFS(m.Dir)); err != nil {
		return err
	}
	for name, data := range stubs {
		path := filepath.Join(copyDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			return err
		}
	}
	if err := copyModFiles(src, dst); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dst, "go.mod"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\nreplace %s %s => ./upstream\n", m.Path, m.Version)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyModFiles copies go.mod and go.sum: all a build of the module's
// tool needs (doc.go is only there for go vet).
func copyModFiles(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// versionFlags set prometheus/common's version variables as upstream's
// release build does, from the module alone, so a rebuild links the same
// bytes: the date is the release's (the module's time at the proxy), the
// branch HEAD as a build from a tag reports it, and the revision the
// module version, since the proxy does not carry the commit and the
// version names the source exactly (go.sum holds its hash).
func versionFlags(p monitoringProgram, m moduleInfo) (string, error) {
	version := m.Version
	if !p.tagVersion {
		data, err := os.ReadFile(filepath.Join(m.Dir, "VERSION"))
		if err != nil {
			return "", err
		}
		version = strings.TrimSpace(string(data))
	}
	data, err := os.ReadFile(m.Info)
	if err != nil {
		return "", err
	}
	var info struct{ Time time.Time }
	if err := json.Unmarshal(data, &info); err != nil {
		return "", fmt.Errorf("%s: %w", m.Info, err)
	}
	const pkg = "github.com/prometheus/common/version."
	return strings.Join([]string{
		"-X " + pkg + "Version=" + version,
		"-X " + pkg + "Revision=" + m.Version,
		"-X " + pkg + "Branch=HEAD",
		"-X " + pkg + "BuildUser=perch@testimages",
		"-X " + pkg + "BuildDate=" + info.Time.UTC().Format(p.dateLayout),
	}, " "), nil
}

// goCmd runs the go command in dir and returns its stdout. GOWORK is off
// because a copied module lives in the caller's scratch dir, where a
// go.work above it would otherwise decide the build.
func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s in %s: %v\n%s", args[0], dir, err, stderr.Bytes())
	}
	return out, nil
}
