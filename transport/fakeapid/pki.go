package fakeapid

import (
	"crypto/sha256"
	"crypto/tls"
	stdx509 "crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/role"
)

// PKI is a cluster's OS (machine) CA, made as talosctl gen makes it.
type PKI struct {
	// CA is the PEM certificate and Ed25519 key, as it sits in the machine
	// config (machine.ca).
	CA *x509.PEMEncodedCertificateAndKey

	authority *x509.CertificateAuthority
	pool      *stdx509.CertPool
}

// NewPKI makes a new cluster OS CA with secrets.NewTalosCA, the function a
// secrets bundle (`talosctl gen config`) uses for Certs.OS: self-signed,
// Ed25519, O=talos. The rest of a bundle (an RSA service-account key among
// it) is skipped because it takes seconds; use PKIFromCA(bundle.Certs.OS)
// when machine configs must share the CA. Two calls give two foreign
// clusters.
func NewPKI() (*PKI, error) {
	ca, err := secrets.NewTalosCA(time.Now())
	if err != nil {
		return nil, fmt.Errorf("generate OS CA: %w", err)
	}

	return PKIFromCA(&x509.PEMEncodedCertificateAndKey{Crt: ca.CrtPEM, Key: ca.KeyPEM})
}

var (
	sharedOnce sync.Once
	sharedPKI  *PKI
	sharedErr  error
)

// SharedPKI is one PKI per process, made on first use: tests that only need
// "a cluster" share it instead of each paying for a CA.
func SharedPKI() (*PKI, error) {
	sharedOnce.Do(func() { sharedPKI, sharedErr = NewPKI() })

	return sharedPKI, sharedErr
}

// PKIFromCA wraps an existing OS CA (for example a secrets bundle's
// Certs.OS that machine configs were generated from).
func PKIFromCA(ca *x509.PEMEncodedCertificateAndKey) (*PKI, error) {
	if ca == nil || len(ca.Crt) == 0 || len(ca.Key) == 0 {
		return nil, errors.New("OS CA needs both certificate and key")
	}

	authority, err := x509.NewCertificateAuthorityFromCertificateAndKey(ca)
	if err != nil {
		return nil, fmt.Errorf("load OS CA: %w", err)
	}

	pool := stdx509.NewCertPool()
	pool.AddCert(authority.Crt)

	return &PKI{CA: ca, authority: authority, pool: pool}, nil
}

// LoadPKI reads the OS CA from PEM files.
func LoadPKI(certPath, keyPath string) (*PKI, error) {
	ca, err := x509.NewCertificateAndKeyFromFiles(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("read OS CA from %s and %s: %w", certPath, keyPath, err)
	}

	return PKIFromCA(ca)
}

// WritePEM writes the OS CA certificate and key to PEM files.
func (p *PKI) WritePEM(certPath, keyPath string) error {
	if err := os.WriteFile(certPath, p.CA.Crt, 0o644); err != nil { //nolint:gosec // a certificate is public
		return fmt.Errorf("write CA certificate: %w", err)
	}

	if err := os.WriteFile(keyPath, p.CA.Key, 0o600); err != nil {
		return fmt.Errorf("write CA key: %w", err)
	}

	return nil
}

// CertPool holds the CA certificate only.
func (p *PKI) CertPool() *stdx509.CertPool { return p.pool }

// Fingerprint identifies the cluster: SHA-256 of the CA certificate.
func (p *PKI) Fingerprint() string {
	sum := sha256.Sum256(p.authority.Crt.Raw)

	return hex.EncodeToString(sum[:])
}

// ServerCertificate is apid's certificate as machined's APICertSANs and
// secrets.API controllers make it: SANs = the node IPs and 127.0.0.1,
// ExtKeyUsage ServerAuth, signed by the OS CA.
func (p *PKI) ServerCertificate(ips ...netip.Addr) (tls.Certificate, error) {
	sans := make([]net.IP, 0, len(ips)+1)
	for _, ip := range ips {
		sans = append(sans, ip.AsSlice())
	}

	sans = append(sans, net.IPv4(127, 0, 0, 1))

	kp, err := x509.NewKeyPair(p.authority,
		x509.IPAddresses(sans),
		x509.CommonName("talos"),
		x509.NotAfter(time.Now().Add(x509.DefaultCertificateValidityDuration)),
		x509.KeyUsage(stdx509.KeyUsageDigitalSignature),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}),
	)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue apid server certificate: %w", err)
	}

	return *kp.Certificate, nil
}

// AdminIdentity is an os:admin client identity valid from now for ttl,
// issued like talosconfig's (secrets.NewAdminCertificateAndKey).
func (p *PKI) AdminIdentity(now time.Time, ttl time.Duration) (*Identity, error) {
	return p.RoleIdentity(now, ttl, role.MakeSet(role.Admin))
}

// ReaderIdentity is an os:reader client identity.
func (p *PKI) ReaderIdentity(now time.Time, ttl time.Duration) (*Identity, error) {
	return p.RoleIdentity(now, ttl, role.MakeSet(role.Reader))
}

// RoleIdentity is a client identity with the given roles (Subject.O).
func (p *PKI) RoleIdentity(now time.Time, ttl time.Duration, roles role.Set) (*Identity, error) {
	cert, err := secrets.NewAdminCertificateAndKey(now, p.CA, roles, ttl)
	if err != nil {
		return nil, fmt.Errorf("issue client certificate %v: %w", roles.Strings(), err)
	}

	return NewIdentity(cert, p.pool)
}

// ExtKeyUsageIdentity is an os:admin client identity with the given extended
// key usages, to exercise apid's "exactly [ClientAuth]" rule.
func (p *PKI) ExtKeyUsageIdentity(now time.Time, ttl time.Duration, usages ...stdx509.ExtKeyUsage) (*Identity, error) {
	kp, err := x509.NewKeyPair(p.authority,
		x509.Organization(string(role.Admin)),
		x509.NotBefore(now),
		x509.NotAfter(now.Add(ttl)),
		x509.KeyUsage(stdx509.KeyUsageDigitalSignature),
		x509.ExtKeyUsage(usages),
	)
	if err != nil {
		return nil, fmt.Errorf("issue client certificate: %w", err)
	}

	return NewIdentity(x509.NewCertificateAndKeyFromKeyPair(kp), p.pool)
}

// Identity implements transport.Identity with a client certificate that can
// be replaced (renewed) at any time.
type Identity struct {
	mu   sync.Mutex
	cert *tls.Certificate
	pool *stdx509.CertPool
}

// NewIdentity pairs a PEM client certificate with the CA pool it trusts.
func NewIdentity(cert *x509.PEMEncodedCertificateAndKey, trusted *stdx509.CertPool) (*Identity, error) {
	id := &Identity{pool: trusted}
	if err := id.SetCertificate(cert); err != nil {
		return nil, err
	}

	return id, nil
}

// SetCertificate replaces the client certificate (renewal).
func (i *Identity) SetCertificate(cert *x509.PEMEncodedCertificateAndKey) error {
	pair, err := tls.X509KeyPair(cert.Crt, cert.Key)
	if err != nil {
		return fmt.Errorf("parse client certificate: %w", err)
	}

	i.mu.Lock()
	defer i.mu.Unlock()

	i.cert = &pair

	return nil
}

// WithClusterCA is the same client certificate trusting another CA pool.
func (i *Identity) WithClusterCA(pool *stdx509.CertPool) *Identity {
	i.mu.Lock()
	defer i.mu.Unlock()

	return &Identity{cert: i.cert, pool: pool}
}

// ClientCertificate implements transport.Identity.
func (i *Identity) ClientCertificate() (*tls.Certificate, error) {
	i.mu.Lock()
	defer i.mu.Unlock()

	return i.cert, nil
}

// ClusterCA implements transport.Identity.
func (i *Identity) ClusterCA() *stdx509.CertPool { return i.pool }
