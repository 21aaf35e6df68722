// Package cluster is what a joining node learns of its cluster before its
// own k3s runs, from the server it joins, the way k3s's agents learn it:
// the servers' addresses, which k3s's supervisor lists on the API port to
// any client that has the join token.
package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Bounds on what a server may answer: a CA bundle is a few KiB, the list a
// few hundred bytes; a cluster has a handful of servers.
const (
	maxCABundle = 1 << 20
	maxList     = 64 << 10
	maxServers  = 16
	timeout     = 10 * time.Second
)

// Servers are the hosts (IP addresses) of every k3s server of the cluster
// that serverURL belongs to, serverURL's own host first and the others
// sorted, read from k3s's /v1-k3s/apiservers with the join token.
//
// The server is authenticated before the token is sent: a full token
// (K10<sha256 of the cluster CA>::user:password) pins the CA that
// /cacerts returns; a bare password pins nothing, and the CA is taken on
// first use, exactly as k3s itself joins with such a token (the README
// says to prefer the full one from /var/lib/rancher/k3s/server/token).
func Servers(ctx context.Context, serverURL, token string) ([]string, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("node.serverURL %q: want https://SERVER:6443", serverURL)
	}
	hash, password := splitToken(token)
	if password == "" {
		return nil, errors.New("node.token: no password part; use the token in /var/lib/rancher/k3s/server/token on the first server")
	}
	base := "https://" + u.Host
	// /cacerts is public; what it returns is checked against the token's
	// hash before anything secret is sent
	ca, err := get(ctx, newClient(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}), base+"/cacerts", "", maxCABundle)
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA from %s: %w", base, err)
	}
	if hash != "" {
		got, err := caHash(ca)
		if err != nil {
			return nil, fmt.Errorf("the cluster CA from %s: %w", base, err)
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(strings.ToLower(hash))) != 1 {
			return nil, fmt.Errorf("the CA %s presents is not the one node.token names; check node.serverURL, or copy the token again from /var/lib/rancher/k3s/server/token", base)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s/cacerts holds no PEM certificate", base)
	}
	body, err := get(ctx, newClient(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), base+"/v1-k3s/apiservers", password, maxList)
	if err != nil {
		return nil, fmt.Errorf("list the cluster's servers at %s: %w", base, err)
	}
	var endpoints []string
	if err := json.Unmarshal(body, &endpoints); err != nil {
		return nil, fmt.Errorf("%s/v1-k3s/apiservers: not a list of addresses: %w", base, err)
	}
	if len(endpoints) > maxServers {
		return nil, fmt.Errorf("%s lists %d servers; no cluster has more than %d", base, len(endpoints), maxServers)
	}
	self := u.Hostname()
	var others []string
	for _, ep := range endpoints {
		host, _, err := net.SplitHostPort(ep)
		if err != nil || net.ParseIP(host) == nil {
			return nil, fmt.Errorf("%s lists %q, which is not an IP:port", base, ep)
		}
		if host != self {
			others = append(others, host)
		}
	}
	slices.Sort(others)
	return append([]string{self}, slices.Compact(others)...), nil
}

// splitToken is a k3s token's CA hash (none for a bare password) and its
// password part.
func splitToken(tok string) (hash, password string) {
	rest, ok := strings.CutPrefix(tok, "K10")
	if !ok {
		return "", tok
	}
	hash, creds, ok := strings.Cut(rest, "::")
	if !ok {
		return "", tok
	}
	_, password, _ = strings.Cut(creds, ":")
	return hash, password
}

// caHash is how k3s hashes the CA bundle a token pins: the bundle's bytes
// when it holds one certificate; with more, the DER of the root the first
// one chains to.
func caHash(bundle []byte) (string, error) {
	var certs []*x509.Certificate
	rest := bundle
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return "", err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return "", errors.New("no PEM certificate")
	}
	raw := bundle
	if len(certs) > 1 {
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		for _, c := range certs[1:] {
			if len(c.AuthorityKeyId) == 0 || bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
				roots.AddCert(c)
			} else {
				inter.AddCert(c)
			}
		}
		if chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err == nil {
			raw = chains[0][len(chains[0])-1].Raw
		}
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

// newClient talks to the server directly, never through a proxy from the
// environment, and follows no redirect: one to another host or to plain
// HTTP would carry the token there.
func newClient(tc *tls.Config) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get reads url, at most limit bytes, as k3s's node user when password is
// set.
func get(ctx context.Context, c *http.Client, url, password string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if password != "" {
		req.SetBasicAuth("node", password)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%s: the token is not this cluster's; check node.token", resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("answer over %d bytes", limit)
	}
	return body, nil
}
