package status

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// registry is a TLS server answering like `perch registry serve`:
// /healthz without credentials, /v2/ only with them.
func registry(t *testing.T, healthz int) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(healthz)
		case "/v2/":
			if u, p, ok := r.BasicAuth(); !ok || u != "perch" || p != "secret" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Write([]byte("{}"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, pool
}

func TestRegistryHealth(t *testing.T) {
	ok, pool := registry(t, http.StatusOK)
	sick, sickPool := registry(t, http.StatusServiceUnavailable)
	addr := strings.TrimPrefix(ok.URL, "https://")
	for _, tc := range []struct {
		name    string
		src     RegistrySource
		healthy bool
		err     string
	}{
		{"healthy", RegistrySource{URL: ok.URL, CAs: pool}, true, ""},
		{"healthy, password works", RegistrySource{URL: ok.URL, CAs: pool, Username: "perch", Password: "secret"}, true, ""},
		{"password refused", RegistrySource{URL: ok.URL, CAs: pool, Username: "perch", Password: "old"}, false, "/v2/: 401 Unauthorized: the registry refuses user perch"},
		{"storage unreadable", RegistrySource{URL: sick.URL, CAs: sickPool}, false, "/healthz: 503 Service Unavailable"},
		{"CA does not match", RegistrySource{URL: ok.URL, CAs: x509.NewCertPool()}, false, "/healthz: tls: failed to verify certificate"},
		{"not set up", RegistrySource{URL: ok.URL, Err: errors.New("not set up (no /etc/perch/registry/ca.crt)")}, false, "not set up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := checkRegistry(context.Background(), tc.src)
			if !r.Enabled || r.Healthy != tc.healthy || !strings.HasPrefix(r.Error, tc.err) {
				t.Errorf("got %+v, want healthy=%v error starting %q", r, tc.healthy, tc.err)
			}
			if tc.src.URL == ok.URL && r.Address != addr {
				t.Errorf("address = %q, want %q", r.Address, addr)
			}
		})
	}
	if r := checkRegistry(context.Background(), RegistrySource{Note: "registry.enabled is false"}); r.Enabled || r.Note == "" {
		t.Errorf("disabled registry = %+v", r)
	}
}
