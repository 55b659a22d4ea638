package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

func TestMutualTLS(t *testing.T) {
	t.Parallel()

	own := testPKI(t)

	foreign, err := fakeapid.NewPKI()
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now()

	mustID := func(id *fakeapid.Identity, err error) *fakeapid.Identity {
		t.Helper()

		if err != nil {
			t.Fatal(err)
		}

		return id
	}

	admin := mustID(own.AdminIdentity(now.Add(-time.Minute), time.Hour))
	reader := mustID(own.ReaderIdentity(now.Add(-time.Minute), time.Hour))
	expired := mustID(own.AdminIdentity(now.Add(-2*time.Hour), time.Hour))
	foreignAdmin := mustID(foreign.AdminIdentity(now.Add(-time.Minute), time.Hour))
	serverAndClient := mustID(own.ExtKeyUsageIdentity(now.Add(-time.Minute), time.Hour,
		x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth))

	srv := startNode(t, newFleet(t), fakeapid.Node{})

	tests := []struct {
		name string
		id   transport.Identity
		// dialRejected: our side refuses the server (IsCertificateRejected).
		dialRejected bool
		// dialFails: the server refuses our client certificate.
		dialFails     bool
		statCode      codes.Code
		bootstrapCode codes.Code
	}{
		{name: "admin", id: admin, statCode: codes.OK, bootstrapCode: codes.OK},
		{name: "reader", id: reader, statCode: codes.OK, bootstrapCode: codes.PermissionDenied},
		{name: "server of a foreign cluster", id: foreignAdmin, dialRejected: true},
		{name: "client cert of a foreign cluster", id: foreignAdmin.WithClusterCA(own.CertPool()), dialFails: true},
		{name: "expired client cert", id: expired, dialFails: true},
		{name: "client cert not exactly ClientAuth", id: serverAndClient, dialFails: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := transport.NewDialer(tt.id, transport.WithDialTimeout(2*time.Second))

			n, err := d.Dial(t.Context(), srv.Addr())

			switch {
			case tt.dialRejected || tt.dialFails:
				if err == nil {
					n.Close() //nolint:errcheck
					t.Fatal("Dial succeeded, want an error")
				}

				t.Logf("Dial: %v", err)

				if transport.IsCertificateRejected(err) != tt.dialRejected {
					t.Errorf("IsCertificateRejected(%v) = %v, want %v", err, !tt.dialRejected, tt.dialRejected)
				}

				return
			case err != nil:
				t.Fatalf("Dial: %v", err)
			}

			defer n.Close() //nolint:errcheck

			_, err = n.BootTime(shortCtx(t))
			if status.Code(err) != tt.statCode {
				t.Errorf("BootTime: %v, want code %v", err, tt.statCode)
			}

			err = n.Bootstrap(shortCtx(t))
			if status.Code(err) != tt.bootstrapCode {
				t.Errorf("Bootstrap: %v, want code %v", err, tt.bootstrapCode)
			}

			if tt.bootstrapCode == codes.PermissionDenied && !containsAll(err.Error(), "not authorized", srv.Node().IP.String()) {
				t.Errorf("Bootstrap error %q should carry apid's text and the node", err)
			}

			// callers wrap again; the code must survive every layer
			wrapped := fmt.Errorf("state bootstrap: %w", fmt.Errorf("attempt 1: %w", err))
			if err != nil && status.Code(wrapped) != tt.bootstrapCode {
				t.Errorf("status.Code through two more wraps = %v, want %v", status.Code(wrapped), tt.bootstrapCode)
			}
		})
	}
}

// Discovery probes peers with a bare TLS handshake; a foreign node must be
// told apart from a node of our cluster that merely fails otherwise.
func TestRawHandshakeClassification(t *testing.T) {
	t.Parallel()

	own := testPKI(t)

	foreign, err := fakeapid.NewPKI()
	if err != nil {
		t.Fatal(err)
	}

	id, err := own.AdminIdentity(time.Now().Add(-time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	foreignFleet := fakeapid.NewFleet(foreign, fakeapid.NewRegistry(), netip.MustParseAddr("127.0.11.1"))
	defer foreignFleet.Close() //nolint:errcheck

	foreignSrv := startNode(t, foreignFleet, fakeapid.Node{})

	ownSrv := startNode(t, newFleet(t), fakeapid.Node{})

	handshake := func(addr string) error {
		dialer := &tls.Dialer{Config: transport.TLSConfig(id)}

		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()

		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close() //nolint:errcheck
		}

		return err
	}

	if err := handshake(foreignSrv.Addr().String()); !transport.IsCertificateRejected(err) {
		t.Errorf("foreign node: IsCertificateRejected(%v) = false", err)
	}

	if err := handshake(ownSrv.Addr().String()); err != nil {
		t.Errorf("own node: %v", err)
	}

	// nothing listens: not a rejection
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	addr := l.Addr().String()
	l.Close() //nolint:errcheck

	if err := handshake(addr); err == nil || transport.IsCertificateRejected(err) {
		t.Errorf("closed port: %v, want a non-rejection error", err)
	}
}

// A node of our cluster seen through a wrong clock has a certificate that
// is not valid "now"; that is not a foreign node.
func TestServerCertificateValidityIsNotRejection(t *testing.T) {
	t.Parallel()

	own := testPKI(t)

	foreign, err := fakeapid.NewPKI()
	if err != nil {
		t.Fatal(err)
	}

	leafOf := func(p *fakeapid.PKI) *x509.Certificate {
		t.Helper()

		c, err := p.ServerCertificate(netip.MustParseAddr("198.18.0.2"))
		if err != nil {
			t.Fatal(err)
		}

		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}

		return leaf
	}

	ownLeaf, foreignLeaf := leafOf(own), leafOf(foreign)

	id, err := own.AdminIdentity(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		leaf     *x509.Certificate
		at       time.Time
		ok       bool
		rejected bool
	}{
		{name: "own, now", leaf: ownLeaf, at: time.Now(), ok: true},
		// Clocks disagree before time sync: the chain still proves membership.
		{name: "own, clock far ahead", leaf: ownLeaf, at: ownLeaf.NotAfter.Add(time.Hour), ok: true},
		{name: "own, clock at 1970", leaf: ownLeaf, at: time.Unix(0, 0), ok: true},
		{name: "foreign, now", leaf: foreignLeaf, at: time.Now(), rejected: true},
		{name: "foreign, clock far ahead", leaf: foreignLeaf, at: foreignLeaf.NotAfter.Add(time.Hour), rejected: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := transport.TLSConfig(id)
			cfg.Time = func() time.Time { return tt.at }

			err := cfg.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{tt.leaf}})
			if (err == nil) != tt.ok {
				t.Fatalf("VerifyConnection = %v, want ok=%v", err, tt.ok)
			}

			if got := transport.IsCertificateRejected(err); got != tt.rejected {
				t.Errorf("IsCertificateRejected(%v) = %v, want %v", err, got, tt.rejected)
			}

			var unknown x509.UnknownAuthorityError
			if tt.rejected && !errors.As(err, &unknown) {
				t.Errorf("a rejection should wrap x509.UnknownAuthorityError: %v", err)
			}
		})
	}
}
