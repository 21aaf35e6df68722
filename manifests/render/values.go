package render

import (
	"cmp"
	"fmt"
	"math/big"
	"regexp"

	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/gpu"
	"github.com/perchedge/perch/manifests"
)

// values is what every app's values are computed from.
type values struct {
	a    *manifests.Appliance
	in   Inputs
	gpus int
}

// gpuNodes keeps GPU daemons on the nodes Perch labelled as having GPUs;
// on others they could only crash-loop.
var gpuNodes = map[string]any{gpu.LabelPresent: "true"}

// gpuToleration lets GPU daemons onto nodes tainted for GPU work only.
var gpuToleration = map[string]any{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

// pullSecrets is the imagePullSecrets list of a chart, or nil.
func (e values) pullSecrets() []any {
	if e.in.PullSecret == "" {
		return nil
	}
	return []any{map[string]any{"name": e.in.PullSecret}}
}

// GPUResources is what the device plugin advertises for a capacity
// (gpu.Capacity.Resources), as the pipeline's values take it.
func GPUResources(c gpu.Capacity) []manifests.GPUResource {
	var out []manifests.GPUResource
	for _, r := range c.Resources() {
		out = append(out, manifests.GPUResource{Name: r.Name, Count: r.Count})
	}
	return out
}

// devicePlugin: the chart's keys as of nvidia-device-plugin 0.17.
func (e values) devicePlugin(info *chartInfo) (map[string]any, error) {
	mig := e.in.GPU.MIGStrategy()
	v := map[string]any{
		// without the nvidia runtime the plugin cannot see the GPUs
		"runtimeClassName": NVIDIARuntime,
		"migStrategy":      mig,
		"nodeSelector":     gpuNodes,
		// Perch writes GFD's labels itself (gpu/labels.go); GFD would
		// also pull in node-feature-discovery, whose chart condition
		// follows gfd.enabled
		"gfd": map[string]any{"enabled": false},
	}
	if r := e.a.GPU.Replicas; r > 1 {
		// every resource is shared, MIG instances too: the workers count
		// each as gpu.sharingReplicas slots
		shared := []any{}
		for _, res := range GPUResources(e.in.GPU) {
			shared = append(shared, map[string]any{"name": res.Name, "replicas": r})
		}
		if len(shared) == 0 {
			shared = append(shared, map[string]any{"name": "nvidia.com/gpu", "replicas": r})
		}
		cfg, err := yaml.Marshal(map[string]any{
			"version": "v1",
			"flags":   map[string]any{"migStrategy": mig},
			"sharing": map[string]any{"timeSlicing": map[string]any{
				"resources": shared,
			}},
		})
		if err != nil {
			return nil, err
		}
		v["config"] = map[string]any{
			"map":     map[string]any{"default": string(cfg)},
			"default": "default",
		}
	}
	if ps := e.pullSecrets(); ps != nil {
		v["imagePullSecrets"] = ps
	}
	return e.withImages(info, v)
}

// dcgmExporter: the chart's keys as of dcgm-exporter 4.x. Its
// ServiceMonitor is on by default, and a ServiceMonitor without the
// Prometheus Operator's CRDs fails the whole release; perch-monitoring
// finds its pods by their labels instead.
func (e values) dcgmExporter(info *chartInfo) (map[string]any, error) {
	v := map[string]any{
		"runtimeClassName": NVIDIARuntime,
		"nodeSelector":     gpuNodes,
		"tolerations":      []any{gpuToleration},
		"serviceMonitor":   map[string]any{"enabled": false},
	}
	if ps := e.pullSecrets(); ps != nil {
		v["imagePullSecrets"] = ps
	}
	return e.withImages(info, v)
}

// monitoring: the embedded perch-monitoring chart.
func (e values) monitoring(info *chartInfo) (map[string]any, error) {
	m := e.a.Monitoring
	size := cmp.Or(m.RetentionSize, DefaultRetentionSize)
	volume, err := prometheusVolume(size)
	if err != nil {
		return nil, err
	}
	storage := map[string]any{"size": volume}
	if !e.a.StorageProvisioner() {
		// a PVC would stay Pending without local-path
		storage["hostPath"] = PrometheusHostPath
	}
	prom := map[string]any{
		"retention":     cmp.Or(m.Retention, DefaultRetention),
		"retentionSize": size,
		"storage":       storage,
		"remoteWrite":   remoteWriteValues(m.RemoteWrite),
	}
	scrape := map[string]any{}
	if r := e.in.RegistryMetrics; r != nil && r.Port > 0 && len(r.CA) > 0 {
		scrape["registry"] = map[string]any{"port": r.Port, "ca": string(r.CA)}
	}
	if e.a.K3s.EtcdMetrics {
		scrape["etcd"] = map[string]any{"enabled": true}
	}
	labels := map[string]any{}
	for k, v := range m.ExternalLabels {
		labels[k] = v
	}
	v := map[string]any{
		"global": map[string]any{
			"imageRegistry":    e.in.Registry,
			"imagePullSecrets": nonNil(e.pullSecrets()),
		},
		"scrapeInterval":     cmp.Or(m.ScrapeInterval, DefaultScrapeInterval),
		"evaluationInterval": cmp.Or(m.ScrapeInterval, DefaultScrapeInterval),
		"externalLabels":     labels,
		"prometheus":         prom,
		"scrape":             scrape,
		"gpu":                map[string]any{"perGPU": PerGPU(e.gpus, e.a.GPU.Replicas, GPUResources(e.in.GPU))},
		"alertmanager":       map[string]any{"enabled": m.Alertmanager},
		"grafana": map[string]any{
			"enabled": m.Grafana,
			// on the node's addresses at :3000 (ServiceLB), where the
			// installer's last screen says to open it
			"service":     map[string]any{"type": e.a.ServiceType()},
			"adminSecret": GrafanaAdminSecret,
		},
	}
	return v, nil
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

// remoteWriteValues are the chart's remoteWrite entries: names of the keys
// in RemoteWriteSecret, never the secrets themselves.
func remoteWriteValues(rws []manifests.RemoteWrite) []any {
	out := []any{}
	for _, rw := range rws {
		pw, tok, ca := RemoteWriteKeys(rw.Name)
		v := map[string]any{"name": rw.Name, "url": rw.URL}
		if rw.Password {
			v["basicAuth"] = map[string]any{"username": rw.Username, "passwordKey": pw}
		}
		if rw.BearerToken {
			v["bearerTokenKey"] = tok
		}
		if rw.CA {
			v["caKey"] = ca
		}
		out = append(out, v)
	}
	return out
}

// PerGPU is how many nvidia.com/gpu the device plugin advertises per GPU,
// which PerchGPUsMissing compares DCGM's GPUs with: the sharing replicas,
// times MIG instances per GPU under MIG single; 1 without GPUs.
func PerGPU(gpus, replicas int, rs []manifests.GPUResource) float64 {
	if gpus <= 0 {
		return 1
	}
	n := gpus
	if len(rs) > 0 {
		n = 0
		for _, r := range rs {
			if r.Name == "nvidia.com/gpu" {
				n += r.Count
			}
		}
	}
	return float64(n*max(replicas, 1)) / float64(gpus)
}

// Defaults of the monitoring stack where the config leaves them out.
const (
	DefaultRetention      = "7d"
	DefaultScrapeInterval = "30s"
)

// PrometheusHostPath keeps Prometheus's TSDB on the node when k3s has no
// storage provisioner, so it survives the pod and k3s restarts.
const PrometheusHostPath = "/var/lib/perch/prometheus"

// DefaultRetentionSize bounds Prometheus when monitoring.retentionSize is
// not set: a time limit alone lets a busy appliance fill its disk first.
const DefaultRetentionSize = "10GB"

// LocalPathStorageClass is the class of k3s's local-path provisioner.
const LocalPathStorageClass = "local-path"

// promSizeUnits are the units of Prometheus's retention size, which it
// reads as powers of 1024 (KB = 1024 bytes).
var promSizeUnits = map[string]int64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50, "EB": 1 << 60}

var promSize = regexp.MustCompile(`^([0-9]+)(B|KB|MB|GB|TB|PB|EB)$`)

// prometheusVolume is the volume for a retention size: 20 % over it,
// whole Gi and at least 1Gi. retentionSize counts the blocks and the WAL,
// but Prometheus only deletes a block after it went over, and compaction
// writes the new block before removing the old ones.
func prometheusVolume(size string) (string, error) {
	m := promSize.FindStringSubmatch(size)
	if m == nil {
		return "", fmt.Errorf("monitoring.retentionSize %q is not a Prometheus size like 10GB", size)
	}
	n, ok := new(big.Int).SetString(m[1], 10)
	if !ok {
		return "", fmt.Errorf("monitoring.retentionSize %q is not a Prometheus size like 10GB", size)
	}
	bytes := n.Mul(n, big.NewInt(promSizeUnits[m[2]]))
	// ceil(bytes * 6/5 / Gi)
	gi := big.NewInt(5 << 30)
	v := new(big.Int).Mul(bytes, big.NewInt(6))
	v.Add(v, new(big.Int).Sub(gi, big.NewInt(1))).Div(v, gi)
	if v.Sign() == 0 {
		v.SetInt64(1)
	}
	return v.String() + "Gi", nil
}

// analytics: the embedded pipeline chart; its values are its own package's.
func (e values) analytics(*chartInfo) (map[string]any, error) {
	return manifests.AnalyticsValues(e.a, manifests.Node{
		GPUs:         e.gpus,
		GPUResources: GPUResources(e.in.GPU),
		Registry:     e.in.Registry,
		PullSecret:   e.in.PullSecret,
		Previous:     e.in.Assigned,
		Slots:        e.in.Slots,
	})
}

// withImages adds the registry overrides of the chart's images under v.
func (e values) withImages(info *chartInfo, v map[string]any) (map[string]any, error) {
	if e.in.Registry == "" {
		return v, nil
	}
	imgs, err := PullThrough(info.chart, e.in.Registry)
	if err != nil {
		return nil, err
	}
	return merge(imgs, v), nil
}

// merge lays over onto base, recursing into maps; over wins elsewhere.
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = merge(bm, om)
			continue
		}
		out[k] = v
	}
	return out
}
