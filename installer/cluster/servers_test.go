package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

const password = "planted-join-password-5b7e"

// supervisor stands in for k3s's supervisor on the API port: the two
// paths a joining node reads, with k3s's node basic auth.
type supervisor struct {
	*httptest.Server
	ca        []byte
	list      func(w http.ResponseWriter)
	listCalls atomic.Int32
}

func newSupervisor(t *testing.T, list func(w http.ResponseWriter)) *supervisor {
	s := &supervisor{list: list}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cacerts":
			w.Write(s.ca)
		case "/v1-k3s/apiservers":
			s.listCalls.Add(1)
			if u, p, ok := r.BasicAuth(); !ok || u != "node" || p != password {
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			s.list(w)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	s.ca = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	return s
}

func (s *supervisor) fullToken() string {
	sum := sha256.Sum256(s.ca)
	return "K10" + hex.EncodeToString(sum[:]) + "::server:" + password
}

func listing(eps ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) { fmt.Fprintf(w, `["%s"]`, strings.Join(eps, `","`)) }
}

func TestServers(t *testing.T) {
	s := newSupervisor(t, listing("10.77.0.3:6443", "127.0.0.1:6443", "10.77.0.2:6443"))
	for name, tok := range map[string]string{"full token": s.fullToken(), "bare password": password} {
		got, err := Servers(context.Background(), s.URL, tok)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := []string{"127.0.0.1", "10.77.0.2", "10.77.0.3"}; !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v (the server joined first)", name, got, want)
		}
	}
}

// A server whose CA is not the one the token pins never sees the token.
func TestServersPinsTheCA(t *testing.T) {
	s := newSupervisor(t, listing("127.0.0.1:6443"))
	// every httptest server has the same certificate: pin another one
	sum := sha256.Sum256([]byte("another cluster's CA"))
	_, err := Servers(context.Background(), s.URL, "K10"+hex.EncodeToString(sum[:])+"::server:"+password)
	if err == nil || !strings.Contains(err.Error(), "is not the one node.token names") {
		t.Fatalf("got %v, want the CA refused", err)
	}
	if n := s.listCalls.Load(); n != 0 {
		t.Errorf("the token went to a server whose CA it does not pin (%d requests)", n)
	}
}

// The server is a network peer: what it answers is bounded and checked,
// and no error repeats the token.
func TestServersHostileAnswers(t *testing.T) {
	many := make([]string, maxServers+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.77.0.%d:6443", i+1)
	}
	for name, tt := range map[string]struct {
		list func(w http.ResponseWriter)
		want string
	}{
		"not JSON":      {func(w http.ResponseWriter) { w.Write([]byte("<html>")) }, "not a list of addresses"},
		"not an IP":     {listing("evil.example:6443"), `"evil.example:6443", which is not an IP:port`},
		"no port":       {listing("10.77.0.2"), "not an IP:port"},
		"too many":      {listing(many...), "no cluster has more than"},
		"endless":       {func(w http.ResponseWriter) { w.Write([]byte(`["` + strings.Repeat("1", maxList) + `"]`)) }, "answer over"},
		"refused token": {func(w http.ResponseWriter) { http.Error(w, "Forbidden", http.StatusForbidden) }, "the token is not this cluster's"},
	} {
		s := newSupervisor(t, tt.list)
		_, err := Servers(context.Background(), s.URL, s.fullToken())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), password) {
			t.Errorf("%s: the error holds the token: %v", name, err)
		}
	}
	if _, err := Servers(context.Background(), "http://127.0.0.1:6443", password); err == nil {
		t.Error("a plain-HTTP server URL was used")
	}
}
