package k3s

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
)

func env(t *testing.T, mod string) *K3s {
	t.Helper()
	doc := "apiVersion: perch.dev/v1alpha1\nkind: Appliance\n" + mod
	if !strings.Contains(mod, "k3s:") {
		doc += "\nk3s: {binary: /opt/k3s}"
	}
	cfg, err := config.LoadBytes([]byte(doc), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	h, err := host.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in, err := host.NewInit(h, "none", "/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	k := New(&node.Node{Cfg: &cfg, Host: h, Init: in, Name: "edge-01"}, nil)
	k.restrictOOMScoreAdj = false // what this machine lacks is not the test's business
	return k
}

func TestConfigFilePerRole(t *testing.T) {
	tests := []struct {
		name    string
		mod     string
		service string
		want    map[string]any // keys besides the ones every node has
	}{
		{"single server", "k3s: {binary: /opt/k3s, disable: [traefik]}", "k3s",
			map[string]any{"disable": []any{"traefik"}}},
		{"first HA server", "node: {clusterInit: true, token: s3cret-first-server, labels: {b: '2', a: '1'}}", "k3s",
			map[string]any{"cluster-init": true, "token-file": "ROOT/etc/perch/secrets/k3s-token", "node-label": []any{"a=1", "b=2"}, "etcd-expose-metrics": true}},
		{"joining server", "node: {serverURL: 'https://10.0.0.1:6443', tokenFile: /run/token, nodeIP: 10.0.0.2}", "k3s",
			map[string]any{"server": "https://10.0.0.1:6443", "token-file": "/run/token", "node-ip": "10.0.0.2", "etcd-expose-metrics": true}},
		// etcd's metrics are exposed only for a Prometheus to read, and
		// only where there is an etcd
		{"HA server without monitoring", "node: {clusterInit: true, token: s3cret-first-server}\nmonitoring: {enabled: false}", "k3s",
			map[string]any{"cluster-init": true, "token-file": "ROOT/etc/perch/secrets/k3s-token"}},
		{"server on an external datastore", "node: {serverURL: 'https://10.0.0.1:6443', tokenFile: /run/token}\nk3s: {binary: /opt/k3s, extraArgs: ['--datastore-endpoint=postgres://db:5432/k3s']}", "k3s",
			map[string]any{"server": "https://10.0.0.1:6443", "token-file": "/run/token"}},
		{"agent", "node: {role: agent, serverURL: 'https://10.0.0.1:6443', token: s3cret}\nk3s: {binary: /opt/k3s, disable: [traefik], defaultRuntime: nvidia}", "k3s-agent",
			// no server flag: k3s agent exits on one it does not define
			map[string]any{"server": "https://10.0.0.1:6443", "token-file": "ROOT/etc/perch/secrets/k3s-token", "default-runtime": "nvidia",
				"write-kubeconfig": nil, "write-kubeconfig-mode": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := env(t, tt.mod)
			body, err := e.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := yaml.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			root := e.n.Host.Root()
			want := map[string]any{
				"node-name":             "edge-01",
				"data-dir":              root + "/var/lib/rancher/k3s",
				"write-kubeconfig":      root + "/etc/rancher/k3s/k3s.yaml",
				"write-kubeconfig-mode": "0600",
			}
			for k, v := range tt.want {
				if s, ok := v.(string); ok && len(s) > 4 && s[:4] == "ROOT" {
					v = root + s[4:]
				}
				want[k] = v
				if v == nil {
					delete(want, k)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("config.yaml:\n got %v\nwant %v", got, want)
			}
			if e.ServiceName() != tt.service {
				t.Errorf("service %s, want %s", e.ServiceName(), tt.service)
			}
		})
	}
}

// An inline token lands in its own 0600 file and never in the plan text.
func TestTokenIsASecretFile(t *testing.T) {
	e := env(t, "node: {clusterInit: true, token: s3cret-first-server}")
	s := e.Config()
	cs, err := s.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.Change{
		{Action: engine.Create, Kind: engine.File, Target: ConfigPath, Detail: "mode 0600"},
		{Action: engine.Create, Kind: engine.File, Target: TokenPath, Detail: "mode 0600, secret"},
	}
	if !reflect.DeepEqual(cs, want) {
		t.Fatalf("plan %v", cs)
	}
	if err := s.Apply(context.Background(), cs, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := e.n.Host.Stat(TokenPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v %v", fi, err)
	}
	if cs, _ := s.Plan(context.Background()); len(cs) != 0 {
		t.Fatalf("plan after apply: %v", cs)
	}
	// A changed token changes what k3s read at start: restart needed.
	d1, _ := e.serviceDigest()
	e.n.Cfg.Node.Token = "other"
	if d2, _ := e.serviceDigest(); d1 == d2 {
		t.Fatal("token change does not change the service digest")
	}
}

func TestReadyWording(t *testing.T) {
	for mod, want := range map[string][2]string{
		"k3s: {binary: /opt/k3s, disableAgent: true}": {"the Kubernetes API", "the Kubernetes API to answer"},
		"": {"node edge-01", "node edge-01 to be Ready"},
		"node: {role: agent, serverURL: 'https://10.0.0.1:6443', token: t}": {"node edge-01", "node edge-01 to be Ready"},
	} {
		subject, plan := (&readyStep{env(t, mod)}).what()
		if subject != want[0] || plan != want[1] {
			t.Errorf("%q: got %q / %q", mod, subject, plan)
		}
	}
}

// TestPlanReadsK3sVersionWithoutRunningIt: the plan shows k3s's version,
// read from the binary's bytes. Running k3s.binary to ask would hand it the
// installer's environment (PERCH_NODE_TOKEN) before anything was installed.
func TestPlanReadsK3sVersionWithoutRunningIt(t *testing.T) {
	dir := t.TempDir()
	bin, ran := filepath.Join(dir, "k3s"), filepath.Join(dir, "ran")
	script := "#!/bin/sh\ntouch '" + ran + "'\necho 'k3s version v1.31.1+k3s1 (452dbbc1)'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	k := env(t, "k3s: {binary: "+bin+"}")
	changes, err := k.Binary().Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) == 0 || !strings.HasPrefix(changes[0].Detail, "v1.31.1+k3s1, ") {
		t.Errorf("plan = %+v, want the k3s binary's version in it", changes)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("planning ran k3s.binary")
	}
}
