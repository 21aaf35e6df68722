package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/manifests"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixture values: the image keys of the real charts, in their two styles
// (repository with the registry in it; registry and repository apart).
const (
	devicePluginValues = `image:
  repository: nvcr.io/nvidia/k8s-device-plugin
  tag: ""
runtimeClassName: null
migStrategy: null
gfd:
  enabled: false
`
	dcgmValues = `image:
  repository: nvcr.io/nvidia/k8s/dcgm-exporter
  tag: 4.2.3-4.1.3-ubuntu22.04
runtimeClassName: ""
serviceMonitor:
  enabled: true
  interval: 15s
`
	kpsValues = `global:
  imageRegistry: ""
  imagePullSecrets: []
prometheusOperator:
  image:
    registry: quay.io
    repository: prometheus-operator/prometheus-operator
    tag: ""
prometheus:
  prometheusSpec:
    image:
      registry: quay.io
      repository: prometheus/prometheus
      tag: v3.5.0
    retention: 10d
crds:
  upgradeJob:
    image:
      busybox:
        registry: docker.io
        repository: busybox
        tag: latest
`
	grafanaValues = `image:
  registry: docker.io
  repository: grafana/grafana
  tag: ""
sidecar:
  image:
    registry: quay.io
    repository: kiwigrid/k8s-sidecar
    tag: 1.30.0
`
)

// makeChart creates a chart with helm's own scaffold and the given values,
// packed reproducibly as the bundle builder would. No downloads.
func makeChart(t *testing.T, dir, name, version, values string, subs ...*chart.Chart) Chart {
	t.Helper()
	ch := scaffold(t, name, version, values)
	for _, s := range subs {
		ch.Metadata.Dependencies = append(ch.Metadata.Dependencies, &chart.Dependency{
			Name: s.Name(), Version: s.Metadata.Version, Condition: s.Name() + ".enabled",
		})
		ch.AddDependency(s)
	}
	data, err := Pack(ch)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+"-"+version+".tgz")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return Chart{Name: name, Version: version, Path: p}
}

func scaffold(t *testing.T, name, version, values string) *chart.Chart {
	t.Helper()
	tmp := t.TempDir()
	dir, err := chartutil.Create(name, tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "values.yaml"), []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	ch, err := loader.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ch.Metadata.Version = version
	return ch
}

// bundleCharts are the upstream charts a full bundle carries.
func bundleCharts(t *testing.T) []Chart {
	t.Helper()
	dir := t.TempDir()
	return []Chart{
		makeChart(t, dir, DevicePlugin, "0.17.1", devicePluginValues),
		makeChart(t, dir, DCGMExporter, "4.2.3", dcgmValues),
	}
}

func inventory(n int, mig ...bool) *gpu.Inventory {
	inv := &gpu.Inventory{DriverVersion: "550.54.15"}
	for i := 0; i < n; i++ {
		d := gpu.Device{Index: i, Name: "NVIDIA L4", UUID: fmt.Sprintf("GPU-%d", i), MemoryMiB: 23034}
		if i < len(mig) {
			d.MIGEnabled = mig[i]
		}
		inv.GPUs = append(inv.GPUs, d)
	}
	return inv
}

// defaults is what installer/apps makes of config.Default().
func defaults() *manifests.Appliance {
	return &manifests.Appliance{
		GPU:        manifests.GPU{Replicas: 1},
		Pipeline:   manifests.Pipeline{Enabled: true},
		Monitoring: manifests.Monitoring{Enabled: true, Retention: "7d", Grafana: true},
	}
}

func render(t *testing.T, a *manifests.Appliance, in Inputs) []App {
	t.Helper()
	apps, err := Apps(a, in)
	if err != nil {
		t.Fatal(err)
	}
	return apps
}

func names(apps []App) []string {
	var out []string
	for _, a := range apps {
		out = append(out, a.Name)
	}
	return out
}

func find(t *testing.T, apps []App, name string) App {
	t.Helper()
	for _, a := range apps {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no app %s among %v", name, names(apps))
	return App{}
}

// get walks values by a dotted path.
func get(v map[string]any, p string) any {
	var cur any = v
	for _, k := range strings.Split(p, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func TestGolden(t *testing.T) {
	charts := bundleCharts(t)
	noMon := defaults()
	noMon.Monitoring.Enabled = false
	shared := defaults()
	shared.GPU.Replicas = 4
	cases := []struct {
		name string
		a    *manifests.Appliance
		in   Inputs
		want []string
	}{
		{"gpu", shared, Inputs{GPU: inventory(1).Capacity(), Charts: charts}, []string{DevicePlugin, Monitoring, DCGMExporter, Analytics}},
		{"cpu", defaults(), Inputs{GPU: inventory(0).Capacity(), Charts: charts}, []string{Monitoring, Analytics}},
		{"gpu-no-monitoring", noMon, Inputs{GPU: inventory(2).Capacity(), Charts: charts}, []string{DevicePlugin, DCGMExporter, Analytics}},
		{"registry", shared, Inputs{GPU: inventory(1).Capacity(), Charts: charts, Registry: "10.0.0.5:5000", PullSecret: "perch-registry"}, []string{DevicePlugin, Monitoring, DCGMExporter, Analytics}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			apps := render(t, c.a, c.in)
			if got := names(apps); strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("apps %v, want %v", got, c.want)
			}
			var all bytes.Buffer
			for _, a := range apps {
				fmt.Fprintf(&all, "# %s\n%s---\n", a.File, a.YAML)
			}
			golden := filepath.Join("testdata", c.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, all.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update once, then review the diff)", err)
			}
			if !bytes.Equal(all.Bytes(), want) {
				t.Errorf("rendered manifests differ from %s (go test -update, then review the diff):\n%s", golden, all.String())
			}
		})
	}
}

func TestObjectsAreValidHelmCharts(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	dec := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	a := defaults()
	a.GPU.Replicas = 3
	apps := render(t, a, Inputs{GPU: inventory(1).Capacity(), Charts: bundleCharts(t)})
	if len(apps) != 4 {
		t.Fatalf("apps %v, want all four", names(apps))
	}
	for _, app := range apps {
		obj, gvk, err := dec.Decode(app.YAML, nil, nil)
		if err != nil {
			t.Fatalf("%s: strict decode: %v\n%s", app.File, err, app.YAML)
		}
		hc, ok := obj.(*v1.HelmChart)
		if !ok || gvk.Kind != "HelmChart" || gvk.GroupVersion() != v1.SchemeGroupVersion {
			t.Fatalf("%s decodes as %v (%T)", app.File, gvk, obj)
		}
		if err := CheckName(hc.Name); err != nil {
			t.Errorf("%s: %v", app.File, err)
		}
		if app.File != "server/manifests/"+hc.Name+".yaml" {
			t.Errorf("file %s for HelmChart %s", app.File, hc.Name)
		}
		if hc.Namespace != "kube-system" || !hc.Spec.CreateNamespace || hc.Spec.TargetNamespace == "" {
			t.Errorf("%s: namespace %q, createNamespace %v, targetNamespace %q", hc.Name, hc.Namespace, hc.Spec.CreateNamespace, hc.Spec.TargetNamespace)
		}
		if err := CheckName(hc.Spec.TargetNamespace); err != nil {
			t.Errorf("%s: targetNamespace: %v", hc.Name, err)
		}
		base := filepath.Base(app.Chart.Path)
		if want := "https://%{KUBERNETES_API}%/static/charts/" + base; hc.Spec.Chart != want {
			t.Errorf("%s: chart %q, want %q", hc.Name, hc.Spec.Chart, want)
		}
		if !strings.HasPrefix(app.Chart.Path, "server/static/charts/") || !strings.HasSuffix(base, ".tgz") {
			t.Errorf("%s: chart file %s", hc.Name, app.Chart.Path)
		}
		if hc.Spec.ChartContent != "" || bytes.Contains(app.YAML, []byte("chartContent")) {
			t.Errorf("%s: carries chartContent", hc.Name)
		}
		if hc.Labels[LabelManagedBy] != ManagedBy {
			t.Errorf("%s: labels %v", hc.Name, hc.Labels)
		}
		if _, err := loader.LoadArchive(bytes.NewReader(app.Chart.Data)); err != nil {
			t.Errorf("%s: chart archive: %v", hc.Name, err)
		}
		var vals map[string]any
		if err := yaml.Unmarshal([]byte(hc.Spec.ValuesContent), &vals); err != nil || len(vals) == 0 {
			t.Errorf("%s: valuesContent is not a YAML map: %v", hc.Name, err)
		}
	}
}

func TestDevicePluginValues(t *testing.T) {
	charts := bundleCharts(t)
	for _, c := range []struct {
		replicas int
		inv      *gpu.Inventory
		mig      string
	}{
		{1, inventory(1), "none"},
		{4, inventory(2), "none"},
		{7, inventory(2, true, true), "single"},
		{2, inventory(2, true, false), "mixed"},
	} {
		a := defaults()
		a.GPU.Replicas = c.replicas
		dp := find(t, render(t, a, Inputs{GPU: c.inv.Capacity(), Charts: charts}), DevicePlugin)
		var vals map[string]any
		if err := yaml.Unmarshal([]byte(dp.HelmChart.Spec.ValuesContent), &vals); err != nil {
			t.Fatal(err)
		}
		if get(vals, "runtimeClassName") != "nvidia" || get(vals, "gfd.enabled") != false {
			t.Errorf("replicas %d: %v", c.replicas, vals)
		}
		if ns, _ := vals["nodeSelector"].(map[string]any); ns["nvidia.com/gpu.present"] != "true" {
			t.Errorf("nodeSelector %v", vals["nodeSelector"])
		}
		if got := get(vals, "migStrategy"); got != c.mig {
			t.Errorf("%d GPUs MIG %v: migStrategy %v, want %s", len(c.inv.GPUs), c.inv.GPUs[0].MIGEnabled, got, c.mig)
		}
		cfg, _ := get(vals, "config.map.default").(string)
		if c.replicas == 1 {
			if get(vals, "config") != nil {
				t.Errorf("no sharing, yet a plugin config: %v", vals["config"])
			}
			continue
		}
		var plugin struct {
			Version string
			Flags   struct{ MigStrategy string }
			Sharing struct {
				TimeSlicing struct {
					Resources []struct {
						Name     string
						Replicas int
					}
				}
			}
		}
		if err := yaml.UnmarshalStrict([]byte(cfg), &plugin); err != nil {
			t.Fatalf("config.map.default %q: %v", cfg, err)
		}
		rs := plugin.Sharing.TimeSlicing.Resources
		if plugin.Version != "v1" || len(rs) != 1 || rs[0].Name != "nvidia.com/gpu" || rs[0].Replicas != c.replicas || plugin.Flags.MigStrategy != c.mig {
			t.Errorf("replicas %d: plugin config %+v", c.replicas, plugin)
		}
		if get(vals, "config.default") != "default" {
			t.Errorf("config.default %v", get(vals, "config.default"))
		}
	}
}

// dcgm-exporter's ServiceMonitor would need the Prometheus Operator's
// CRDs; perch-monitoring finds its pods by their labels instead.
func TestDCGMServiceMonitorOff(t *testing.T) {
	for _, mon := range []bool{true, false} {
		a := defaults()
		a.Monitoring.Enabled = mon
		d := find(t, render(t, a, Inputs{GPU: inventory(1).Capacity(), Charts: bundleCharts(t)}), DCGMExporter)
		if got := get(d.Values, "serviceMonitor.enabled"); got != false {
			t.Errorf("monitoring %v: serviceMonitor.enabled %v, want false", mon, got)
		}
		if get(d.Values, "runtimeClassName") != "nvidia" {
			t.Errorf("dcgm runtimeClassName %v", get(d.Values, "runtimeClassName"))
		}
	}
}

func TestMonitoringValues(t *testing.T) {
	a := defaults()
	a.Monitoring.Retention = "30d"
	a.Monitoring.Grafana = false
	a.Monitoring.ExternalLabels = map[string]string{"site": "depot-7"}
	m := find(t, render(t, a, Inputs{}), Monitoring)
	if m.Namespace != MonitoringNamespace {
		t.Errorf("namespace %s", m.Namespace)
	}
	for k, want := range map[string]any{
		"prometheus.retention":     "30d",
		"prometheus.retentionSize": DefaultRetentionSize,
		"alertmanager.enabled":     false,
		"grafana.enabled":          false,
		"grafana.adminSecret":      GrafanaAdminSecret,
		"scrapeInterval":           DefaultScrapeInterval,
		"externalLabels.site":      "depot-7",
		"gpu.perGPU":               float64(1),
	} {
		if got := get(m.Values, k); got != want {
			t.Errorf("%s = %v (%T), want %v", k, got, got, want)
		}
	}
	a.Monitoring.RetentionSize, a.Monitoring.Alertmanager, a.Monitoring.Grafana, a.Monitoring.ScrapeInterval = "20GB", true, true, "15s"
	m = find(t, render(t, a, Inputs{}), Monitoring)
	for k, want := range map[string]any{"prometheus.retentionSize": "20GB", "alertmanager.enabled": true, "grafana.enabled": true, "scrapeInterval": "15s", "evaluationInterval": "15s"} {
		if got := get(m.Values, k); got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if strings.Contains(string(m.YAML), "password") {
		t.Errorf("monitoring values carry a password:\n%s", m.YAML)
	}
}

// The registry is scraped over TLS with the appliance CA when this node
// runs one; remote-write values name Secret keys, never the secrets.
func TestMonitoringScrapesAndRemoteWrite(t *testing.T) {
	a := defaults()
	a.Monitoring.RemoteWrite = []manifests.RemoteWrite{
		{Name: "central", URL: "https://metrics.example.com/api/v1/write", Username: "depot-7", Password: true, CA: true},
		{Name: "backup", URL: "https://vm.example.com/api/v1/write", BearerToken: true},
	}
	in := Inputs{RegistryMetrics: &RegistryMetrics{Port: 5000, CA: []byte("-----BEGIN CERTIFICATE-----\n")}}
	m := find(t, render(t, a, in), Monitoring)
	if get(m.Values, "scrape.registry.port") != 5000 || get(m.Values, "scrape.registry.ca") != "-----BEGIN CERTIFICATE-----\n" {
		t.Errorf("registry scrape %v", get(m.Values, "scrape"))
	}
	rw, _ := get(m.Values, "prometheus.remoteWrite").([]any)
	if len(rw) != 2 {
		t.Fatalf("remoteWrite %v", rw)
	}
	c, b := rw[0].(map[string]any), rw[1].(map[string]any)
	pw, _, ca := RemoteWriteKeys("central")
	_, tok, _ := RemoteWriteKeys("backup")
	if get(c, "basicAuth.username") != "depot-7" || get(c, "basicAuth.passwordKey") != pw || c["caKey"] != ca || b["bearerTokenKey"] != tok || b["basicAuth"] != nil {
		t.Errorf("remoteWrite values %v", rw)
	}
	if get(find(t, render(t, a, Inputs{}), Monitoring).Values, "scrape.registry") != nil {
		t.Error("registry scraped on a node without one")
	}
	if get(m.Values, "scrape.etcd") != nil {
		t.Errorf("etcd scraped without embedded etcd: %v", get(m.Values, "scrape.etcd"))
	}
	a.K3s.EtcdMetrics = true
	if get(find(t, render(t, a, in), Monitoring).Values, "scrape.etcd.enabled") != true {
		t.Error("embedded etcd with its metrics exposed is not scraped")
	}
}

// PerchGPUsMissing compares capacity with GPUs x nvidia.com/gpu per GPU.
func TestPerGPU(t *testing.T) {
	for _, tt := range []struct {
		gpus, replicas int
		res            []manifests.GPUResource
		want           float64
	}{
		{0, 4, nil, 1},
		{2, 1, nil, 1},
		{2, 4, nil, 4},
		{1, 1, []manifests.GPUResource{{Name: "nvidia.com/gpu", Count: 7}}, 7}, // MIG single
		{2, 1, []manifests.GPUResource{{Name: "nvidia.com/gpu", Count: 1}, {Name: "nvidia.com/mig-1g.10gb", Count: 2}}, 0.5},
	} {
		if got := PerGPU(tt.gpus, tt.replicas, tt.res); got != tt.want {
			t.Errorf("PerGPU(%d, %d, %v) = %v, want %v", tt.gpus, tt.replicas, tt.res, got, tt.want)
		}
	}
}

// Prometheus keeps its data across a restart on a local-path volume sized
// from the retention bound plus headroom; without a provisioner, where a
// PVC would stay Pending, on a host directory.
func TestMonitoringStorage(t *testing.T) {
	tests := []struct {
		size, disable string
		wantSize      string
		wantHostPath  bool
	}{
		{"", "", "12Gi", false}, // DefaultRetentionSize 10GB
		{"10GB", "", "12Gi", false},
		{"512MB", "", "1Gi", false},
		{"100KB", "", "1Gi", false},
		{"50GB", "", "60Gi", false},
		{"1TB", "", "1229Gi", false},
		{"10GB", "local-storage", "12Gi", true},
	}
	for _, tt := range tests {
		t.Run(tt.size+"/"+tt.disable, func(t *testing.T) {
			a := defaults()
			a.Monitoring.RetentionSize = tt.size
			if tt.disable != "" {
				a.K3s.Disable = []string{tt.disable}
			}
			m := find(t, render(t, a, Inputs{}), Monitoring)
			want := tt.size
			if want == "" {
				want = DefaultRetentionSize
			}
			if got := get(m.Values, "prometheus.retentionSize"); got != want {
				t.Errorf("retentionSize %v, want %s: the TSDB must stay inside its volume", got, want)
			}
			if got := get(m.Values, "prometheus.storage.size"); got != tt.wantSize {
				t.Errorf("volume size %v, want %s", got, tt.wantSize)
			}
			hp := get(m.Values, "prometheus.storage.hostPath")
			if tt.wantHostPath != (hp == PrometheusHostPath) {
				t.Errorf("hostPath %v, want one: %v", hp, tt.wantHostPath)
			}
		})
	}
}

func TestRegistryOverrides(t *testing.T) {
	apps := render(t, defaults(), Inputs{GPU: inventory(1).Capacity(), Charts: bundleCharts(t), Registry: "10.0.0.5:5000", PullSecret: "perch-registry"})
	for _, c := range []struct{ app, key, want string }{
		{DevicePlugin, "image.repository", "10.0.0.5:5000/nvcr.io/nvidia/k8s-device-plugin"},
		{DCGMExporter, "image.repository", "10.0.0.5:5000/nvcr.io/nvidia/k8s/dcgm-exporter"},
		{Monitoring, "global.imageRegistry", "10.0.0.5:5000"},
	} {
		if got := get(find(t, apps, c.app).Values, c.key); got != c.want {
			t.Errorf("%s %s = %v, want %s", c.app, c.key, got, c.want)
		}
	}
	m := find(t, apps, Monitoring)
	if ps, _ := get(m.Values, "global.imagePullSecrets").([]any); len(ps) != 1 {
		t.Errorf("global.imagePullSecrets %v", get(m.Values, "global.imagePullSecrets"))
	}
	for _, name := range []string{DevicePlugin, DCGMExporter} {
		if ps, _ := get(find(t, apps, name).Values, "imagePullSecrets").([]any); len(ps) != 1 {
			t.Errorf("%s imagePullSecrets %v", name, ps)
		}
	}
	// without a registry, images keep their names for the registries.yaml mirror
	plain := render(t, defaults(), Inputs{GPU: inventory(1).Capacity(), Charts: bundleCharts(t)})
	if v := get(find(t, plain, DevicePlugin).Values, "image"); v != nil {
		t.Errorf("image overridden without a registry: %v", v)
	}
}

func TestWhatIsRendered(t *testing.T) {
	charts := bundleCharts(t)
	off := defaults()
	off.GPU.Off = true
	noPipe := defaults()
	noPipe.Pipeline.Enabled = false
	for _, c := range []struct {
		name string
		a    *manifests.Appliance
		in   Inputs
		want string
	}{
		{"gpu mode off", off, Inputs{GPU: inventory(2).Capacity(), Charts: charts}, Monitoring + "," + Analytics},
		{"no inventory", defaults(), Inputs{Charts: charts}, Monitoring + "," + Analytics},
		{"no bundle", defaults(), Inputs{GPU: inventory(1).Capacity()}, Monitoring + "," + Analytics},
		{"no pipeline", noPipe, Inputs{GPU: inventory(1).Capacity(), Charts: charts}, DevicePlugin + "," + Monitoring + "," + DCGMExporter},
	} {
		got := strings.Join(names(render(t, c.a, c.in)), ",")
		if got != c.want {
			t.Errorf("%s: apps %s, want %s", c.name, got, c.want)
		}
		if len(Skipped(c.a, c.in)) != 4-len(strings.Split(c.want, ",")) {
			t.Errorf("%s: skipped %q", c.name, Skipped(c.a, c.in))
		}
	}
	sk := strings.Join(Skipped(defaults(), Inputs{GPU: inventory(1).Capacity(), Charts: charts[1:]}), "\n")
	if !strings.Contains(sk, "nvidia-device-plugin: the bundle carries no nvidia-device-plugin chart") {
		t.Errorf("skipped reasons do not say the chart is missing:\n%s", sk)
	}
	sk = strings.Join(Skipped(defaults(), Inputs{GPU: inventory(1).Capacity()}), "\n")
	if !strings.Contains(sk, "dcgm-exporter: no bundle; set bundle.source") {
		t.Errorf("skipped reasons do not say there is no bundle:\n%s", sk)
	}
}

func TestDeterministic(t *testing.T) {
	charts := bundleCharts(t)
	a := defaults()
	a.GPU.Replicas = 2
	in := Inputs{GPU: inventory(1).Capacity(), Charts: charts, Registry: "10.0.0.5:5000"}
	first := render(t, a, in)
	time.Sleep(1100 * time.Millisecond) // a timestamp in an archive would now differ
	second := render(t, a, in)
	if len(first) != len(second) {
		t.Fatalf("%d apps, then %d", len(first), len(second))
	}
	for i := range first {
		if !bytes.Equal(first[i].YAML, second[i].YAML) {
			t.Errorf("%s: manifest differs between renders", first[i].Name)
		}
		if !bytes.Equal(first[i].Chart.Data, second[i].Chart.Data) || first[i].Chart.Path != second[i].Chart.Path {
			t.Errorf("%s: chart archive differs between renders", first[i].Name)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"perch-analytics", true},
		{"kube-prometheus-stack", true},
		{"perch_analytics", false},
		{"Perch", false},
		{"-perch", false},
		{"", false},
		{strings.Repeat("a", 50), true},
		{strings.Repeat("a", 51), false}, // helm-install-NAME past 63
	} {
		err := CheckName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", c.name)) {
			t.Errorf("error does not name %q: %v", c.name, err)
		}
	}
}

func TestMisnamedChart(t *testing.T) {
	charts := bundleCharts(t)
	wrong := charts[0]
	wrong.Name = DCGMExporter
	_, err := Apps(defaults(), Inputs{GPU: inventory(1).Capacity(), Charts: []Chart{charts[0], wrong}})
	if err == nil || !strings.Contains(err.Error(), "app dcgm-exporter") || !strings.Contains(err.Error(), `holds chart "nvidia-device-plugin"`) {
		t.Errorf("misnamed chart: %v", err)
	}
}

// Grafana's login and the remote-write credentials come from Secrets
// install writes, never from values.
func TestMonitoringSecrets(t *testing.T) {
	pw, _, ca := RemoteWriteKeys("central")
	raw, err := MonitoringSecrets("s3cret-pw", map[string][]byte{pw: []byte("rw-pass"), ca: []byte("PEM")})
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(strings.TrimPrefix(string(raw), "---\n"), "---\n")
	if len(docs) != 3 {
		t.Fatalf("%d documents, want a Namespace and two Secrets:\n%s", len(docs), raw)
	}
	got := map[string]map[string]string{}
	for _, d := range docs[1:] {
		var sec struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
			Data     map[string][]byte
		}
		if err := yaml.Unmarshal([]byte(d), &sec); err != nil {
			t.Fatal(err)
		}
		if sec.Kind != "Secret" || sec.Metadata.Namespace != MonitoringNamespace {
			t.Errorf("%s %s/%s", sec.Kind, sec.Metadata.Namespace, sec.Metadata.Name)
		}
		got[sec.Metadata.Name] = map[string]string{}
		for k, v := range sec.Data {
			got[sec.Metadata.Name][k] = string(v)
		}
	}
	if g := got[GrafanaAdminSecret]; g["admin-password"] != "s3cret-pw" || g["admin-user"] != "admin" {
		t.Errorf("grafana secret %v", g)
	}
	if r := got[RemoteWriteSecret]; r[pw] != "rw-pass" || r[ca] != "PEM" {
		t.Errorf("remote-write secret %v", r)
	}
	if strings.Contains(string(raw), "s3cret-pw") || strings.Contains(string(raw), "rw-pass") {
		t.Error("secrets in clear in the manifest; they belong base64 in data")
	}
	only, err := MonitoringSecrets("", nil)
	if err != nil || strings.Count(string(only), "kind: Secret") != 0 {
		t.Errorf("no secrets: %v\n%s", err, only)
	}
}

// What the device plugin advertises for an inventory: under MIG single
// every MIG instance is an nvidia.com/gpu; under mixed a MIG GPU's
// instances are nvidia.com/mig-<profile> and only the other GPUs are
// nvidia.com/gpu. The pipeline's workers request exactly these.
func TestGPUResources(t *testing.T) {
	mig := func(profiles ...string) []gpu.MIGDevice {
		var out []gpu.MIGDevice
		for _, p := range profiles {
			out = append(out, gpu.MIGDevice{Profile: p})
		}
		return out
	}
	single := inventory(2, true, true)
	single.GPUs[0].MIGDevices = mig("1g.5gb", "1g.5gb")
	single.GPUs[1].MIGDevices = mig("3g.20gb")
	mixed := inventory(3, true, false, true)
	mixed.GPUs[0].MIGDevices = mig("1g.5gb", "3g.20gb", "1g.5gb")
	mixed.GPUs[2].MIGDevices = mig("1g.5gb+me")
	for _, tt := range []struct {
		name string
		inv  *gpu.Inventory
		want []manifests.GPUResource
	}{
		{"no GPU", nil, nil},
		{"none", inventory(2), []manifests.GPUResource{{Name: "nvidia.com/gpu", Count: 2}}},
		{"single", single, []manifests.GPUResource{{Name: "nvidia.com/gpu", Count: 3}}},
		{"mixed", mixed, []manifests.GPUResource{
			{Name: "nvidia.com/gpu", Count: 1},
			{Name: "nvidia.com/mig-1g.5gb", Count: 2},
			{Name: "nvidia.com/mig-1g.5gb.me", Count: 1},
			{Name: "nvidia.com/mig-3g.20gb", Count: 1},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := GPUResources(tt.inv.Capacity()); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("GPUResources = %v, want %v", got, tt.want)
			}
		})
	}
	// time-slicing shares every advertised resource, MIG ones included
	a := defaults()
	a.GPU.Replicas = 2
	dp := find(t, render(t, a, Inputs{GPU: mixed.Capacity(), Charts: bundleCharts(t)}), DevicePlugin)
	cfg, _ := get(dp.Values, "config.map.default").(string)
	for _, name := range []string{"nvidia.com/gpu", "nvidia.com/mig-1g.5gb", "nvidia.com/mig-3g.20gb"} {
		if !strings.Contains(cfg, "name: "+name+"\n") {
			t.Errorf("device plugin config shares no %s:\n%s", name, cfg)
		}
	}
	an := find(t, render(t, a, Inputs{GPU: mixed.Capacity(), Charts: bundleCharts(t)}), Analytics)
	if got := get(an.Values, "gpu.resources"); fmt.Sprint(got) == "[]" || got == nil {
		t.Errorf("analytics gpu.resources %v, want the mixed resources", got)
	}
}
