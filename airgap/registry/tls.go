package registry

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

const (
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 5 * 365 * 24 * time.Hour
	// renewBefore is how long a certificate must still be valid for the
	// installer to keep it: a certificate that would lapse before the next
	// routine install is reissued now, while the site is being looked after.
	renewBefore = 30 * 24 * time.Hour
	// backdate covers clocks that lag the machine that issued a certificate.
	backdate = time.Hour
)

// NewCA makes the appliance's own certificate authority: an ECDSA P-256 key
// and a self-signed certificate valid for ten years from now. Both come back
// PEM-encoded (the key as PKCS #8). Nodes trust the certificate through
// registries.yaml; the key only ever signs the registry's server
// certificates.
func NewCA(commonName string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, nil, errors.New("new CA: empty common name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("new CA: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, fmt.Errorf("new CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("new CA: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("new CA: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// IssueServerCert signs a server certificate for hosts (IP addresses and DNS
// names, such as the node's addresses and hostname) with the CA, valid for
// five years from now. The key is a fresh ECDSA P-256 key, PEM PKCS #8.
func IssueServerCert(caCertPEM, caKeyPEM []byte, hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	ca, err := parseCert(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: CA certificate: %w", err)
	}
	caKey, err := parseKey(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: CA key: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("issue server certificate: the CA certificate is not a CA")
	}
	ips, names, err := splitHosts(hosts)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	notAfter := now.Add(serverValidity)
	if notAfter.After(ca.NotAfter) {
		// A leaf outliving its CA fails verification from that day anyway;
		// saying so in the certificate makes CertCovers renew it in time.
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           ips,
		DNSNames:              names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// CertCovers reports whether certPEM can be kept: a server certificate the
// CA signed for exactly hosts (in any order), valid now and for more than 30
// more days. The installer reissues when it is false, so an install run
// again on an unchanged node leaves the certificate alone, and one on a node
// whose addresses changed replaces it.
func CertCovers(certPEM []byte, hosts []string, caCertPEM []byte, now time.Time) bool {
	cert, err := parseCert(certPEM)
	if err != nil {
		return false
	}
	ca, err := parseCert(caCertPEM)
	if err != nil {
		return false
	}
	if now.Before(cert.NotBefore) {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	// Verifying at the end of the renewal window checks the leaf and the CA
	// both stay valid that long.
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now.Add(renewBefore), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := cert.Verify(opts); err != nil {
		return false
	}
	ips, names, err := splitHosts(hosts)
	if err != nil {
		return false
	}
	return sameIPs(ips, cert.IPAddresses) && sameNames(names, cert.DNSNames)
}

// splitHosts sorts hosts into IP addresses and DNS names, rejecting what
// would make a certificate no client accepts.
func splitHosts(hosts []string) (ips []net.IP, names []string, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("no hosts: give the node's IP addresses and hostname")
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			ips = append(ips, ip)
			continue
		}
		if h == "" || strings.ContainsAny(h, ":/ \t\n[]@") {
			return nil, nil, fmt.Errorf("host %q: give an IP address or a DNS name, without scheme or port", h)
		}
		names = append(names, strings.ToLower(strings.TrimSuffix(h, ".")))
	}
	return ips, names, nil
}

func sameIPs(want, got []net.IP) bool {
	norm := func(ips []net.IP) []string {
		var s []string
		for _, ip := range ips {
			s = append(s, ip.String())
		}
		slices.Sort(s)
		return slices.Compact(s)
	}
	return slices.Equal(norm(want), norm(got))
}

func sameNames(want, got []string) bool {
	norm := func(names []string) []string {
		var s []string
		for _, n := range names {
			s = append(s, strings.ToLower(n))
		}
		slices.Sort(s)
		return slices.Compact(s)
	}
	return slices.Equal(norm(want), norm(got))
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(b.Bytes)
}

// parseKey reads a CA or server key: ECDSA, or Ed25519 for a CA derived
// from the cluster token.
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY", b.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%T key, want ECDSA or Ed25519", key)
}

// DeriveCA makes the appliance CA from a secret every node of a cluster
// shares (derived from the join token): the same secret always gives the
// same certificate, so an agent trusts its server's registry without any
// file being copied between them. Ed25519, because its keys and signatures
// are deterministic; valid 2025–2045.
func DeriveCA(secret []byte, commonName string) (certPEM, keyPEM []byte, err error) {
	if len(secret) < 16 {
		return nil, nil, errors.New("derive CA: secret too short")
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, "perch registry CA key", ed25519.SeedSize)
	if err != nil {
		return nil, nil, fmt.Errorf("derive CA: %w", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	id := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(id[:16]),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2045, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          id[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, nil, fmt.Errorf("derive CA: %w", err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, fmt.Errorf("derive CA: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// DerivePassword is the registry password of a cluster, from the same
// shared secret as DeriveCA.
func DerivePassword(secret []byte) (string, error) {
	b, err := hkdf.Key(sha256.New, secret, nil, "perch registry password", 24)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
