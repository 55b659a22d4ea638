package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// TLSConfig is the client side of apid's mutual TLS.
//
// The client certificate is fetched per handshake because the identity renews
// it. The server certificate must chain to the cluster's machine CA, but its
// names are not checked: peers are probed by address before anything is known
// about them, and the chain alone is what tells a node of this cluster from a
// foreign one.
//
// The chain is checked at cfg.Time() when the caller sets tls.Config.Time.
func TLSConfig(id Identity) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Hostname/IP verification is replaced by VerifyConnection below;
		// the chain is still verified, against the cluster CA only.
		InsecureSkipVerify: true, //nolint:gosec
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := id.ClientCertificate()
			if err != nil {
				return nil, fmt.Errorf("client certificate: %w", err)
			}

			return cert, nil
		},
	}

	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		var now time.Time
		if cfg.Time != nil {
			now = cfg.Time()
		}

		return verifyServerChain(id.ClusterCA(), cs.PeerCertificates, now)
	}

	return cfg
}

// certificateRejectedError marks a server certificate that does not chain to
// the cluster CA.
type certificateRejectedError struct {
	subject string
	err     error
}

func (e *certificateRejectedError) Error() string {
	return fmt.Sprintf("server certificate %q does not chain to the cluster CA: %v", e.subject, e.err)
}

func (e *certificateRejectedError) Unwrap() error { return e.err }

// IsCertificateRejected tells whether err (a raw TLS handshake error, a Dial
// error, or anything wrapping them) says that the peer's certificate does not
// chain to the cluster CA: the peer belongs to another cluster or is in
// maintenance mode (self-signed CA). A certificate that chains but is outside
// its validity window (our clock is off) is not a rejection.
func IsCertificateRejected(err error) bool {
	var rejected *certificateRejectedError

	return errors.As(err, &rejected)
}

func verifyServerChain(roots *x509.CertPool, certs []*x509.Certificate, now time.Time) error {
	if len(certs) == 0 {
		return errors.New("server presented no certificate")
	}

	if roots == nil {
		return errors.New("no cluster CA to verify the server certificate against")
	}

	leaf := certs[0]

	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}

	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		CurrentTime:   now,
	}

	_, err := leaf.Verify(opts)
	if err == nil {
		return nil
	}

	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
		// Verify stops at the validity check before it looks at the chain.
		// Before time syncs, clocks disagree: apid issues its certificate
		// with NotBefore = its own now, and reissues it once time syncs.
		// Membership of the cluster is what the chain proves, at any
		// moment the leaf is valid; the key exchange still proves
		// possession of the key.
		opts.CurrentTime = leaf.NotBefore

		_, chainErr := leaf.Verify(opts)
		if chainErr == nil {
			return nil
		}

		err = chainErr
	}

	return &certificateRejectedError{subject: leaf.Subject.String(), err: err}
}
