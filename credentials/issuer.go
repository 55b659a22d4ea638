package credentials

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	stdx509 "crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/role"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// DefaultCertTTL is the validity of each signed client certificate. Short,
// because it is renewed in memory; the daemon may wait longer than this for
// a quorum, so renewal is not optional.
const DefaultCertTTL = 24 * time.Hour

// clockSkewAllowance backdates NotBefore so that a peer whose clock is a few
// minutes behind ours still accepts a freshly signed certificate. The total
// validity stays TTL.
const clockSkewAllowance = 5 * time.Minute

// Issuer holds the machine CA in memory and signs short-lived os:admin client
// certificates with it, renewing them when less than a third of their
// validity remains. It implements transport.Identity. Safe for concurrent
// use. The CA key and signed keys never leave memory: String, GoString and
// MarshalJSON show only public facts.
type Issuer struct {
	clock  clockwork.Clock
	ttl    time.Duration
	ca     *x509.PEMEncodedCertificateAndKey
	caCert *stdx509.Certificate
	pool   *stdx509.CertPool

	mu      sync.Mutex
	current *tls.Certificate // Leaf is set
}

var _ transport.Identity = (*Issuer)(nil)

// NewIssuer validates the machine CA (an Ed25519 CA certificate with its
// matching key, as Talos generates it) and returns an Issuer. ttl <= 0 means
// DefaultCertTTL; a nil clock means the real one. Validation failures are
// permanent (backoff.Permanent).
func NewIssuer(ca *x509.PEMEncodedCertificateAndKey, clock clockwork.Clock, ttl time.Duration) (*Issuer, error) {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}

	if ttl <= 0 {
		ttl = DefaultCertTTL
	}

	if ca == nil || len(ca.Crt) == 0 {
		return nil, backoff.Permanent(errors.New("machine CA: no certificate"))
	}

	if len(ca.Key) == 0 {
		return nil, backoff.Permanent(errors.New("machine CA: no key"))
	}

	caCert, err := validateCA(ca, clock.Now())
	if err != nil {
		return nil, backoff.Permanent(fmt.Errorf("machine CA: %w", err))
	}

	pool := stdx509.NewCertPool()
	pool.AddCert(caCert)

	return &Issuer{
		clock: clock,
		ttl:   ttl,
		// Private copies: the caller's buffers may be reused or wiped.
		ca:     &x509.PEMEncodedCertificateAndKey{Crt: append([]byte(nil), ca.Crt...), Key: append([]byte(nil), ca.Key...)},
		caCert: caCert,
		pool:   pool,
	}, nil
}

// validateCA checks what NewAdminCertificateAndKey would otherwise fail on
// obscurely, or sign wrongly: a parseable CA certificate, an Ed25519 key, the
// key belonging to the certificate, and a certificate valid now.
func validateCA(ca *x509.PEMEncodedCertificateAndKey, now time.Time) (*stdx509.Certificate, error) {
	cert, err := ca.GetCert()
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}

	if !cert.IsCA {
		return nil, errors.New("certificate is not a CA certificate")
	}

	key, err := ca.GetKey()
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}

	edKey, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want an Ed25519 key (Talos machine CAs are Ed25519)", key)
	}

	certKey, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("certificate public key is %T, want Ed25519", cert.PublicKey)
	}

	if !certKey.Equal(edKey.Public()) {
		return nil, errors.New("key does not match the certificate")
	}

	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("certificate expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}

	return cert, nil
}

// addTrusted adds further CA certificates (machine.acceptedCAs, used while
// the machine CA is being rotated) to the pool peers are verified against.
func (i *Issuer) addTrusted(certs []*x509.PEMEncodedCertificate) error {
	for n, c := range certs {
		if c == nil || len(c.Crt) == 0 {
			continue
		}

		if !i.pool.AppendCertsFromPEM(c.Crt) {
			return fmt.Errorf("machine.acceptedCAs[%d]: no PEM certificate", n)
		}
	}

	return nil
}

// ClientCertificate returns the current os:admin client certificate, signing
// a new one when there is none, when less than a third of its validity
// remains, or when the clock was stepped back before its NotBefore. If a
// renewal fails while the current certificate is still valid, the current one
// is returned.
func (i *Issuer) ClientCertificate() (*tls.Certificate, error) {
	i.mu.Lock()
	defer i.mu.Unlock()

	now := i.clock.Now()
	if !i.needsRenewal(now) {
		return i.current, nil
	}

	cert, err := i.sign(now)
	if err != nil {
		if i.current != nil && validAt(i.current.Leaf, now) {
			return i.current, nil
		}

		return nil, err
	}

	i.current = cert

	return cert, nil
}

func (i *Issuer) needsRenewal(now time.Time) bool {
	if i.current == nil {
		return true
	}

	leaf := i.current.Leaf

	return now.Before(leaf.NotBefore) || leaf.NotAfter.Sub(now) < i.ttl/3
}

func validAt(leaf *stdx509.Certificate, now time.Time) bool {
	return !now.Before(leaf.NotBefore) && now.Before(leaf.NotAfter)
}

func (i *Issuer) sign(now time.Time) (*tls.Certificate, error) {
	signed, err := secrets.NewAdminCertificateAndKey(now.Add(-clockSkewAllowance), i.ca, role.MakeSet(role.Admin), i.ttl)
	if err != nil {
		return nil, fmt.Errorf("sign os:admin client certificate: %w", err)
	}

	// The PEM copy of the new key is not needed once parsed.
	defer clear(signed.Key)

	cert, err := tls.X509KeyPair(signed.Crt, signed.Key)
	if err != nil {
		return nil, fmt.Errorf("load signed client certificate: %w", err)
	}

	// Go 1.23+ fills Leaf; parse explicitly so nothing depends on that.
	if cert.Leaf == nil {
		if cert.Leaf, err = stdx509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse signed client certificate: %w", err)
		}
	}

	return &cert, nil
}

// ClusterCA returns the machine CA (plus accepted CAs) as a pool to verify
// peers' apid certificates against. The caller gets its own copy.
func (i *Issuer) ClusterCA() *stdx509.CertPool { return i.pool.Clone() }

// String names the CA by subject and fingerprint, never its key.
func (i *Issuer) String() string {
	return fmt.Sprintf("credentials.Issuer{ca: %s, cert ttl: %s}", describeCert(i.caCert), i.ttl)
}

// GoString keeps %#v from dumping the key buffers.
func (i *Issuer) GoString() string { return i.String() }

// MarshalJSON shows the same public facts as String.
func (i *Issuer) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		CA      string `json:"ca"`
		CertTTL string `json:"cert_ttl"`
	}{describeCert(i.caCert), i.ttl.String()})
}

// describeCert is a one-line, secret-free description of a certificate.
func describeCert(c *stdx509.Certificate) string {
	if c == nil {
		return "<none>"
	}

	sum := sha256.Sum256(c.Raw)

	return fmt.Sprintf("O=%v sha256:%s expires %s", c.Subject.Organization, hex.EncodeToString(sum[:8]), c.NotAfter.UTC().Format(time.RFC3339))
}
