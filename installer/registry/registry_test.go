package registry

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	regsrv "github.com/perchedge/perch/airgap/registry"
	"github.com/perchedge/perch/bundles"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
)

func newRegistry(t *testing.T, mod string) *Registry {
	t.Helper()
	cfg, err := config.LoadBytes([]byte("apiVersion: perch.dev/v1alpha1\nkind: Appliance\nk3s: {binary: /opt/k3s}\n"+mod), "yaml")
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
	m, err := New(&node.Node{Cfg: &cfg, Host: h, Init: in, Name: "edge-01"})
	if err != nil || m == nil {
		t.Fatal("no registry for a server")
	}
	// unit tests reach no cluster (TestRegistriesYAMLListsEveryServer
	// gives one)
	m.discover = func(context.Context) ([]string, error) { return nil, errors.New("no cluster here") }
	return m
}

// Every server runs a registry from its own copy of the bundle: a node
// lists them all, the one it uses first, so containerd falls back to the
// next when one is down; an unreachable cluster keeps the list as it was.
func TestRegistriesYAMLListsEveryServer(t *testing.T) {
	bundle := &node.Bundle{Manifest: &bundles.Manifest{Images: []bundles.Image{{Reference: "docker.io/library/nats:2.10"}}}}
	endpoints := func(m *Registry) ([]string, []string) {
		t.Helper()
		b, err := m.RegistriesYAML()
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Mirrors map[string]struct{ Endpoint []string }
			Configs map[string]struct {
				Auth struct{ Password string }
			}
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		var configs []string
		for hp, c := range doc.Configs {
			if c.Auth.Password == "" {
				t.Errorf("%s has no password", hp)
			}
			configs = append(configs, hp)
		}
		slices.Sort(configs)
		return doc.Mirrors["docker.io"].Endpoint, configs
	}
	servers := func(context.Context) ([]string, error) { return []string{"10.77.0.3", "10.77.0.1", "10.77.0.2"}, nil }

	agent := newRegistry(t, "node: {role: agent, serverURL: 'https://10.77.0.2:6443', token: s3cret-cluster-token}")
	agent.n.Bundle, agent.discover = bundle, servers
	ep, configs := endpoints(agent)
	if want := []string{"https://10.77.0.2:5000", "https://10.77.0.1:5000", "https://10.77.0.3:5000"}; !slices.Equal(ep, want) {
		t.Errorf("agent endpoints %v, want %v: the server it joins, then the others", ep, want)
	}
	if want := []string{"10.77.0.1:5000", "10.77.0.2:5000", "10.77.0.3:5000"}; !slices.Equal(configs, want) {
		t.Errorf("agent configs %v, want %v", configs, want)
	}

	// a joining server uses its own registry first; its own address is
	// in the list too, and is not a second endpoint
	srv := newRegistry(t, "node: {serverURL: 'https://10.77.0.1:6443', token: s3cret-cluster-token, nodeIP: 10.77.0.3}")
	srv.n.Bundle, srv.discover = bundle, servers
	srv.n.Host.WriteFile(PasswordPath, []byte("pw\n"), 0o600)
	written, err := srv.RegistriesYAML()
	if err != nil {
		t.Fatal(err)
	}
	if ep, _ := endpoints(srv); !slices.Equal(ep, []string{"https://127.0.0.1:5000", "https://10.77.0.1:5000", "https://10.77.0.2:5000"}) {
		t.Errorf("joining server endpoints %v", ep)
	}

	// the next run cannot reach the cluster: what registries.yaml says holds
	again := newRegistry(t, "node: {serverURL: 'https://10.77.0.1:6443', token: s3cret-cluster-token, nodeIP: 10.77.0.3}")
	again.n.Host, again.n.Bundle = srv.n.Host, bundle
	if _, err := again.n.Host.WriteFile(node.RegistriesPath, written, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := again.RegistriesYAML(); string(b) != string(written) {
		t.Errorf("an unreachable cluster rewrote registries.yaml:\n%s\nwas\n%s", b, written)
	}
}

func TestNoRegistryWhenDisabled(t *testing.T) {
	cfg, err := config.LoadBytes([]byte("apiVersion: perch.dev/v1alpha1\nkind: Appliance\nk3s: {binary: /opt/k3s}\nregistry: {enabled: false}"), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := New(&node.Node{Cfg: &cfg}); m != nil || err != nil {
		t.Errorf("a registry was planned (%v)", err)
	}
}

// A server and an agent that share the join token (written two ways) agree
// on the CA and password with nothing copied between them: the agent
// trusts the certificate the server's registry presents, and mirrors to it.
func TestAgentTrustsItsServersRegistry(t *testing.T) {
	srv := newRegistry(t, "node: {clusterInit: true, token: s3cret-cluster-token}")
	agent := newRegistry(t, "node: {role: agent, serverURL: 'https://10.0.0.1:6443', token: 'K10abcdef::server:s3cret-cluster-token'}")
	if !agent.agent || agent.addr() != "10.0.0.1:5000" {
		t.Fatalf("agent mirror %+v at %s", agent, agent.addr())
	}
	ctx := context.Background()
	for _, s := range []engine.Step{&tlsStep{srv}, &authStep{srv}} {
		cs, _ := s.Plan(ctx)
		must(t, s.Apply(ctx, cs, nil))
	}
	if agent.OnServer() {
		t.Fatal("an agent runs a registry of its own")
	}
	trust := agent.Trust()
	cs, err := trust.Plan(ctx)
	must(t, err)
	must(t, trust.Apply(ctx, cs, nil))
	srvCA, _ := srv.n.Host.ReadFile(CACert)
	agentCA, _ := agent.n.Host.ReadFile(CACert)
	if string(srvCA) != string(agentCA) {
		t.Fatal("server and agent derived different CAs")
	}
	cert, _ := srv.n.Host.ReadFile(TLSCert)
	if !regsrv.CertCovers(cert, srv.certHosts(), agentCA, time.Now()) {
		t.Error("the agent's CA does not verify the server's certificate")
	}
	b, err := agent.RegistriesYAML()
	must(t, err)
	pw, _ := srv.n.Host.ReadFile(PasswordPath)
	for _, want := range []string{"https://10.0.0.1:5000", "10.0.0.1:5000:", "password: " + strings.TrimSpace(string(pw)), "nvcr.io:", "registry.k8s.io:"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("agent registries.yaml lacks %q:\n%s", want, b)
		}
	}
	// a rerun on the server changes nothing
	for _, s := range []engine.Step{&tlsStep{srv}, &authStep{srv}} {
		if cs, _ := s.Plan(ctx); len(cs) != 0 {
			t.Errorf("%s: plan after apply %v", s.Name(), cs)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TLS and credentials converge: made once, then left alone on every rerun,
// with the secrets at 0600.
func TestTLSAndAuthConverge(t *testing.T) {
	m := newRegistry(t, "")
	ctx := context.Background()
	for _, s := range []engine.Step{&tlsStep{m}, &authStep{m}} {
		cs, err := s.Plan(ctx)
		if err != nil || len(cs) == 0 {
			t.Fatalf("%s: fresh plan %v, %v", s.Name(), cs, err)
		}
		if err := s.Apply(ctx, cs, nil); err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		if cs, err := s.Plan(ctx); err != nil || len(cs) != 0 {
			t.Errorf("%s: plan after apply %v, %v", s.Name(), cs, err)
		}
	}
	for _, p := range []string{CAKey, TLSKey, Htpasswd, PasswordPath} {
		fi, err := m.n.Host.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", p, fi, err)
		}
	}
	// a changed password means a new htpasswd, nothing else
	m.n.Host.WriteFile(PasswordPath, []byte("another\n"), 0o600)
	cs, _ := (&authStep{m}).Plan(ctx)
	if len(cs) != 1 || cs[0].Target != Htpasswd || cs[0].Action != engine.Update {
		t.Errorf("plan after a password change: %v", cs)
	}
	// another node address means a new certificate from the same CA
	ca, _ := m.n.Host.ReadFile(CACert)
	m.n.Cfg.Node.NodeIP = "192.0.2.77"
	cs, _ = (&tlsStep{m}).Plan(ctx)
	if len(cs) != 2 || cs[1].Target != TLSCert || !strings.Contains(cs[1].Detail, "192.0.2.77") {
		t.Fatalf("plan after a new node IP: %v", cs)
	}
	if err := (&tlsStep{m}).Apply(ctx, cs, nil); err != nil {
		t.Fatal(err)
	}
	if after, _ := m.n.Host.ReadFile(CACert); string(after) != string(ca) {
		t.Error("the CA was replaced; nodes that trust it would stop pulling")
	}
}

func TestRegistriesYAMLMirrorsTheBundlesRegistries(t *testing.T) {
	m := newRegistry(t, "registry: {port: 5443}")
	if b, err := m.RegistriesYAML(); b != nil || err != nil {
		t.Fatalf("without a bundle: %s, %v", b, err)
	}
	m.n.Bundle = &node.Bundle{Manifest: &bundles.Manifest{Images: []bundles.Image{
		{Reference: "docker.io/bluenviron/mediamtx:1.9.3"},
		{Reference: "docker.io/library/nats:2.10"},
		{Reference: "nvcr.io/nvidia/deepstream:7.1-triton"},
		{Reference: "10.0.0.5:5000/site/tool@sha256:" + strings.Repeat("a", 64)},
	}}}
	m.n.Host.WriteFile(PasswordPath, []byte("pw\n"), 0o600)
	b, err := m.RegistriesYAML()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Mirrors map[string]struct {
			Endpoint []string
			Rewrite  map[string]string
		}
		Configs map[string]struct {
			Auth struct{ Username, Password string }
			TLS  struct {
				CAFile string `json:"ca_file"`
			}
		}
	}
	if err := yaml.UnmarshalStrict(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want := map[string]string{"docker.io": "docker.io/$1", "nvcr.io": "nvcr.io/$1", "10.0.0.5:5000": "10.0.0.5_5000/$1"}
	if len(doc.Mirrors) != len(want) {
		t.Errorf("mirrors %v, want %v", doc.Mirrors, want)
	}
	for reg, rewrite := range want {
		mr := doc.Mirrors[reg]
		if len(mr.Endpoint) != 1 || mr.Endpoint[0] != "https://127.0.0.1:5443" || mr.Rewrite["^(.*)$"] != rewrite {
			t.Errorf("mirror %s: %+v, want endpoint https://127.0.0.1:5443 and rewrite to %s", reg, mr, rewrite)
		}
	}
	c := doc.Configs["127.0.0.1:5443"]
	if c.Auth.Username != User || c.Auth.Password != "pw" || c.TLS.CAFile != m.n.Host.Path(CACert) {
		t.Errorf("configs: %+v", doc.Configs)
	}
}

func TestClusterInterfacesAreNoNodeAddress(t *testing.T) {
	for name, want := range map[string]bool{
		"eth0": false, "enp3s0": false, "wlan0": false, "bond0": false, "br-lan": false,
		"cni0": true, "flannel.1": true, "flannel-wg": true, "kube-ipvs0": true, "veth1a2b3c": true, "cali123": true, "cilium_host": true,
	} {
		if got := clusterInterface(name); got != want {
			t.Errorf("clusterInterface(%q) = %v, want %v", name, got, want)
		}
	}
}
