// Package mirror puts the appliance registry on a server node: its TLS and
// credentials, its service (started before k3s, outside Kubernetes, so it
// never waits for itself), the bundle's images, and the registries.yaml that
// makes k3s pull every image through it.
package mirror

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
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/crypto/bcrypt"
	"sigs.k8s.io/yaml"

	"github.com/perchedge/perch/airgap"
	"github.com/perchedge/perch/airgap/load"
	"github.com/perchedge/perch/airgap/registry"
	"github.com/perchedge/perch/installer/config"
	"github.com/perchedge/perch/installer/engine"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/k3s"
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

// Mirror is the registry of one node: its own on a server, its server's on
// an agent.
type Mirror struct {
	e   *k3s.Env
	now func() time.Time
	// agent nodes run no registry and pull through their server's
	agent bool
	// secret is shared by every node that has the join token: the CA and
	// password derive from it, so agents trust their server's registry with
	// nothing copied between nodes. nil without a token (a single node).
	secret []byte
}

// New returns the registry of a node, or nil when registry.enabled is off.
func New(e *k3s.Env) (*Mirror, error) {
	if !e.Cfg.Registry.Enabled {
		return nil, nil
	}
	m := &Mirror{e: e, now: time.Now, agent: e.Cfg.Node.Role == config.RoleAgent}
	tok, err := e.Token()
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

// addr is where this node reaches the registry: itself on a server, the
// server it joins on an agent.
func (m *Mirror) addr() string {
	host := "127.0.0.1"
	if m.agent {
		if u, err := url.Parse(m.e.Cfg.Node.ServerURL); err == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(m.e.Cfg.Registry.Port))
}

// Steps come before k3s's own: registry up, images loaded, then k3s starts
// and finds its mirror ready. An agent only needs to trust its server's CA.
func (m *Mirror) Steps() []engine.Step {
	e := m.e
	if m.agent {
		return []engine.Step{&k3s.FilesStep{Env: e, StepName: "registry-trust", Files: func() ([]k3s.WantFile, error) {
			ca, _, err := registry.DeriveCA(m.secret, caName)
			return []k3s.WantFile{{Path: CACert, Data: ca, Mode: 0o644}}, err
		}}}
	}
	steps := []engine.Step{
		&tlsStep{m},
		&authStep{m},
		&k3s.ServiceStep{Env: e, StepName: "registry-service", Service: m.service, Digest: m.serviceDigest, Stamp: serviceStamp},
		&readyStep{m},
	}
	if e.Bundle != nil && len(e.Bundle.Manifest.Images) > 0 {
		steps = append(steps, &imagesStep{m})
	}
	return steps
}

func (m *Mirror) service() host.Service {
	h := m.e.Host
	return host.Service{
		Name:        ServiceName,
		Description: "Perch appliance registry",
		Exec: []string{h.Path(k3s.PerchPath), "registry", "serve",
			"--dir", h.Path(StorageDir),
			"--addr", "0.0.0.0:" + strconv.Itoa(m.e.Cfg.Registry.Port),
			"--tls-cert", h.Path(TLSCert), "--tls-key", h.Path(TLSKey),
			"--htpasswd", h.Path(Htpasswd)},
		Env: map[string]string{"OTEL_TRACES_EXPORTER": "none"},
	}
}

// serviceDigest covers what the registry reads at start, its own binary
// included, so an upgraded perch restarts it.
func (m *Mirror) serviceDigest() (string, error) {
	sum := sha256.New()
	svc, _ := json.Marshal(m.service())
	sum.Write(svc)
	for _, p := range []string{k3s.PerchPath, TLSCert, TLSKey, Htpasswd} {
		d, err := m.e.Host.Digest(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		sum.Write([]byte(d))
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
}

// certHosts are the names and addresses the server certificate covers:
// loopback for the node itself, its name and addresses for other nodes.
func (m *Mirror) certHosts() []string {
	hosts := []string{"127.0.0.1", "::1", "localhost", m.e.NodeName}
	if ip := m.e.Cfg.Node.NodeIP; ip != "" {
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
type tlsStep struct{ m *Mirror }

func (s *tlsStep) Name() string { return "registry-tls" }

// caName names the appliance CA in its certificate.
const caName = "Perch appliance CA"

// wantCA is the CA the node must have: derived from the cluster's secret,
// or, on a node without one, whatever it made before (nil: make one).
func (m *Mirror) wantCA() (cert, key []byte, err error) {
	if m.secret != nil {
		return registry.DeriveCA(m.secret, caName)
	}
	return nil, nil, nil
}

func (s *tlsStep) Plan(context.Context) ([]engine.Change, error) {
	h := s.m.e.Host
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
			engine.Change{Action: engine.Create, Kind: engine.File, Target: TLSCert, Detail: "for " + s.m.e.NodeName + " and its addresses"})
	case err != nil:
		return nil, err
	case len(cs) > 0 || !registry.CertCovers(cert, s.m.certHosts(), ca, s.m.now()):
		cs = append(cs,
			engine.Change{Action: engine.Update, Kind: engine.File, Target: TLSKey, Detail: "secret"},
			engine.Change{Action: engine.Update, Kind: engine.File, Target: TLSCert, Detail: "new node names or addresses, or near expiry: " + strings.Join(s.m.certHosts(), ", ")})
	}
	return cs, nil
}

func (s *tlsStep) Apply(_ context.Context, cs []engine.Change, _ *engine.Reporter) error {
	h, now := s.m.e.Host, s.m.now()
	ca, caErr := h.ReadFile(CACert)
	caKey, keyErr := h.ReadFile(CAKey)
	want, wantKey, err := s.m.wantCA()
	if err != nil {
		return err
	}
	if caErr != nil || keyErr != nil || (want != nil && !bytes.Equal(ca, want)) {
		ca, caKey = want, wantKey
		if ca == nil {
			if ca, caKey, err = registry.NewCA(caName+" "+s.m.e.NodeName, now); err != nil {
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
	cert, key, err := registry.IssueServerCert(ca, caKey, s.m.certHosts(), now)
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
type authStep struct{ m *Mirror }

func (s *authStep) Name() string { return "registry-auth" }

// wantPassword is the cluster's derived password, or "" on a node that
// makes its own.
func (m *Mirror) wantPassword() (string, error) {
	if m.secret == nil {
		return "", nil
	}
	return registry.DerivePassword(m.secret)
}

func (s *authStep) Plan(context.Context) ([]engine.Change, error) {
	h := s.m.e.Host
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
	h := s.m.e.Host
	raw, err := h.ReadFile(PasswordPath)
	pw := strings.TrimSpace(string(raw))
	want, werr := s.m.wantPassword()
	if werr != nil {
		return werr
	}
	if err != nil || pw == "" || (want != "" && pw != want) {
		if pw = want; pw == "" {
			if pw, err = registry.RandomPassword(); err != nil {
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
	line, err := registry.HtpasswdLine(User, pw)
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
type readyStep struct{ m *Mirror }

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
	tail, _ := s.m.e.Init.LogTail(ctx, ServiceName, 20)
	return fmt.Errorf("the registry did not answer on https://%s within a minute: %v\nits log ends with:\n%s", s.m.addr(), err, tail)
}

func (m *Mirror) client() (*http.Client, error) {
	ca, err := m.e.Host.ReadFile(CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no certificate", CACert)
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

func (m *Mirror) healthy(ctx context.Context) error {
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
type imagesStep struct{ m *Mirror }

func (s *imagesStep) Name() string { return "registry-images" }

func (s *imagesStep) want() string {
	m := s.m.e.Bundle.Manifest
	f, _ := m.File(path.Join(m.Layout.Path, "index.json"))
	return m.Name + " " + m.Version + " " + f.SHA256
}

func (s *imagesStep) Plan(context.Context) ([]engine.Change, error) {
	have, _ := s.m.e.Host.ReadFile(imagesStamp)
	if strings.TrimSpace(string(have)) == s.want() {
		return nil, nil
	}
	m := s.m.e.Bundle.Manifest
	return []engine.Change{{Action: engine.Create, Kind: engine.Images, Target: StorageDir,
		Detail: fmt.Sprintf("%d images, %s in %d blobs, from bundle %s %s", len(m.Images), engine.Bytes(m.Layout.Bytes), m.Layout.Blobs, m.Name, m.Version)}}, nil
}

func (s *imagesStep) Apply(ctx context.Context, _ []engine.Change, r *engine.Reporter) error {
	e := s.m.e
	layout := e.Host.Path(path.Join(e.Bundle.Dir, e.Bundle.Manifest.Layout.Path))
	res, err := load.ToStorage(ctx, layout, e.Host.Path(StorageDir), load.Options{Progress: r.Progress})
	if err != nil {
		return err
	}
	r.Logf("%d images: %d blobs written (%s), %d already there", res.Images, res.Blobs-res.Skipped, engine.Bytes(res.Written), res.Skipped)
	_, err = e.Host.WriteFile(imagesStamp, []byte(s.want()+"\n"), 0o644)
	return err
}

// DefaultRegistries are mirrored on agents, which do not see the bundle.
var DefaultRegistries = []string{"docker.io", "nvcr.io", "registry.k8s.io", "quay.io", "ghcr.io"}

// RegistriesYAML mirrors every registry the bundle's images come from to
// this node's registry, under the repository prefix the images were loaded
// with. nil when there is nothing to mirror.
func (m *Mirror) RegistriesYAML() ([]byte, error) {
	type mirror struct {
		Endpoint []string          `json:"endpoint"`
		Rewrite  map[string]string `json:"rewrite"`
	}
	var registries []string
	if b := m.e.Bundle; b != nil {
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
	mirrors := map[string]mirror{}
	for _, reg := range registries {
		if reg == name.DefaultRegistry {
			reg = "docker.io"
		}
		mirrors[reg] = mirror{
			Endpoint: []string{"https://" + m.addr()},
			Rewrite:  map[string]string{"^(.*)$": airgap.RegistryPrefix(reg) + "/$1"},
		}
	}
	raw, _ := m.e.Host.ReadFile(PasswordPath)
	pw := strings.TrimSpace(string(raw))
	if m.agent {
		var err error
		if pw, err = m.wantPassword(); err != nil {
			return nil, err
		}
	}
	doc := map[string]any{
		"mirrors": mirrors,
		"configs": map[string]any{m.addr(): map[string]any{
			"auth": map[string]string{"username": User, "password": pw},
			"tls":  map[string]string{"ca_file": m.e.Host.Path(CACert)},
		}},
	}
	body, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Written by perch: every registry of the bundle's images is mirrored to the appliance registry.\n"), body...), nil
}
