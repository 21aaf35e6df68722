// Package render builds the HelmChart objects Perch deploys: one file per
// app for k3s's server/manifests, each pointing at a chart archive k3s
// serves from server/static/charts. Install and `perch manifests render`
// use the same code, so what a person reviews is what a node gets.
package render

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	v1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/manifests"
)

// Where the files go, relative to the k3s data dir (k3s.dataDir).
const (
	ManifestsDir = "server/manifests"
	ChartsDir    = "server/static/charts"

	// HelmChartNamespace is where k3s's helm-controller watches HelmCharts.
	HelmChartNamespace = "kube-system"
	// chartURL is resolved by helm-controller to the API server, which
	// serves server/static/charts; a URL keeps charts out of chartContent,
	// whose ConfigMap cannot hold more than 1 MiB.
	chartURL = "https://%{KUBERNETES_API}%/static/charts/"
	// jobPrefix names the Job helm-controller runs for a chart; the Job's
	// name must stay a valid label value (63 characters).
	jobPrefix = "helm-install-"
)

// GrafanaAdminSecret is the Secret in the monitoring namespace that holds
// Grafana's admin login; install creates it (GrafanaAdminManifest).
const GrafanaAdminSecret = "perch-grafana-admin"

// MonitoringNamespace is where perch-monitoring runs, and the Secrets it
// reads live.
const MonitoringNamespace = "monitoring"

// MonitoringSecrets is a manifest for server/manifests with the
// monitoring namespace and the Secrets perch-monitoring reads: Grafana's
// admin login (when grafanaPassword is set) and the remote-write
// credentials (RemoteWriteSecret, keyed as the chart's values name them).
// It is kept out of the HelmChart so that no secret is in its values.
func MonitoringSecrets(grafanaPassword string, remoteWrite map[string][]byte) ([]byte, error) {
	objs := []any{map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": MonitoringNamespace}}}
	secret := func(name string, data map[string]any) map[string]any {
		return map[string]any{
			"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
			"metadata": map[string]any{"name": name, "namespace": MonitoringNamespace, "labels": map[string]any{LabelManagedBy: ManagedBy}},
			"data":     data,
		}
	}
	if grafanaPassword != "" {
		objs = append(objs, secret(GrafanaAdminSecret, map[string]any{
			"admin-user":     []byte("admin"),
			"admin-password": []byte(grafanaPassword),
		}))
	}
	if len(remoteWrite) > 0 {
		data := map[string]any{}
		for k, v := range remoteWrite {
			data[k] = v // []byte: base64 in data, any bytes a CA file holds
		}
		objs = append(objs, secret(RemoteWriteSecret, data))
	}
	var out []byte
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		out = append(append(out, "---\n"...), b...)
	}
	return out, nil
}

// RemoteWriteSecret holds the remote-write credentials perch-monitoring's
// Prometheus reads as files.
const RemoteWriteSecret = "perch-monitoring-remote-write"

// RemoteWriteKeys are the keys of RemoteWriteSecret an entry's files go
// under, as remoteWriteValues names them.
func RemoteWriteKeys(name string) (password, token, ca string) {
	return name + "-password", name + "-token", name + "-ca.crt"
}

// Labels on every HelmChart Perch renders, so whoever prunes apps a config
// no longer wants can list exactly Perch's.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "perch"
)

// App names. They name the HelmChart, the Helm release and the manifest
// file (k3s's Addon), so they must be RFC 1123 labels.
const (
	Analytics     = "perch-analytics"
	DevicePlugin  = "nvidia-device-plugin"
	DCGMExporter  = "dcgm-exporter"
	Monitoring    = "perch-monitoring"
	NVIDIARuntime = "nvidia" // the RuntimeClass k3s creates when it finds the NVIDIA runtime
)

// Chart is an upstream chart archive, as a bundle lists it.
type Chart struct {
	Name    string
	Version string
	// Path is the .tgz on this machine.
	Path string
}

// Inputs are what rendering needs besides the appliance.
type Inputs struct {
	// GPU is what the cluster's GPU nodes advertise together (a single
	// node's inventory, or every node's labels); none renders CPU-only.
	GPU gpu.Capacity
	// Charts are the upstream charts available, usually the bundle's. An
	// app whose chart is missing is not rendered (see Skipped).
	Charts []Chart
	// Assigned is where the deployed pipeline has each stream (stream ->
	// worker slot), so that a change moves as few streams as it can.
	Assigned map[string]string
	// Slots are the cluster's GPU worker slots, each on its node
	// (manifests.PlaceSlots); nil places the slots from GPU alone.
	Slots []manifests.Slot
	// Registry (host:port), when set, is written into every image the
	// charts let us override, under airgap's repository layout. Empty
	// keeps upstream image names, which registries.yaml mirrors to the
	// appliance registry on every node, agents included; a registry
	// address in image names only resolves on nodes whose registries.yaml
	// configures that very address.
	Registry string
	// PullSecret names a Secret every pod pulls with, where a chart allows
	// one; empty when containerd holds the credentials (registries.yaml).
	PullSecret string
	// RegistryMetrics is where Prometheus scrapes the Perch registry of
	// every server; nil when the appliance runs none.
	RegistryMetrics *RegistryMetrics
}

// RegistryMetrics is the Perch registry as Prometheus reaches it: its port
// on each server's address, and the appliance CA its certificate is
// checked against (a public certificate, not a secret).
type RegistryMetrics struct {
	Port int
	CA   []byte
}

// App is one rendered app: its HelmChart and the chart archive it installs.
type App struct {
	Name      string
	Namespace string // the release's namespace (spec.targetNamespace)
	// File is the manifest's path under the k3s data dir:
	// server/manifests/NAME.yaml.
	File      string
	HelmChart *v1.HelmChart
	YAML      []byte
	Chart     ChartFile
	// Values are what valuesContent holds, for tests and review.
	Values map[string]any
}

// ChartFile is a chart archive to put under server/static/charts.
type ChartFile struct {
	// Path is under the k3s data dir: server/static/charts/NAME-VERSION.tgz.
	Path string
	Data []byte
}

// app is one app the config may want, and why it is left out when it is.
type app struct {
	name, namespace string
	skip            string
	chart           func() (ChartFile, *chartInfo, error)
	values          func(*chartInfo) (map[string]any, error)
}

// Apps renders every app the config wants, in the order they should
// become ready: GPU access, then monitoring, then the exporters and the
// pipeline it scrapes.
func Apps(a *manifests.Appliance, in Inputs) ([]App, error) {
	var out []App
	for _, w := range wanted(a, in) {
		if w.skip != "" {
			continue
		}
		app, err := w.render()
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", w.name, err)
		}
		out = append(out, app)
	}
	return out, nil
}

// Skipped says, per app the config leaves out, why: for plans and for
// `perch manifests render`, so a missing app is never a silent surprise.
func Skipped(a *manifests.Appliance, in Inputs) []string {
	var out []string
	for _, w := range wanted(a, in) {
		if w.skip != "" {
			out = append(out, w.name+": "+w.skip)
		}
	}
	return out
}

// gpus is how many GPUs pods may use: none when gpu.mode is off.
func gpus(a *manifests.Appliance, in Inputs) int {
	if a.GPU.Off {
		return 0
	}
	return in.GPU.GPUs()
}

func wanted(a *manifests.Appliance, in Inputs) []app {
	upstream := func(name string) (Chart, bool) {
		i := slices.IndexFunc(in.Charts, func(c Chart) bool { return c.Name == name })
		if i < 0 {
			return Chart{}, false
		}
		return in.Charts[i], true
	}
	fromBundle := func(name string) func() (ChartFile, *chartInfo, error) {
		return func() (ChartFile, *chartInfo, error) {
			c, _ := upstream(name)
			return upstreamChart(c)
		}
	}
	n := gpus(a, in)
	v := values{a: a, in: in, gpus: n}

	// upstream charts only come with a bundle
	missing := func(name string) string {
		if len(in.Charts) == 0 {
			return "no bundle; set bundle.source to a bundle that carries its chart"
		}
		if _, ok := upstream(name); !ok {
			return "the bundle carries no " + name + " chart; add it to the bundle spec"
		}
		return ""
	}
	gpuSkip := func(name string) string {
		switch {
		case a.GPU.Off:
			return "gpu.mode is off"
		case n == 0:
			return "the node has no usable NVIDIA GPU"
		}
		return missing(name)
	}
	monSkip := ""
	if !a.Monitoring.Enabled {
		monSkip = "monitoring.enabled is false"
	}
	anaSkip := ""
	if !a.Pipeline.Enabled {
		anaSkip = "pipeline.enabled is false"
	}
	return []app{
		{name: DevicePlugin, namespace: "nvidia-device-plugin", skip: gpuSkip(DevicePlugin), chart: fromBundle(DevicePlugin), values: v.devicePlugin},
		{name: Monitoring, namespace: MonitoringNamespace, skip: monSkip, chart: embedded(manifests.MonitoringChart()), values: v.monitoring},
		{name: DCGMExporter, namespace: "nvidia-device-plugin", skip: gpuSkip(DCGMExporter), chart: fromBundle(DCGMExporter), values: v.dcgmExporter},
		{name: Analytics, namespace: "perch", skip: anaSkip, chart: embedded(manifests.AnalyticsChart()), values: v.analytics},
	}
}

func (w app) render() (App, error) {
	if err := CheckName(w.name); err != nil {
		return App{}, err
	}
	cf, info, err := w.chart()
	if err != nil {
		return App{}, err
	}
	vals, err := w.values(info)
	if err != nil {
		return App{}, err
	}
	valuesYAML, err := yaml.Marshal(vals)
	if err != nil {
		return App{}, fmt.Errorf("values: %w", err)
	}
	hc := &v1.HelmChart{
		TypeMeta: metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: "HelmChart"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      w.name,
			Namespace: HelmChartNamespace,
			Labels:    map[string]string{LabelManagedBy: ManagedBy},
		},
		Spec: v1.HelmChartSpec{
			TargetNamespace: w.namespace,
			CreateNamespace: true,
			Chart:           chartURL + path.Base(cf.Path),
			// ignored for a URL; says in the object which chart it is
			Version:       info.version,
			ValuesContent: string(valuesYAML),
		},
	}
	y, err := Encode(hc)
	if err != nil {
		return App{}, err
	}
	return App{
		Name:      w.name,
		Namespace: w.namespace,
		File:      path.Join(ManifestsDir, w.name+".yaml"),
		HelmChart: hc,
		YAML:      y,
		Chart:     cf,
		Values:    vals,
	}, nil
}

// CheckName refuses a name k3s or Kubernetes would: the manifest file's
// name becomes an Addon and the HelmChart's a Job, so both must be RFC 1123
// labels, short enough to carry the Job's prefix.
func CheckName(name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("name %q is not an RFC 1123 label (%s); use lower-case letters, digits and '-'", name, strings.Join(errs, "; "))
	}
	if n := len(jobPrefix + name); n > validation.DNS1123LabelMaxLength {
		return fmt.Errorf("name %q is too long: its install Job %s%s would have %d characters, more than %d", name, jobPrefix, name, n, validation.DNS1123LabelMaxLength)
	}
	return nil
}

// header marks the files as generated; k3s ignores comments.
const header = "# Written by perch from the appliance config; edits are overwritten on the next install.\n"

// Encode writes a HelmChart as k3s reads it from server/manifests:
// apiVersion and kind set, keys sorted, no empty status or null
// timestamps, so the same object is always the same bytes.
func Encode(hc *v1.HelmChart) ([]byte, error) {
	raw, err := json.Marshal(hc)
	if err != nil {
		return nil, fmt.Errorf("encode HelmChart %s: %w", hc.Name, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	if st, ok := obj["status"].(map[string]any); ok && len(st) == 0 {
		delete(obj, "status")
	}
	if md, ok := obj["metadata"].(map[string]any); ok && md["creationTimestamp"] == nil {
		delete(md, "creationTimestamp")
	}
	y, err := yaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode HelmChart %s: %w", hc.Name, err)
	}
	return append([]byte(header), y...), nil
}
