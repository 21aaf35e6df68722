// Package registry installs the appliance registry on a node: on a server
// its TLS and credentials, its service (started before k3s, outside
// Kubernetes, so it never waits for itself) and the bundle's images; on
// every node the trust in it and the registries.yaml that makes k3s pull
// every image through it.
package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/crypto/bcrypt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/airgap"
	"github.com/perchedge/perch/airgap/load"
	regsrv "github.com/perchedge/perch/airgap/registry"
	"github.com/perchedge/perch/installer/cluster"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/converge"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
)

// Host paths of the registry, under --root.
const (
	Dir          = "/etc/perch/registry"
	CACert       = Dir + "/ca.crt"
	CAKey        = Dir + "/ca.key"
	TLSCert      = Dir + "/tls.crt"
	TLSKey       = Dir + "/tls.key"
	Htpasswd     = Dir + "/htpasswd"
	PasswordPath = "/etc/perch/secrets/registry-password"
	StorageDir   = engine.StateDir + "/registry"
	ServiceName  = "perch-registry"
	// User is the one account of the registry: nodes pull with it, and
	// operators push with it.
	User = "perch"

	serviceStamp = engine.StateDir + "/registry-service.digest"
	imagesStamp  = engine.StateDir + "/registry-images.digest"
)

// Registry is the appliance registry of one node: its own on a server, its server's on
// an agent.
type Registry struct {
	n   *node.Node
	now func() time.Time
	// agent nodes run no registry and pull through their server's
	agent bool
	// secret is shared by every node that has the join token: the CA and
	// password derive from it, so agents trust their server's registry with
	// nothing copied between nodes. nil without a token (a single node).
	secret []byte
	// discover finds the hosts of the cluster's servers, each running a
	// registry from its own copy of the bundle (discoverServers; tests
	// give their own). It runs once per install (hosts).
	discover  func(context.Context) ([]string, error)
	hostsOnce sync.Once
	hostList  []string
}

// New returns the registry of a node, or nil when registry.enabled is off.
func New(n *node.Node) (*Registry, error) {
	if !n.Cfg.Registry.Enabled {
		return nil, nil
	}
	m := &Registry{n: n, now: time.Now, agent: n.Cfg.Node.Role == config.RoleAgent}
	m.discover = m.discoverServers
	tok, err := n.Token()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		// the password part of a full token, so "K10<hash>::server:PW"
		// and "PW" agree
		if _, after, ok := strings.Cut(tok, "::"); ok {
			tok = after
			if _, pw, ok := strings.Cut(after, ":"); ok {
				tok = pw
			}
		}
		m.secret = []byte("perch registry:" + tok)
	}
	if m.agent && m.secret == nil {
		return nil, nil // validation requires a token to join; nothing to derive from
	}
	return m, nil
}

// Addr is where a node of cfg reaches the appliance registry: itself on a
// server, the server it joins on an agent.
func Addr(cfg *config.Appliance) string {
	host := "127.0.0.1"
	if cfg.Node.Role == config.RoleAgent {
		if u, err := url.Parse(cfg.Node.ServerURL); err == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(cfg.Registry.Port))
}

func (m *Registry) addr() string { return Addr(m.n.Cfg) }

// TrustedCAs is the appliance CA, as install put it on the host, for
// clients of the registry.
func TrustedCAs(h *host.Host) (*x509.CertPool, error) {
	ca, err := h.ReadFile(CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no certificate; run perch install again", CACert)
	}
	return pool, nil
}

// OnServer says whether this node runs the registry; an agent only trusts
// its server's (Trust).
func (m *Registry) OnServer() bool { return !m.agent }

// Trust puts the appliance CA on an agent, which derives it from the join
// token: nothing is copied between nodes.
func (m *Registry) Trust() engine.Step {
	return &converge.FilesStep{Host: m.n.Host, StepName: "registry-trust", Files: func() ([]converge.File, error) {
		ca, _, err := regsrv.DeriveCA(m.secret, caName)
		return []converge.File{{Path: CACert, Data: ca, Mode: 0o644}}, err
	}}
}

// TLS keeps the appliance CA and this node's server certificate.
func (m *Registry) TLS() engine.Step { return &tlsStep{m} }

// Auth keeps the registry's password and htpasswd.
func (m *Registry) Auth() engine.Step { return &authStep{m} }

// Service runs the registry, restarted when what it read at start changed.
func (m *Registry) Service() engine.Step {
	return &converge.ServiceStep{Host: m.n.Host, Init: m.n.Init, StepName: "registry-service", Service: m.service, Digest: m.serviceDigest, Stamp: serviceStamp}
}

// Ready waits until the registry answers.
func (m *Registry) Ready() engine.Step { return &readyStep{m} }

// HasImages says whether the bundle has images for Images to load.
func (m *Registry) HasImages() bool {
	return m.n.Bundle != nil && len(m.n.Bundle.Manifest.Images) > 0
}

// Images loads the bundle's images into the registry's storage.
func (m *Registry) Images() engine.Step { return &imagesStep{m} }

func (m *Registry) service() host.Service {
	h := m.n.Host
	return host.Service{
		Name:        ServiceName,
		Description: "Perch appliance registry",
		Exec: []string{h.Path(node.PerchPath), "registry", "serve",
			"--dir", h.Path(StorageDir),
			"--addr", "0.0.0.0:" + strconv.Itoa(m.n.Cfg.Registry.Port),
			"--tls-cert", h.Path(TLSCert), "--tls-key", h.Path(TLSKey),
			"--htpasswd", h.Path(Htpasswd)},
		Env: map[string]string{"OTEL_TRACES_EXPORTER": "none"},
	}
}

// serviceDigest covers what the registry reads at start, its own binary
// included, so an upgraded perch restarts it.
func (m *Registry) serviceDigest() (string, error) {
	sum := sha256.New()
	svc, _ := json.Marshal(m.service())
	sum.Write(svc)
	for _, p := range []string{node.PerchPath, TLSCert, TLSKey, Htpasswd} {
		d, err := m.n.Host.Digest(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		sum.Write([]byte(d))
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
}

// certHosts are the names and addresses the server certificate covers:
// loopback for the node itself, its name and addresses for other nodes.
func (m *Registry) certHosts() []string {
	hosts := []string{"127.0.0.1", "::1", "localhost", m.n.Name}
	if ip := m.n.Cfg.Node.NodeIP; ip != "" {
		hosts = append(hosts, ip)
	}
	ifs, _ := net.Interfaces()
	for _, iface := range ifs {
		if clusterInterface(iface.Name) {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				hosts = append(hosts, n.IP.String())
			}
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// clusterInterface says whether an interface belongs to the cluster's pod
// network, which k3s creates after the first install: its address is no
// node address, and counting it would reissue the certificate, and restart
// the registry, on the second install.
func clusterInterface(name string) bool {
	if name == "cni0" || name == "docker0" || name == "tunl0" || name == "vxlan.calico" {
		return true
	}
	for _, p := range []string{"flannel", "kube-", "veth", "cali", "cilium", "lxc", "wg-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// tlsStep keeps a CA for the appliance and a server certificate for this
// node's current names: a CA once made is kept (nodes trust it), the
// certificate is reissued when the node's addresses change or it nears
// expiry.
type tlsStep struct{ m *Registry }

func (s *tlsStep) Name() string { return "registry-tls" }

// caName names the appliance CA in its certificate.
const caName = "Perch appliance CA"

// wantCA is the CA the node must have: derived from the cluster's secret,
// or, on a node without one, whatever it made before (nil: make one).
func (m *Registry) wantCA() (cert, key []byte, err error) {
	if m.secret != nil {
		return regsrv.DeriveCA(m.secret, caName)
	}
	return nil, nil, nil
}

func (s *tlsStep) Plan(context.Context) ([]engine.Change, error) {
	h := s.m.n.Host
	ca, caErr := h.ReadFile(CACert)
	_, keyErr := h.ReadFile(CAKey)
	want, _, err := s.m.wantCA()
	if err != nil {
		return nil, err
	}
	var cs []engine.Change
	switch {
	case caErr != nil || keyErr != nil:
		cs = append(cs,
			engine.Change{Action: engine.Create, Kind: engine.File, Target: CAKey, Detail: "appliance CA, secret"},
			engine.Change{Action: engine.Create, Kind: engine.File, Target: CACert, Detail: "appliance CA"})
	case want != nil && !bytes.Equal(ca, want):
		cs = append(cs,
			engine.Change{Action: engine.Update, Kind: engine.File, Target: CAKey, Detail: "the CA the cluster token gives, secret"},
			engine.Change{Action: engine.Update, Kind: engine.File, Target: CACert, Detail: "the CA the cluster token gives"})
	}
	cert, err := h.ReadFile(TLSCert)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cs = append(cs,
			engine.Change{Action: engine.Create, Kind: engine.File, Target: TLSKey, Detail: "secret"},
			engine.Change{Action: engine.Create, Kind: engine.File, Target: TLSCert, Detail: "for " + s.m.n.Name + " and its addresses"})
	case err != nil:
		return nil, err
	case len(cs) > 0 || !regsrv.CertCovers(cert, s.m.certHosts(), ca, s.m.now()):
		cs = append(cs,
			engine.Change{Action: engine.Update, Kind: engine.File, Target: TLSKey, Detail: "secret"},
			engine.Change{Action: engine.Update, Kind: engine.File, Target: TLSCert, Detail: "new node names or addresses, or near expiry: " + strings.Join(s.m.certHosts(), ", ")})
	}
	return cs, nil
}

func (s *tlsStep) Apply(_ context.Context, cs []engine.Change, _ *engine.Reporter) error {
	h, now := s.m.n.Host, s.m.now()
	ca, caErr := h.ReadFile(CACert)
	caKey, keyErr := h.ReadFile(CAKey)
	want, wantKey, err := s.m.wantCA()
	if err != nil {
		return err
	}
	if caErr != nil || keyErr != nil || (want != nil && !bytes.Equal(ca, want)) {
		ca, caKey = want, wantKey
		if ca == nil {
			if ca, caKey, err = regsrv.NewCA(caName+" "+s.m.n.Name, now); err != nil {
				return err
			}
		}
		// the key first: a CA certificate without its key is useless
		if _, err := h.WriteFile(CAKey, caKey, 0o600); err != nil {
			return err
		}
		if _, err := h.WriteFile(CACert, ca, 0o644); err != nil {
			return err
		}
	}
	cert, key, err := regsrv.IssueServerCert(ca, caKey, s.m.certHosts(), now)
	if err != nil {
		return err
	}
	if _, err := h.WriteFile(TLSKey, key, 0o600); err != nil {
		return err
	}
	_, err = h.WriteFile(TLSCert, cert, 0o644)
	return err
}

// authStep makes the registry password (0600, never logged) and the
// htpasswd file that holds its bcrypt hash.
type authStep struct{ m *Registry }

func (s *authStep) Name() string { return "registry-auth" }

// wantPassword is the cluster's derived password, or "" on a node that
// makes its own.
func (m *Registry) wantPassword() (string, error) {
	if m.secret == nil {
		return "", nil
	}
	return regsrv.DerivePassword(m.secret)
}

func (s *authStep) Plan(context.Context) ([]engine.Change, error) {
	h := s.m.n.Host
	var cs []engine.Change
	want, err := s.m.wantPassword()
	if err != nil {
		return nil, err
	}
	raw, err := h.ReadFile(PasswordPath)
	pw := strings.TrimSpace(string(raw))
	switch {
	case err != nil:
		cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.File, Target: PasswordPath, Detail: "mode 0600, secret"})
		pw = ""
	case want != "" && pw != want:
		cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.File, Target: PasswordPath, Detail: "mode 0600, secret, from the cluster token"})
		pw = want
	}
	ht, err := h.ReadFile(Htpasswd)
	switch {
	case err != nil:
		cs = append(cs, engine.Change{Action: engine.Create, Kind: engine.File, Target: Htpasswd, Detail: "mode 0600, user " + User})
	case pw == "" || !htpasswdMatches(ht, pw):
		cs = append(cs, engine.Change{Action: engine.Update, Kind: engine.File, Target: Htpasswd, Detail: "mode 0600, user " + User})
	}
	return cs, nil
}

func (s *authStep) Apply(context.Context, []engine.Change, *engine.Reporter) error {
	h := s.m.n.Host
	raw, err := h.ReadFile(PasswordPath)
	pw := strings.TrimSpace(string(raw))
	want, werr := s.m.wantPassword()
	if werr != nil {
		return werr
	}
	if err != nil || pw == "" || (want != "" && pw != want) {
		if pw = want; pw == "" {
			if pw, err = regsrv.RandomPassword(); err != nil {
				return err
			}
		}
		if _, err := h.WriteFile(PasswordPath, []byte(pw+"\n"), 0o600); err != nil {
			return err
		}
	}
	if ht, err := h.ReadFile(Htpasswd); err == nil && htpasswdMatches(ht, pw) {
		return nil
	}
	line, err := regsrv.HtpasswdLine(User, pw)
	if err != nil {
		return err
	}
	_, err = h.WriteFile(Htpasswd, []byte(line+"\n"), 0o600)
	return err
}

func htpasswdMatches(file []byte, pw string) bool {
	for _, line := range strings.Split(string(file), "\n") {
		if u, hash, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && u == User {
			return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
		}
	}
	return false
}

// readyStep waits until the registry answers over TLS with its health.
type readyStep struct{ m *Registry }

func (s *readyStep) Name() string { return "registry-ready" }

func (s *readyStep) Plan(ctx context.Context) ([]engine.Change, error) {
	if s.m.healthy(ctx) == nil {
		return nil, nil
	}
	return []engine.Change{{Action: engine.Wait, Kind: engine.Check, Target: "registry https://" + s.m.addr()}}, nil
}

func (s *readyStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	deadline := time.Now().Add(time.Minute)
	var err error
	for time.Now().Before(deadline) {
		if err = s.m.healthy(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	tail, _ := s.m.n.Init.LogTail(ctx, ServiceName, 20)
	return fmt.Errorf("the registry did not answer on https://%s within a minute: %v\nits log ends with:\n%s", s.m.addr(), err, tail)
}

func (m *Registry) client() (*http.Client, error) {
	pool, err := TrustedCAs(m.n.Host)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

func (m *Registry) healthy(ctx context.Context) error {
	c, err := m.client()
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+m.addr()+"/healthz", nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", resp.Status)
	}
	return nil
}

// imagesStep loads the bundle's images into the registry's storage,
// in-process, while the registry runs. It is a no-op once this bundle's
// images are in.
type imagesStep struct{ m *Registry }

func (s *imagesStep) Name() string { return "registry-images" }

func (s *imagesStep) want() string {
	m := s.m.n.Bundle.Manifest
	f, _ := m.File(path.Join(m.Layout.Path, "index.json"))
	return m.Name + " " + m.Version + " " + f.SHA256
}

func (s *imagesStep) Plan(context.Context) ([]engine.Change, error) {
	have, _ := s.m.n.Host.ReadFile(imagesStamp)
	if strings.TrimSpace(string(have)) == s.want() {
		return nil, nil
	}
	m := s.m.n.Bundle.Manifest
	return []engine.Change{{Action: engine.Create, Kind: engine.Images, Target: StorageDir,
		Detail: fmt.Sprintf("%d images, %s in %d blobs, from bundle %s %s", len(m.Images), engine.Bytes(m.Layout.Bytes), m.Layout.Blobs, m.Name, m.Version)}}, nil
}

func (s *imagesStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	e := s.m.n
	layout := e.Host.Path(path.Join(e.Bundle.Dir, e.Bundle.Manifest.Layout.Path))
	res, err := load.ToStorage(ctx, layout, e.Host.Path(StorageDir), load.Options{Progress: r.Progress})
	if err != nil {
		return err
	}
	r.Logf("%d images: %d blobs written (%s), %d already there", res.Images, res.Blobs-res.Skipped, engine.Bytes(res.Written), res.Skipped)
	_, err = e.Host.WriteFile(imagesStamp, []byte(s.want()+"\n"), 0o644)
	return err
}

// discoverTimeout bounds finding the cluster's servers: an install on a
// node cut off from them goes on with what registries.yaml lists.
const discoverTimeout = 15 * time.Second

// hosts are the registries this node pulls through, in the order
// containerd falls back through them: its own on a server, else the server
// it joins; then every other server of the cluster, sorted. When the
// servers cannot be listed (a first server before k3s runs, a server out
// of reach), the others are those registries.yaml lists now, so an
// unreachable peer does not rewrite it and restart k3s.
func (m *Registry) hosts() []string {
	m.hostsOnce.Do(func() {
		first, _, _ := net.SplitHostPort(m.addr())
		ctx, cancel := context.WithTimeout(context.Background(), discoverTimeout)
		defer cancel()
		found, err := m.discover(ctx)
		if err != nil {
			found = m.listedHosts()
		}
		own := m.certHosts()
		others := []string{}
		for _, h := range found {
			if h != first && (m.agent || !slices.Contains(own, h)) && net.ParseIP(h) != nil {
				others = append(others, h)
			}
		}
		slices.Sort(others)
		m.hostList = append([]string{first}, slices.Compact(others)...)
	})
	return m.hostList
}

// discoverServers lists the cluster's servers: from the server a node
// joins, with the token, before its own k3s runs (cluster.Servers); on a
// first server from its own API's endpoints, once k3s runs.
func (m *Registry) discoverServers(ctx context.Context) ([]string, error) {
	if u := m.n.Cfg.Node.ServerURL; u != "" {
		tok, err := m.n.Token()
		if err != nil {
			return nil, err
		}
		return cluster.Servers(ctx, u, tok)
	}
	if m.secret == nil {
		return nil, nil // a single server: no other registry shares its CA
	}
	cs, err := m.n.Kube(discoverTimeout)
	if err != nil {
		return nil, err
	}
	ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, sub := range ep.Subsets {
		for _, a := range sub.Addresses {
			out = append(out, a.IP)
		}
	}
	return out, nil
}

// listedHosts are the registry hosts registries.yaml configures now.
func (m *Registry) listedHosts() []string {
	raw, err := m.n.Host.ReadFile(node.RegistriesPath)
	if err != nil || len(raw) > maxRegistriesYAML {
		return nil
	}
	var doc struct {
		Configs map[string]any `json:"configs"`
	}
	if yaml.Unmarshal(raw, &doc) != nil {
		return nil
	}
	var out []string
	for hp := range doc.Configs {
		if h, port, err := net.SplitHostPort(hp); err == nil && port == strconv.Itoa(m.n.Cfg.Registry.Port) {
			out = append(out, h)
		}
	}
	return out
}

// maxRegistriesYAML bounds reading back the file Perch wrote, a few KiB.
const maxRegistriesYAML = 1 << 20

// DefaultRegistries are mirrored on agents, which do not see the bundle.
var DefaultRegistries = []string{"docker.io", "nvcr.io", "registry.k8s.io", "quay.io", "ghcr.io"}

// RegistriesYAML mirrors every registry the bundle's images come from to
// this node's registry, under the repository prefix the images were loaded
// with. nil when there is nothing to mirror.
func (m *Registry) RegistriesYAML() ([]byte, error) {
	type mirror struct {
		Endpoint []string          `json:"endpoint"`
		Rewrite  map[string]string `json:"rewrite"`
	}
	var registries []string
	if b := m.n.Bundle; b != nil {
		for _, im := range b.Manifest.Images {
			ref, err := name.ParseReference(im.Reference)
			if err != nil {
				return nil, fmt.Errorf("bundle image %s: %w", im.Reference, err)
			}
			registries = append(registries, ref.Context().RegistryStr())
		}
	} else if m.agent {
		// an agent does not see the bundle its server loaded: it mirrors
		// the registries appliance images come from
		registries = DefaultRegistries
	}
	if len(registries) == 0 {
		return nil, nil
	}
	port := strconv.Itoa(m.n.Cfg.Registry.Port)
	var endpoints []string
	for _, h := range m.hosts() {
		endpoints = append(endpoints, "https://"+net.JoinHostPort(h, port))
	}
	mirrors := map[string]mirror{}
	for _, reg := range registries {
		if reg == name.DefaultRegistry {
			reg = "docker.io"
		}
		mirrors[reg] = mirror{
			Endpoint: endpoints,
			Rewrite:  map[string]string{"^(.*)$": airgap.RegistryPrefix(reg) + "/$1"},
		}
	}
	raw, _ := m.n.Host.ReadFile(PasswordPath)
	pw := strings.TrimSpace(string(raw))
	if m.agent {
		var err error
		if pw, err = m.wantPassword(); err != nil {
			return nil, err
		}
	}
	// every server's registry has the same CA and password: both derive
	// from the cluster's token
	configs := map[string]any{}
	for _, h := range m.hosts() {
		configs[net.JoinHostPort(h, port)] = map[string]any{
			"auth": map[string]string{"username": User, "password": pw},
			"tls":  map[string]string{"ca_file": m.n.Host.Path(CACert)},
		}
	}
	doc := map[string]any{"mirrors": mirrors, "configs": configs}
	body, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Written by perch: every registry of the bundle's images is mirrored to the appliance registry.\n"), body...), nil
}
