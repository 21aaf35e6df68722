package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/util/validation"
)

// managedArgs are k3s flags Perch writes from the config itself, by name
// without dashes (k3s's flag parser takes -name and --name alike, and
// each alias); setting them again in extraArgs would make two sources of
// truth, and put a token on k3s's command line, where ps shows it.
var managedArgs = map[string]string{
	"config": "perch writes it", "c": "perch writes it",
	"data-dir": "k3s.dataDir", "d": "k3s.dataDir",
	"token": "node.token", "t": "node.token", "token-file": "node.tokenFile",
	"server": "node.serverURL", "s": "node.serverURL",
	"cluster-init": "node.clusterInit",
	"node-ip":      "node.nodeIP", "i": "node.nodeIP",
	"node-name":                         "node.hostname",
	"node-label":                        "node.labels",
	"disable":                           "k3s.disable",
	"disable-agent":                     "k3s.disableAgent",
	"default-runtime":                   "k3s.defaultRuntime",
	"private-registry":                  "registry.enabled",
	"disable-default-registry-endpoint": "registry.enabled",
	"write-kubeconfig":                  "perch writes it", "o": "perch writes it",
	"write-kubeconfig-mode": "perch writes it",
}

// secretArgs are k3s flags whose value is a secret: on k3s's command line
// every user of the machine could read it in ps.
var secretArgs = map[string]string{
	"agent-token":        "--agent-token-file=PATH with the token in a 0600 file",
	"etcd-s3-secret-key": "the AWS_SECRET_ACCESS_KEY of k3s's environment",
	"etcd-s3-access-key": "the AWS_ACCESS_KEY_ID of k3s's environment",
}

// argName is a k3s flag's name as its parser reads it: one or two leading
// dashes, the value after "=".
func argName(a string) string {
	name, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
	return name
}

// Components k3s 1.31 can leave out (k3s server --help, --disable).
var disableable = []string{"coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes"}

var (
	promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
	// Prometheus's --storage.tsdb.retention.size units
	promSize    = regexp.MustCompile(`^[0-9]+(B|KB|MB|GB|TB|PB|EB)$`)
	runtimeName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// gatewayReserved are path names MediaMTX reads as "every path without an
// entry of its own": a stream so named would be fed every other camera.
var gatewayReserved = []string{"all", "all_others"}

// Validate checks a decoded config and returns every problem, each with its
// key and a fix. It only looks at the config itself: files it names are
// checked when a plan is made on the target machine.
func Validate(c *Appliance) FieldErrors {
	var es FieldErrors
	if c.APIVersion != APIVersion {
		es.add("apiVersion", "must be %s, got %q", APIVersion, c.APIVersion)
	}
	if c.Kind != Kind {
		es.add("kind", "must be %s, got %q", Kind, c.Kind)
	}
	validateNode(c, &es)
	validateK3s(c, &es)
	if c.Bundle.PublicKey != "" && c.Bundle.Source == "" {
		es.add("bundle.publicKey", "is set but bundle.source is empty; set the bundle to verify or remove the key")
	}
	if c.Bundle.Source != "" && c.Bundle.PublicKey == "" {
		es.add("bundle.publicKey", "required with bundle.source: the .pub file the bundle was signed with (perch bundle keygen made it)")
	}
	for i, im := range c.Bundle.AllowMissing {
		if _, err := name.ParseReference(im); err != nil {
			es.add(fmt.Sprintf("bundle.allowMissing[%d]", i), "%q is not an image reference (%v); write it as the bundle lists it, such as nvcr.io/nvidia/deepstream:7.1-triton-multiarch", im, err)
		}
	}
	if c.Bundle.Source != "" && c.K3s.Binary != "" {
		es.add("k3s.binary", "is set together with bundle.source; the bundle carries k3s, so remove k3s.binary")
	}
	if c.Registry.Port < 1 || c.Registry.Port > 65535 {
		es.add("registry.port", "must be a port between 1 and 65535, got %d", c.Registry.Port)
	} else if c.Registry.Port == 6443 || c.Registry.Port == 10250 {
		es.add("registry.port", "%d is used by k3s; pick another port such as 5000", c.Registry.Port)
	}
	switch c.GPU.Mode {
	case GPUAuto, GPURequired, GPUOff:
	default:
		es.add("gpu.mode", "must be auto, required or off, got %q", c.GPU.Mode)
	}
	if c.GPU.Sharing.Replicas < 1 || c.GPU.Sharing.Replicas > 64 {
		es.add("gpu.sharing.replicas", "must be between 1 (no sharing) and 64, got %d", c.GPU.Sharing.Replicas)
	}
	validatePipeline(c, &es)
	if c.Monitoring.Retention != "" && !promDuration.MatchString(c.Monitoring.Retention) {
		es.add("monitoring.retention", "%q is not a Prometheus duration; write it like 7d or 12h", c.Monitoring.Retention)
	}
	if c.Monitoring.RetentionSize != "" && !promSize.MatchString(c.Monitoring.RetentionSize) {
		es.add("monitoring.retentionSize", "%q is not a Prometheus size; write it like 10GB or 512MB", c.Monitoring.RetentionSize)
	}
	validateMonitoring(c, &es)
	return es.sorted()
}

var (
	promLabelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	rwName        = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$`)
)

// maxRemoteWrites bounds the stores one appliance forwards to: each keeps
// its own queue and WAL reader.
const maxRemoteWrites = 8

// MinClusterToken is the shortest node.token a first server accepts.
const MinClusterToken = 16

func validateMonitoring(c *Appliance, es *FieldErrors) {
	m := &c.Monitoring
	if m.ScrapeInterval != "" {
		if d, err := time.ParseDuration(m.ScrapeInterval); err != nil || !promDuration.MatchString(m.ScrapeInterval) || d < 5*time.Second || d > 5*time.Minute {
			es.add("monitoring.scrapeInterval", "%q must be a duration from 5s to 5m, like 30s", m.ScrapeInterval)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.ExternalLabels)) {
		f := "monitoring.externalLabels." + Clip(k)
		switch v := m.ExternalLabels[k]; {
		case !promLabelName.MatchString(k) || strings.HasPrefix(k, "__") || len(k) > 64:
			es.add(f, "is not a Prometheus label name; use letters, digits and _ (not starting with __), up to 64")
		case len(v) > 256 || !utf8.ValidString(v):
			es.add(f, "the value must be UTF-8, up to 256 bytes")
		}
	}
	if len(m.RemoteWrite) > maxRemoteWrites {
		es.add("monitoring.remoteWrite", "has %d stores; at most %d", len(m.RemoteWrite), maxRemoteWrites)
		return
	}
	seen := map[string]bool{}
	for i, rw := range m.RemoteWrite {
		f := fmt.Sprintf("monitoring.remoteWrite[%d]", i)
		name := RemoteWriteName(i, rw)
		switch {
		case !rwName.MatchString(name):
			es.add(f+".name", "%q must be lower-case letters, digits and '-', up to 32", Clip(name))
		case seen[name]:
			es.add(f+".name", "%q names another store too; give each its own", name)
		}
		seen[name] = true
		u, err := url.Parse(rw.URL)
		switch {
		case rw.URL == "":
			es.add(f+".url", "required: the store's remote-write endpoint, such as https://metrics.example.com/api/v1/write")
			continue
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			es.add(f+".url", "%q is not an http(s) URL with a host; write it like https://metrics.example.com/api/v1/write", RedactURL(rw.URL))
			continue
		case u.User != nil:
			es.add(f+".url", "carries credentials; put them in username and passwordFile, which never show in a plan")
		}
		if (rw.Username == "") != (rw.PasswordFile == "") {
			es.add(f+".passwordFile", "basic auth needs both username and passwordFile")
		}
		if rw.PasswordFile != "" && rw.BearerTokenFile != "" {
			es.add(f+".bearerTokenFile", "is set together with basic auth; a store takes one of them")
		}
		for _, p := range []struct{ key, v string }{{"passwordFile", rw.PasswordFile}, {"bearerTokenFile", rw.BearerTokenFile}, {"caFile", rw.CAFile}} {
			if p.v != "" && !path.IsAbs(p.v) {
				es.add(f+"."+p.key, "must be an absolute path, got %q", Clip(p.v))
			}
		}
		if u.Scheme == "http" {
			if rw.PasswordFile != "" || rw.BearerTokenFile != "" {
				es.add(f+".url", "is http://, which would send the credentials in clear; use https://")
			}
			if rw.CAFile != "" {
				es.add(f+".caFile", "is set for an http:// URL, which has no TLS; use https:// or remove caFile")
			}
		}
	}
}

// RemoteWriteName is a store's name: its own, or remote-N by position.
func RemoteWriteName(i int, rw RemoteWrite) string {
	if rw.Name != "" {
		return rw.Name
	}
	return fmt.Sprintf("remote-%d", i)
}

func validateNode(c *Appliance, es *FieldErrors) {
	n := &c.Node
	if n.Hostname != "" {
		for _, msg := range validation.IsDNS1123Subdomain(n.Hostname) {
			es.add("node.hostname", "%q is not a valid node name: %s", n.Hostname, msg)
		}
	}
	switch n.Role {
	case RoleServer, RoleAgent:
	default:
		es.add("node.role", "must be server or agent, got %q", n.Role)
	}
	joining := n.ServerURL != ""
	if n.Role == RoleAgent && !joining {
		es.add("node.serverURL", "required when node.role is agent; set it to https://SERVER:6443")
	}
	if n.ClusterInit && n.Role != RoleServer {
		es.add("node.clusterInit", "only a server can start a cluster; remove it or set node.role: server")
	}
	if n.ClusterInit && joining {
		es.add("node.clusterInit", "starts a new cluster, node.serverURL joins one; keep only one of them")
	}
	if joining {
		validateServerURL(n.ServerURL, es)
	}
	if n.Token != "" && n.TokenFile != "" {
		es.add("node.token", "node.token and node.tokenFile are both set; keep one")
	}
	if joining && n.Token == "" && n.TokenFile == "" {
		es.add("node.token", "required to join %s; set node.token or node.tokenFile to the token of the first server (/var/lib/rancher/k3s/server/token there)", RedactURL(n.ServerURL))
	}
	// Every node that joins later derives the registry's CA and password
	// from the token (installer/registry): a first server without one
	// would make random ones that no joining node could know.
	if n.ClusterInit && n.Token == "" && n.TokenFile == "" {
		es.add("node.token", "required for the first server of a cluster: every node that joins uses the same token, and trusts the appliance registry through it; set node.token to a long random string (openssl rand -hex 24) or node.tokenFile to a 0600 file holding one")
	}
	if n.ClusterInit && n.Token != "" && len(n.Token) < MinClusterToken {
		es.add("node.token", "is %d characters; a cluster's token guards its datastore and its registry's credentials: use at least %d (openssl rand -hex 24)", len(n.Token), MinClusterToken)
	}
	if n.Token != "" && strings.ContainsAny(string(n.Token), " \t\n") {
		es.add("node.token", "must not contain whitespace")
	}
	if n.TokenFile != "" && !path.IsAbs(n.TokenFile) {
		es.add("node.tokenFile", "must be an absolute path, got %q", n.TokenFile)
	}
	if n.NodeIP != "" && net.ParseIP(n.NodeIP) == nil {
		es.add("node.nodeIP", "%q is not an IP address", n.NodeIP)
	}
	for _, k := range sortedKeys(n.Labels) {
		p := "node.labels." + k
		for _, msg := range validation.IsQualifiedName(k) {
			es.add(p, "invalid label key: %s", msg)
		}
		for _, msg := range validation.IsValidLabelValue(n.Labels[k]) {
			es.add(p, "invalid label value %q: %s", n.Labels[k], msg)
		}
		if prefix, _, ok := strings.Cut(k, "/"); ok && (strings.HasSuffix(prefix, "kubernetes.io") || strings.HasSuffix(prefix, "k8s.io")) {
			es.add(p, "the kubelet may not set labels under %s; use your own prefix such as perch.dev/", prefix)
		}
	}
}

func validateServerURL(s string, es *FieldErrors) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		es.add("node.serverURL", "%q must look like https://SERVER:6443", RedactURL(s))
		return
	}
	// without a port k3s dials 443, where no k3s listens
	if u.Port() == "" {
		es.add("node.serverURL", "%q has no port; k3s servers listen on 6443: https://%s:6443", RedactURL(s), u.Hostname())
	} else if !validPort(u.Port()) {
		es.add("node.serverURL", "port %q is not a port number (1 to 65535)", u.Port())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Path != "" && u.Path != "/" {
		es.add("node.serverURL", "must be only https://SERVER:PORT, without a user, path, query or fragment, got %q", RedactURL(s))
	}
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

func validateK3s(c *Appliance, es *FieldErrors) {
	k := &c.K3s
	if k.Binary == "" && c.Bundle.Source == "" {
		es.add("k3s.binary", "required: the path of the k3s binary to install, unless a bundle is named (bundle.source, PERCH_BUNDLE_SOURCE, or install --bundle)")
	}
	if k.Binary != "" && !path.IsAbs(k.Binary) {
		es.add("k3s.binary", "must be an absolute path, got %q", k.Binary)
	}
	for i, a := range k.ExtraArgs {
		p := fmt.Sprintf("k3s.extraArgs[%d]", i)
		// never echo an item: it may be the value of a secret flag
		// given as a separate item (--token, SECRET)
		if !strings.HasPrefix(a, "-") || argName(a) == "" {
			es.add(p, "is not a flag; write each flag and its value as one item, --flag=value")
			continue
		}
		name := argName(a)
		flag, _, _ := strings.Cut(a, "=") // as written, without its value
		if owner, ok := managedArgs[name]; ok {
			if owner == "perch writes it" {
				es.add(p, "%s is managed by perch; remove it", flag)
			} else {
				es.add(p, "%s is set from %s; use that key instead", flag, owner)
			}
		}
		if instead, ok := secretArgs[name]; ok {
			es.add(p, "%s would put a secret on k3s's command line, where ps shows it; use %s", flag, instead)
		}
	}
	seen := map[string]bool{}
	for i, d := range k.Disable {
		p := fmt.Sprintf("k3s.disable[%d]", i)
		if !slices.Contains(disableable, d) {
			es.add(p, "%q is not a k3s component; valid: %s", d, strings.Join(disableable, ", "))
		}
		if seen[d] {
			es.add(p, "%q is listed twice", d)
		}
		seen[d] = true
	}
	if k.DisableAgent && c.Node.Role != RoleServer {
		es.add("k3s.disableAgent", "only a server can run without an agent; remove it")
	}
	if !path.IsAbs(k.DataDir) {
		es.add("k3s.dataDir", "must be an absolute path, got %q", k.DataDir)
	}
	if k.DefaultRuntime != "" && !runtimeName.MatchString(k.DefaultRuntime) {
		es.add("k3s.defaultRuntime", "%q is not a runtime handler name such as nvidia", k.DefaultRuntime)
	}
	if k.ReadyTimeout < 10*time.Second || k.ReadyTimeout > 2*time.Hour {
		es.add("k3s.readyTimeout", "must be between 10s and 2h, got %s", k.ReadyTimeout)
	}
}

func validatePipeline(c *Appliance, es *FieldErrors) {
	names := map[string]int{}
	for i, s := range c.Pipeline.Streams {
		p := fmt.Sprintf("pipeline.streams[%d]", i)
		if s.Name == "" {
			es.add(p+".name", "required: a short name such as gate-1")
		} else {
			for _, msg := range validation.IsDNS1123Label(s.Name) {
				es.add(p+".name", "%q: %s", s.Name, msg)
			}
			if slices.Contains(gatewayReserved, s.Name) {
				es.add(p+".name", "%q is reserved by the media gateway, where it matches every other stream's path; give the stream another name such as gate-1", s.Name)
			}
			if j, dup := names[s.Name]; dup {
				es.add(p+".name", "%q is already the name of pipeline.streams[%d]", s.Name, j)
			}
			names[s.Name] = i
		}
		if s.URL == "" {
			es.add(p+".url", "required: the camera's rtsp:// URL")
			continue
		}
		u, err := url.Parse(s.URL)
		if err != nil || u.Host == "" {
			es.add(p+".url", "%q is not a URL such as rtsp://CAMERA:554/stream", RedactURL(s.URL))
			continue
		}
		switch u.Scheme {
		case "rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp":
		default:
			es.add(p+".url", "scheme %q is not supported; use rtsp, rtsps, rtmp, http(s), srt or udp", u.Scheme)
		}
		// A query stays: cameras put the channel there (Dahua's
		// realmonitor?channel=1&subtype=0) and SRT its stream id. A fragment
		// never reaches a camera; it is a mistake, often a # in a password.
		if port := u.Port(); port != "" && !validPort(port) || strings.HasSuffix(u.Host, ":") {
			es.add(p+".url", "port %q is not a port number (1 to 65535)", u.Port())
		}
		if u.Fragment != "" || strings.HasSuffix(s.URL, "#") {
			es.add(p+".url", "has a #fragment, which no camera reads; write a # in a password as %s", "%23")
		}
	}
}

// RedactURL is the one place URLs with credentials are made safe to show:
// it hides the user and password of a camera URL, even of one too broken to
// parse, so error messages and screens never carry them.
func RedactURL(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 && i < at {
		start = i + 3
	}
	return s[:start] + "***" + s[at:]
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
