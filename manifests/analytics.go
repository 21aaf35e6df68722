package manifests

import (
	"errors"
	"fmt"
	"slices"

	"github.com/perchedge/perch/installer/config"
)

// Env is what the values depend on besides the config: found on the node or
// decided by the install.
type Env struct {
	GPUs           int    // GPUs on the node; 0 = CPU-only profile
	Registry       string // host:port every image is pulled through, "" = upstream
	PullSecret     string // name of the pull Secret in the release namespace, "" = none
	MonitoringCRDs bool   // the Prometheus Operator CRDs are (or will be) installed
}

// mediaMTXReserved are path names MediaMTX gives a meaning of its own; a
// camera with one of them would capture every other path.
var mediaMTXReserved = map[string]bool{"all": true, "all_others": true}

// AnalyticsValues computes the perch-analytics values for an appliance. It
// returns only what the config decides; everything else keeps the chart's
// defaults (values.yaml). The stream-to-worker assignment is not computed
// here but in the chart, from the streams and GPU counts given here, so
// values edited by hand in a HelmChart still assign every stream once.
func AnalyticsValues(a *config.Appliance, env Env) (map[string]any, error) {
	if a == nil {
		return nil, errors.New("analytics values: no appliance config")
	}
	if env.GPUs < 0 {
		return nil, fmt.Errorf("analytics values: %d GPUs; the GPU probe must report 0 or more", env.GPUs)
	}
	replicas := a.GPU.Sharing.Replicas
	if replicas < 1 {
		return nil, fmt.Errorf("analytics values: gpu.sharing.replicas is %d; set it to 1 (no sharing) or more", replicas)
	}
	gpus := env.GPUs
	switch {
	case a.GPU.Mode == config.GPUOff:
		gpus = 0
	case a.GPU.Mode == config.GPURequired && gpus == 0:
		return nil, errors.New("analytics values: gpu.mode is required but the node has no GPU; install the NVIDIA driver or set gpu.mode: auto for the CPU-only profile")
	}

	streams := make([]any, 0, len(a.Pipeline.Streams))
	seen := map[string]bool{}
	for i, s := range a.Pipeline.Streams {
		switch {
		case s.Name == "" || s.URL == "":
			return nil, fmt.Errorf("analytics values: pipeline.streams[%d] needs a name and a url; run perch config validate", i)
		case seen[s.Name]:
			return nil, fmt.Errorf("analytics values: pipeline.streams[%d]: %q is used twice; stream names must be unique", i, s.Name)
		case mediaMTXReserved[s.Name]:
			return nil, fmt.Errorf("analytics values: pipeline.streams[%d]: %q is a reserved path name of the media gateway; rename the stream", i, s.Name)
		}
		seen[s.Name] = true
		streams = append(streams, map[string]any{"name": s.Name, "url": s.URL})
	}

	pullSecrets := []any{}
	if env.PullSecret != "" {
		pullSecrets = append(pullSecrets, map[string]any{"name": env.PullSecret})
	}
	return map[string]any{
		"global": map[string]any{
			"imageRegistry":    env.Registry,
			"imagePullSecrets": pullSecrets,
		},
		"streams": streams,
		"gpu": map[string]any{
			"count":           gpus,
			"sharingReplicas": replicas,
		},
		"gateway":   map[string]any{"enabled": a.Pipeline.Enabled, "service": map[string]any{"type": ServiceType(a)}},
		"inference": map[string]any{"enabled": a.Pipeline.Enabled},
		"nats":      natsValues(a),
		"monitoring": map[string]any{
			"enabled":    a.Monitoring.Enabled,
			"crds":       env.MonitoringCRDs,
			"dashboards": a.Monitoring.Grafana,
		},
	}, nil
}

// NATSHostPath is where JetStream keeps its store when k3s has no storage
// provisioner: local-path is what the chart's PVC would otherwise wait for.
const NATSHostPath = "/var/lib/perch/nats"

func natsValues(a *config.Appliance) map[string]any {
	v := map[string]any{"enabled": a.Pipeline.Enabled}
	if slices.Contains(a.K3s.Disable, "local-storage") {
		v["jetstream"] = map[string]any{"hostPath": NATSHostPath}
	}
	return v
}

// ServiceType is how the appliance's web-facing Services (the gateway,
// Grafana) are exposed: through k3s's ServiceLB on the node's own
// addresses, which is what a person at the site opens, unless the config
// disables ServiceLB; then they stay inside the cluster (port-forward).
func ServiceType(a *config.Appliance) string {
	if slices.Contains(a.K3s.Disable, "servicelb") {
		return "ClusterIP"
	}
	return "LoadBalancer"
}
