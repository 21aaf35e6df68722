// Package apps deploys the apps the config wants as HelmCharts in k3s's
// auto-deploy directory (apps), and waits until each is ready by its pods
// (apps-ready).
package apps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	helmv1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	helmclient "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/airgap/registry"
	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/node"
	"github.com/perchedge/perch/manifests"
	"github.com/perchedge/perch/manifests/render"
)

// allApps are every app Perch may deploy: one the config stops wanting is
// removed.
var allApps = []string{render.DevicePlugin, render.Monitoring, render.DCGMExporter, render.Analytics, retiredMonitoring}

// appsStep deploys the apps the config wants as HelmChart manifests in
// k3s's auto-deploy directory, with their charts where k3s serves them,
// and removes the apps it no longer wants. An unchanged app's files are
// not touched, so k3s does not redeploy it.
type appsStep struct{ a *Apps }

// Apps are the apps of one server node.
type Apps struct {
	n *node.Node
	// registries are where pods may pull the bundle's images through the
	// appliance registry by its address (host:port); none when disabled.
	registries []string
	// rollouts are the apps whose HelmChart this install changed, with the
	// install Job each had before (apps -> apps-ready).
	rollouts map[string]jobMark
	// registryPort and registryCA (a host path) are where Prometheus
	// scrapes the Perch registry; port 0 when this node runs none.
	registryPort int
	registryCA   string
	// kube, when set, is the cluster's API instead of this server's admin
	// kubeconfig (tests).
	kube *clients
}

// ScrapeRegistry has Prometheus scrape the Perch registry every server
// runs on port, over TLS checked against the CA at caPath on this host.
func (a *Apps) ScrapeRegistry(port int, caPath string) { a.registryPort, a.registryCA = port, caPath }

// New are the apps of n, a server, whose appliance registry is at
// registries.
func New(n *node.Node, registries ...string) *Apps { return &Apps{n: n, registries: registries} }

// Deploy writes the apps' HelmCharts and charts, and removes apps the
// config no longer wants.
func (a *Apps) Deploy() engine.Step { return &appsStep{a} }

// Ready waits until every app is ready.
func (a *Apps) Ready() engine.Step { return &appsReadyStep{a} }

func (s *appsStep) Name() string { return "apps" }

func (s *appsStep) dataPath(rel string) string { return path.Join(s.a.n.Cfg.K3s.DataDir, rel) }

// desired renders the apps from the cluster's facts (clusterFacts; with
// needLive, only from the API's). ok is false while the bundle, whose
// charts they need, is not on the host yet: the plan made just before this
// step runs sees it.
func (s *appsStep) desired(ctx context.Context, needLive bool) (apps []render.App, ok bool, err error) {
	f, err := s.clusterFacts(ctx, needLive)
	if err != nil {
		return nil, false, err
	}
	in := render.Inputs{GPU: f.gpu, Assigned: f.assigned, Slots: f.placement(s.a.n.Cfg.GPU.Sharing.Replicas)}
	spec := Spec(s.a.n.Cfg)
	if _, set := explicitSite(s.a.n.Cfg); !set && f.site != "" {
		spec.Monitoring.ExternalLabels["site"] = f.site
	}
	if b := s.a.n.Bundle; b != nil {
		dir := s.a.n.Host.Path(b.Dir)
		if _, err := os.Stat(filepath.Join(dir, bundles.ManifestName)); errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		// the manifest verified at plan time, not a second read from disk
		in.Charts = bundleCharts(dir, b.Manifest)
	}
	if s.a.registryPort > 0 {
		// the registry step makes the CA before this step applies; a plan
		// made before it exists renders without the scrape
		if ca, err := s.a.n.Host.ReadFile(s.a.registryCA); err == nil {
			in.RegistryMetrics = &render.RegistryMetrics{Port: s.a.registryPort, CA: ca}
		}
	}
	apps, err = render.Apps(spec, in)
	return apps, true, err
}

// maxManifest bounds the deployed manifest read back for its assignment;
// Perch writes a few KiB.
const maxManifest = 4 << 20

// assignedLocal is where the pipeline deployed now has each stream, from
// the values of the HelmChart this node wrote last, for when the API does
// not answer: the next assignment keeps every stream it can where it is,
// since moving one restarts two workers. Nothing (a first install, a file
// someone broke) places every stream anew.
func (s *appsStep) assignedLocal() map[string]string {
	p := s.dataPath(path.Join(render.ManifestsDir, render.Analytics+".yaml"))
	if fi, err := s.a.n.Host.Stat(p); err != nil || fi.Size() > maxManifest {
		return nil
	}
	raw, err := s.a.n.Host.ReadFile(p)
	if err != nil {
		return nil
	}
	var hc helmv1.HelmChart
	if err := yaml.Unmarshal(raw, &hc); err != nil {
		return nil
	}
	return assignedIn(hc.Spec.ValuesContent)
}

// slotsIn reads the per-node worker slots of perch-analytics values; nil
// when they hold none.
func slotsIn(values string) []manifests.Slot {
	if len(values) > maxManifest {
		return nil
	}
	var v struct {
		Workers struct {
			PerNode bool
			Slots   []manifests.Slot
		}
	}
	if err := yaml.Unmarshal([]byte(values), &v); err != nil || !v.Workers.PerNode {
		return nil
	}
	return v.Workers.Slots
}

// assignedIn reads the stream slots of perch-analytics values; nil when
// they hold none.
func assignedIn(values string) map[string]string {
	if len(values) > maxManifest {
		return nil
	}
	var v struct {
		Streams []struct{ Name, Slot string }
	}
	if err := yaml.Unmarshal([]byte(values), &v); err != nil {
		return nil
	}
	out := map[string]string{}
	for _, st := range v.Streams {
		if st.Slot != "" {
			out[st.Name] = st.Slot
		}
	}
	return out
}

// files are what the apps need on disk, charts before the manifests that
// point at them. Manifests are 0600: their values hold camera URLs, which
// may carry passwords.
func (s *appsStep) files(apps []render.App) []wantFile {
	var out []wantFile
	for _, a := range apps {
		out = append(out, wantFile{s.dataPath(a.Chart.Path), a.Chart.Data, 0o644})
	}
	for _, a := range apps {
		out = append(out, wantFile{s.dataPath(a.File), a.YAML, 0o600})
	}
	return out
}

// jobMark identifies one run of an app's helm-install Job: helm-controller
// recreates the Job, or changes its config hash, for new values.
type jobMark struct{ uid, hash string }

// helmConfigHash is the annotation helm-controller puts on the install
// Job's pod template: a hash of the values and chart content it installs.
const helmConfigHash = "helmcharts.helm.cattle.io/configHash"

func markOf(j *batchv1.Job) jobMark {
	return jobMark{string(j.UID), j.Spec.Template.Annotations[helmConfigHash]}
}

// installJobs are the install Jobs the apps have now. Until helm-controller
// replaces an app's Job, its old state says nothing about the new values.
// Best effort: an app without a readable Job is new, or waited for anyway.
func (s *appsStep) installJobs(ctx context.Context, apps []render.App) map[string]jobMark {
	out := map[string]jobMark{}
	cs, err := s.a.n.Kube(30 * time.Second)
	if err != nil {
		return out
	}
	for _, a := range apps {
		j, err := cs.BatchV1().Jobs(render.HelmChartNamespace).Get(ctx, "helm-install-"+a.Name, metav1.GetOptions{})
		if err == nil {
			out[a.Name] = markOf(j)
		}
	}
	return out
}

type wantFile struct {
	path string
	data []byte
	mode fs.FileMode
}

// GrafanaPasswordPath holds the Grafana admin password Perch generated.
const GrafanaPasswordPath = "/etc/perch/secrets/grafana-admin-password"

// secretsManifest is the monitoring Secrets' manifest (render.MonitoringSecrets).
func (s *appsStep) secretsManifest() string {
	return s.dataPath(path.Join(render.ManifestsDir, "perch-monitoring-secrets.yaml"))
}

// retiredFiles are manifests earlier Perch releases wrote that nothing
// renders any more: k3s would apply them again at every start.
func (s *appsStep) retiredFiles() []string {
	return []string{
		s.dataPath(path.Join(render.ManifestsDir, render.GrafanaAdminSecret+".yaml")),
	}
}

// retiredMonitoring is the monitoring app before perch-monitoring: an
// operator-based stack whose operator cannot be built or tested offline.
const retiredMonitoring = "kube-prometheus-stack"

// monitored says whether perch-monitoring is deployed.
func monitored(apps []render.App) bool {
	return slices.ContainsFunc(apps, func(a render.App) bool { return a.Name == render.Monitoring })
}

// wantsGrafana says whether Grafana is deployed, and so needs its login.
func (s *appsStep) wantsGrafana(apps []render.App) bool {
	return s.a.n.Cfg.Monitoring.Grafana && monitored(apps)
}

// maxSecretFile bounds a credential or CA file the config names.
const maxSecretFile = 64 << 10

// remoteWriteSecrets are the remote-write credentials and CAs, read from
// the files the config names, keyed as the chart's values refer to them.
func (s *appsStep) remoteWriteSecrets() (map[string][]byte, error) {
	out := map[string][]byte{}
	for i, rw := range s.a.n.Cfg.Monitoring.RemoteWrite {
		name := config.RemoteWriteName(i, rw)
		pw, tok, ca := render.RemoteWriteKeys(name)
		for _, f := range []struct{ field, file, key string }{
			{"passwordFile", rw.PasswordFile, pw}, {"bearerTokenFile", rw.BearerTokenFile, tok}, {"caFile", rw.CAFile, ca},
		} {
			if f.file == "" {
				continue
			}
			field := fmt.Sprintf("monitoring.remoteWrite[%d].%s", i, f.field)
			data, err := bundles.ReadSmall(f.file, maxSecretFile)
			if err != nil {
				return nil, &config.InvalidError{Source: "config", Errs: config.FieldErrors{{Path: field, Msg: err.Error() + "; it should hold one secret or PEM CA"}}}
			}
			if f.key != ca {
				// a trailing newline would be part of the password
				data = bytes.TrimSpace(data)
			}
			if len(data) == 0 {
				return nil, &config.InvalidError{Source: "config", Errs: config.FieldErrors{{Path: field, Msg: f.file + " is empty"}}}
			}
			out[f.key] = data
		}
	}
	return out, nil
}

// secretFiles are the Grafana admin password (when Grafana is deployed)
// and the manifest of the monitoring Secrets; none when monitoring needs
// no secret. generated is false while the Grafana password is yet to be
// made: the plan then lists both files as created.
func (s *appsStep) secretFiles(apps []render.App) (files []wantFile, generated bool, err error) {
	if !monitored(apps) {
		return nil, true, nil
	}
	rw, err := s.remoteWriteSecrets()
	if err != nil {
		return nil, false, err
	}
	var password []byte
	if s.wantsGrafana(apps) {
		password, err = s.a.n.Host.ReadFile(GrafanaPasswordPath)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		files = append(files, wantFile{GrafanaPasswordPath, password, 0o600})
	}
	if len(password) == 0 && len(rw) == 0 {
		return nil, true, nil
	}
	m, err := render.MonitoringSecrets(strings.TrimSpace(string(password)), rw)
	if err != nil {
		return nil, false, err
	}
	return append(files, wantFile{s.secretsManifest(), m, 0o600}), true, nil
}

func (s *appsStep) Plan(ctx context.Context) ([]engine.Change, error) {
	apps, ok, err := s.desired(ctx, false)
	if err != nil {
		return nil, err
	}
	if !ok {
		return []engine.Change{{Action: engine.Create, Kind: engine.File, Target: s.dataPath(render.ManifestsDir),
			Detail: "the apps of the bundle, rendered once it is installed"}}, nil
	}
	var cs []engine.Change
	files := s.files(apps)
	sf, generated, err := s.secretFiles(apps)
	if err != nil {
		return nil, err
	}
	if !generated {
		cs = append(cs,
			engine.Change{Action: engine.Create, Kind: engine.File, Target: GrafanaPasswordPath, Detail: "mode 0600, secret, Grafana's admin password"},
			engine.Change{Action: engine.Create, Kind: engine.File, Target: s.secretsManifest(), Detail: "mode 0600, secret"})
	}
	files = append(files, sf...)
	stray := s.retiredFiles()
	if sf == nil && generated {
		stray = append(stray, s.secretsManifest())
	}
	for _, p := range stray {
		if _, err := s.a.n.Host.Stat(p); err == nil {
			cs = append(cs, engine.Change{Action: engine.Delete, Kind: engine.File, Target: p})
		}
	}
	for _, f := range files {
		have, err := s.a.n.Host.ReadFile(f.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.File, Target: f.path})
		case err != nil:
			return nil, err
		case string(have) != string(f.data):
			cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.File, Target: f.path})
		default:
			if fi, err := s.a.n.Host.Stat(f.path); err == nil && fi.Mode().Perm() != f.mode {
				cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.File, Target: f.path, Detail: fmt.Sprintf("mode %04o", f.mode)})
			}
		}
	}
	stale, err := s.stale(ctx, apps)
	if err != nil {
		return nil, err
	}
	for _, name := range stale {
		file := s.dataPath(path.Join(render.ManifestsDir, name+".yaml"))
		if _, err := s.a.n.Host.Stat(file); err == nil {
			cs = append(cs, engine.Change{Action: engine.Delete, Kind: engine.File, Target: file})
		}
		cs = append(cs, engine.Change{Action: engine.Delete, Kind: engine.App, Target: name,
			Detail: "the config no longer wants it; helm-controller uninstalls its release"})
	}
	return cs, nil
}

// stale are the apps Perch deployed that the config no longer wants: a
// manifest file left in server/manifests, or a HelmChart of Perch's still
// in the cluster (deleting the file does not delete it).
func (s *appsStep) stale(ctx context.Context, apps []render.App) ([]string, error) {
	var out []string
	for _, name := range allApps {
		if slices.ContainsFunc(apps, func(a render.App) bool { return a.Name == name }) {
			continue
		}
		if _, err := s.a.n.Host.Stat(s.dataPath(path.Join(render.ManifestsDir, name+".yaml"))); err == nil {
			out = append(out, name)
		}
	}
	hc, err := s.helmCharts()
	if err != nil {
		// no cluster yet: nothing can be deployed in it
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := hc.HelmV1().HelmCharts(render.HelmChartNamespace).List(ctx, metav1.ListOptions{LabelSelector: render.LabelManagedBy + "=" + render.ManagedBy})
	if err != nil {
		return out, nil
	}
	for _, h := range list.Items {
		if h.DeletionTimestamp != nil {
			continue // helm-controller is uninstalling it
		}
		if !slices.Contains(out, h.Name) && !slices.ContainsFunc(apps, func(a render.App) bool { return a.Name == h.Name }) {
			out = append(out, h.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *appsStep) helmCharts() (helmclient.Interface, error) {
	rc, err := s.a.n.RESTConfig()
	if err != nil {
		return nil, err
	}
	rc.Timeout = 5 * time.Second
	return helmclient.NewForConfig(rc)
}

func (s *appsStep) Apply(ctx context.Context, cs []engine.Change, r *engine.Reporter) error {
	// k3s is ready by now: rendering without the cluster's facts could
	// undo what another server deployed
	apps, ok, err := s.desired(ctx, true)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("apps: bundle %s is not installed at %s", s.a.n.Bundle.Manifest.Name, s.a.n.Bundle.Dir)
	}
	files := s.files(apps)
	if s.wantsGrafana(apps) {
		if _, err := s.a.n.Host.Stat(GrafanaPasswordPath); errors.Is(err, fs.ErrNotExist) {
			pw, err := registry.RandomPassword()
			if err != nil {
				return err
			}
			if _, err := s.a.n.Host.WriteFile(GrafanaPasswordPath, []byte(pw+"\n"), 0o600); err != nil {
				return err
			}
		}
	}
	sf, _, err := s.secretFiles(apps)
	if err != nil {
		return err
	}
	files = append(files, sf...)
	before := s.installJobs(ctx, apps)
	for _, f := range files {
		changed, err := s.a.n.Host.WriteFile(f.path, f.data, f.mode)
		if err != nil {
			return err
		}
		if changed {
			r.Logf("wrote %s", f.path)
		}
		for _, a := range apps {
			if m, ok := before[a.Name]; ok && changed && f.path == s.dataPath(a.File) {
				if s.a.rollouts == nil {
					s.a.rollouts = map[string]jobMark{}
				}
				s.a.rollouts[a.Name] = m
			}
		}
	}
	for _, c := range cs {
		if c.Action != engine.Delete {
			continue
		}
		switch c.Kind {
		case engine.File:
			// first, or k3s would apply the file again
			if _, err := s.a.n.Host.Remove(c.Target); err != nil {
				return err
			}
		case engine.App:
			hc, err := s.helmCharts()
			if err != nil {
				return fmt.Errorf("remove app %s: %w", c.Target, err)
			}
			err = hc.HelmV1().HelmCharts(render.HelmChartNamespace).Delete(ctx, c.Target, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("remove app %s: %w", c.Target, err)
			}
			r.Logf("removed app %s", c.Target)
		}
	}
	return nil
}
