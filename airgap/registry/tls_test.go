package registry

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mustCA(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := NewCA("Perch test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func TestServerCertVerifiesForItsHostsOnly(t *testing.T) {
	caPEM, caKey := mustCA(t)
	hosts := []string{"192.168.1.20", "perch-01", "perch-01.local", "fd00::20"}
	certPEM, keyPEM, err := IssueServerCert(caPEM, caKey, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("cert and key do not pair: %v", err)
	}
	ca, err := parseCert(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 || ca.NotAfter.Sub(now) < 9*365*24*time.Hour {
		t.Errorf("CA: IsCA=%v usage=%v notAfter=%v", ca.IsCA, ca.KeyUsage, ca.NotAfter)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.IsCA || cert.NotAfter.Sub(now) < 4*365*24*time.Hour || cert.NotAfter.Sub(now) > 5*365*24*time.Hour+time.Minute {
		t.Errorf("server cert: IsCA=%v notAfter=%v", cert.IsCA, cert.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, h := range hosts {
		opts := x509.VerifyOptions{Roots: roots, DNSName: h, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("verify for %s: %v", h, err)
		}
	}
	for _, h := range []string{"192.168.1.21", "perch-02", "example.com"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: h, CurrentTime: now}); err == nil {
			t.Errorf("verified for %s, which it was not issued for", h)
		}
	}
	// Another CA's pool must not verify it.
	other, _ := mustCA(t)
	otherRoots := x509.NewCertPool()
	otherRoots.AppendCertsFromPEM(other)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: otherRoots, DNSName: hosts[0], CurrentTime: now}); err == nil {
		t.Error("verified against an unrelated CA")
	}
}

func TestIssueServerCertRefusesBadInput(t *testing.T) {
	caPEM, caKey := mustCA(t)
	otherPEM, otherKey := mustCA(t)
	leafPEM, leafKey, err := IssueServerCert(caPEM, caKey, []string{"a"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		cert, key   []byte
		hosts       []string
		description string
	}{
		{"no hosts", caPEM, caKey, nil, "empty host list"},
		{"host with port", caPEM, caKey, []string{"10.0.0.1:5000"}, "port in host"},
		{"url", caPEM, caKey, []string{"https://perch"}, "scheme in host"},
		{"empty host", caPEM, caKey, []string{""}, "empty host"},
		{"key of another CA", caPEM, otherKey, []string{"a"}, "mismatched CA key"},
		{"not a CA", leafPEM, leafKey, []string{"a"}, "leaf as CA"},
		{"garbage cert", []byte("nope"), caKey, []string{"a"}, "not PEM"},
		{"garbage key", otherPEM, []byte("nope"), []string{"a"}, "not PEM"},
	} {
		if _, _, err := IssueServerCert(tc.cert, tc.key, tc.hosts, now); err == nil {
			t.Errorf("%s: no error for %s", tc.name, tc.description)
		}
	}
}

func TestCertCovers(t *testing.T) {
	caPEM, caKey := mustCA(t)
	otherCA, _ := mustCA(t)
	hosts := []string{"10.1.2.3", "perch-01"}
	certPEM, _, err := IssueServerCert(caPEM, caKey, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	soon, _, err := IssueServerCert(caPEM, caKey, hosts, now.Add(-5*365*24*time.Hour+20*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cert  []byte
		hosts []string
		ca    []byte
		at    time.Time
		want  bool
	}{
		{"same hosts", certPEM, hosts, caPEM, now, true},
		{"same hosts, other order and case", certPEM, []string{"PERCH-01", "10.1.2.3"}, caPEM, now, true},
		{"four years on", certPEM, hosts, caPEM, now.Add(4 * 365 * 24 * time.Hour), true},
		{"within 30 days of expiry", certPEM, hosts, caPEM, now.Add(5*365*24*time.Hour - 10*24*time.Hour), false},
		{"expires in 20 days", soon, hosts, caPEM, now, false},
		{"expired", certPEM, hosts, caPEM, now.Add(6 * 365 * 24 * time.Hour), false},
		{"not yet valid", certPEM, hosts, caPEM, now.Add(-24 * time.Hour), false},
		{"a host was added", certPEM, append(hosts, "10.1.2.4"), caPEM, now, false},
		{"a host went away", certPEM, hosts[:1], caPEM, now, false},
		{"IP changed", certPEM, []string{"10.1.2.9", "perch-01"}, caPEM, now, false},
		{"other CA", certPEM, hosts, otherCA, now, false},
		{"CA cert as server cert", caPEM, hosts, caPEM, now, false},
		{"garbage", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), hosts, caPEM, now, false},
		{"empty", nil, hosts, caPEM, now, false},
	} {
		if got := CertCovers(tc.cert, tc.hosts, tc.ca, tc.at); got != tc.want {
			t.Errorf("%s: CertCovers = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestKeysArePKCS8(t *testing.T) {
	_, key := mustCA(t)
	b, _ := pem.Decode(key)
	if b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM block %v, want PRIVATE KEY", b)
	}
	if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
		t.Fatal(err)
	}
}

// Two nodes with the same secret derive the same CA, and a server
// certificate it issues verifies against the other node's copy.
func TestDeriveCAIsTheSameOnEveryNode(t *testing.T) {
	secret := []byte("0123456789abcdef-cluster-token")
	caA, keyA, err := DeriveCA(secret, "Perch appliance CA")
	if err != nil {
		t.Fatal(err)
	}
	caB, _, err := DeriveCA(secret, "Perch appliance CA")
	if err != nil || string(caA) != string(caB) {
		t.Fatalf("two derivations differ (%v)", err)
	}
	other, _, _ := DeriveCA([]byte("another-cluster-token-0123456789"), "Perch appliance CA")
	if string(other) == string(caA) {
		t.Fatal("another secret gave the same CA")
	}
	now := time.Now()
	cert, _, err := IssueServerCert(caA, keyA, []string{"10.0.0.1", "edge-01"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !CertCovers(cert, []string{"edge-01", "10.0.0.1"}, caB, now) {
		t.Error("a server certificate from the derived CA does not verify with the agent's copy")
	}
	if CertCovers(cert, []string{"edge-01", "10.0.0.1"}, other, now) {
		t.Error("it verifies with another cluster's CA")
	}
	p1, _ := DerivePassword(secret)
	p2, _ := DerivePassword(secret)
	p3, _ := DerivePassword([]byte("another-cluster-token-0123456789"))
	if p1 != p2 || p1 == p3 || len(p1) < 32 {
		t.Errorf("passwords %q %q %q", p1, p2, p3)
	}
}
