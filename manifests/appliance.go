package manifests

import "slices"

// Appliance is what the rendered apps depend on of an appliance config. Its
// fields follow the config's paths (gpu, pipeline, monitoring,
// k3s.disable), so an error here names the field a person edits. The apps
// step (installer/apps) fills it from a config that validation has
// accepted: every rule about the config lives there, and rendering trusts
// it.
type Appliance struct {
	GPU        GPU
	Pipeline   Pipeline
	Monitoring Monitoring
	K3s        K3s
}

type GPU struct {
	// Off is gpu.mode: off: pods get no GPU, whatever the node has.
	Off bool
	// Replicas is gpu.sharing.replicas: how many pods time-slice one GPU;
	// 1 means no sharing.
	Replicas int
}

type Pipeline struct {
	Enabled bool
	Streams []Stream
}

// Stream is one camera. Its URL may carry credentials: the values that
// hold it are written 0600.
type Stream struct{ Name, URL string }

type Monitoring struct {
	Enabled, Grafana, Alertmanager bool
	Retention, RetentionSize       string
	// ScrapeInterval is how often targets are scraped and rules run;
	// "" for the default.
	ScrapeInterval string
	// ExternalLabels tell this appliance's series apart in a central
	// store (monitoring.externalLabels).
	ExternalLabels map[string]string
	RemoteWrite    []RemoteWrite
}

// RemoteWrite is one central store Prometheus forwards to. Its secrets are
// not here: install puts them in a Secret (render.MonitoringSecrets); the
// flags say which the store needs.
type RemoteWrite struct {
	Name, URL, Username   string
	Password, BearerToken bool
	CA                    bool
}

type K3s struct {
	// Disable are the packaged components k3s does not run (k3s.disable).
	Disable []string
	// PauseImage and HelmJobImage are k3s's --pause-image and
	// --helm-job-image (k3s.extraArgs), "" for k3s's own.
	PauseImage, HelmJobImage string
	// EtcdMetrics: the servers run embedded etcd with its metrics exposed
	// (config.Appliance.EtcdMetrics), for Prometheus to scrape.
	EtcdMetrics bool
}

// ServiceType is how the appliance's web-facing Services (the gateway,
// Grafana) are exposed: through k3s's ServiceLB on the node's own
// addresses, which is what a person at the site opens, unless the config
// disables ServiceLB; then they stay inside the cluster (port-forward).
func (a *Appliance) ServiceType() string {
	if slices.Contains(a.K3s.Disable, "servicelb") {
		return "ClusterIP"
	}
	return "LoadBalancer"
}

// StorageProvisioner says whether k3s's local-path provisioner runs, which
// a PersistentVolumeClaim waits for.
func (a *Appliance) StorageProvisioner() bool {
	return !slices.Contains(a.K3s.Disable, "local-storage")
}
