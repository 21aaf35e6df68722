// Package config holds the Appliance config: the one input of every install,
// whether it comes from a file, PERCH_* variables, flags or the TUI.
package config

import (
	"slices"
	"strings"
	"time"
)

const (
	APIVersion = "perch.dev/v1alpha1"
	Kind       = "Appliance"
)

// Appliance is the whole config. Field tags name the config keys; the env
// variable of a key is PERCH_ plus its path in upper snake case
// (node.serverURL -> PERCH_NODE_SERVER_URL), and `flag` names the command
// line flag where one makes sense.
type Appliance struct {
	APIVersion string     `key:"apiVersion"`
	Kind       string     `key:"kind"`
	Node       Node       `key:"node"`
	Bundle     Bundle     `key:"bundle"`
	K3s        K3s        `key:"k3s"`
	Registry   Registry   `key:"registry"`
	GPU        GPU        `key:"gpu"`
	Pipeline   Pipeline   `key:"pipeline"`
	Monitoring Monitoring `key:"monitoring"`
}

type Role string

const (
	RoleServer Role = "server"
	RoleAgent  Role = "agent"
)

type Node struct {
	Hostname    string            `key:"hostname" flag:"hostname"`
	Role        Role              `key:"role" flag:"role"`
	ClusterInit bool              `key:"clusterInit" flag:"cluster-init"`
	ServerURL   string            `key:"serverURL" flag:"server-url"`
	Token       Secret            `key:"token"`
	TokenFile   string            `key:"tokenFile" flag:"token-file"`
	NodeIP      string            `key:"nodeIP" flag:"node-ip"`
	Labels      map[string]string `key:"labels"`
}

type Bundle struct {
	// Source is a path, a URL, or BundleAuto.
	Source    string `key:"source" flag:"bundle"`
	PublicKey string `key:"publicKey" flag:"pubkey"`
	// AllowMissing are images this node's config pulls that the bundle may
	// lack (loaded another way, or never scheduled here): install warns
	// instead of refusing, as bundle build --allow-missing does.
	AllowMissing []string `key:"allowMissing"`
}

// BundleAuto as bundle.source picks the bundle found on removable media.
const BundleAuto = "auto"

type K3s struct {
	// Binary is where the k3s binary comes from when no bundle is used.
	Binary         string        `key:"binary" flag:"k3s-binary"`
	ExtraArgs      []string      `key:"extraArgs"`
	Disable        []string      `key:"disable"`
	DisableAgent   bool          `key:"disableAgent"`
	DataDir        string        `key:"dataDir"`
	DefaultRuntime string        `key:"defaultRuntime"`
	ReadyTimeout   time.Duration `key:"readyTimeout"`
}

type Registry struct {
	Enabled bool `key:"enabled"`
	Port    int  `key:"port"`
}

type GPUMode string

const (
	GPUAuto     GPUMode = "auto"
	GPURequired GPUMode = "required"
	GPUOff      GPUMode = "off"
)

type GPU struct {
	Mode    GPUMode    `key:"mode" flag:"gpu-mode"`
	Sharing GPUSharing `key:"sharing"`
}

type GPUSharing struct {
	// Replicas is how many pods may share one GPU by time-slicing; 1 means
	// no sharing.
	Replicas int `key:"replicas"`
}

type Pipeline struct {
	Enabled bool     `key:"enabled"`
	Streams []Stream `key:"streams"`
}

type Stream struct {
	Name string `key:"name"`
	URL  string `key:"url"`
}

type Monitoring struct {
	Enabled   bool   `key:"enabled"`
	Retention string `key:"retention"`
	// RetentionSize caps Prometheus's storage (10GB): an edge box's disk
	// fills before a time limit is reached.
	RetentionSize string `key:"retentionSize"`
	Grafana       bool   `key:"grafana"`
	// Alertmanager routes alerts; off by default, since an offline
	// appliance often has no receiver to send to.
	Alertmanager bool `key:"alertmanager"`
	// ScrapeInterval is how often Prometheus scrapes and evaluates the
	// rules (30s).
	ScrapeInterval string `key:"scrapeInterval"`
	// ExternalLabels are added to every series that leaves the appliance
	// (remote write), so a central store tells sites apart; site defaults
	// to node.labels' perch.dev/site, else node.hostname.
	ExternalLabels map[string]string `key:"externalLabels"`
	// RemoteWrite are central Prometheus-compatible stores (Prometheus,
	// Mimir, Thanos, VictoriaMetrics) every sample is forwarded to.
	RemoteWrite []RemoteWrite `key:"remoteWrite"`
}

// RemoteWrite is one central store. Its credentials are files on the
// installing machine, read at install into a Secret; none is ever in the
// config itself, a plan or the HelmChart.
type RemoteWrite struct {
	// Name tells stores apart in Prometheus's metrics; default remote-N.
	Name string `key:"name"`
	URL  string `key:"url"`
	// Username and PasswordFile are HTTP basic auth.
	Username     string `key:"username"`
	PasswordFile string `key:"passwordFile"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer".
	BearerTokenFile string `key:"bearerTokenFile"`
	// CAFile is the PEM CA the store's certificate is checked against,
	// for a store whose CA the system does not know.
	CAFile string `key:"caFile"`
}

// Secret is a string that never shows up in logs, plans or errors. Saving a
// config file (TUI review screen) still writes the value: that file is
// written 0600.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

func (s Secret) GoString() string { return s.String() }

// Default is the config every loaded file starts from.
func Default() Appliance {
	return Appliance{
		APIVersion: APIVersion,
		Kind:       Kind,
		Node:       Node{Role: RoleServer},
		K3s: K3s{
			DataDir:      "/var/lib/rancher/k3s",
			ReadyTimeout: 5 * time.Minute,
		},
		Registry:   Registry{Enabled: true, Port: 5000},
		GPU:        GPU{Mode: GPUAuto, Sharing: GPUSharing{Replicas: 1}},
		Pipeline:   Pipeline{Enabled: true},
		Monitoring: Monitoring{Enabled: true, Retention: "7d", Grafana: true},
	}
}

// EtcdMetrics says whether this node's k3s exposes its embedded etcd's
// metrics (--etcd-expose-metrics, port 2381) for the appliance's
// Prometheus: a server that starts or joins an HA cluster runs etcd
// (servers join only etcd clusters), unless k3s.extraArgs name an
// external datastore; the SQLite datastore of a single server has no etcd,
// and the apiserver's etcd_* and kine series cover it. Without
// monitoring, nothing would read them.
func (a *Appliance) EtcdMetrics() bool { return a.Monitoring.Enabled && a.EmbeddedEtcd() }

// EmbeddedEtcd says whether this node's k3s runs a member of the cluster's
// embedded etcd: a server that starts or joins an HA cluster, unless
// k3s.extraArgs name an external datastore.
func (a *Appliance) EmbeddedEtcd() bool {
	if a.Node.Role != RoleServer || !(a.Node.ClusterInit || a.Node.ServerURL != "") {
		return false
	}
	return !slices.ContainsFunc(a.K3s.ExtraArgs, func(arg string) bool { return strings.HasPrefix(arg, "--datastore-endpoint") })
}
