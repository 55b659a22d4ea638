package credentials

import (
	"bytes"
	"context"
	"crypto/ed25519"
	stdx509 "crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/role"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

func newTestIssuer(t *testing.T, clock clockwork.Clock) (*Issuer, *generated) {
	t.Helper()

	g := generateConfigs(t, config.TalosVersionCurrent)

	cfg, err := parseMachineConfig(g.controlPlane)
	if err != nil {
		t.Fatal(err)
	}

	issuer, err := NewIssuer(cfg.issuingCA, clock, 0)
	if err != nil {
		t.Fatal(err)
	}

	return issuer, g
}

// startFakeAPID runs a fake control-plane apid on 127.0.0.1 whose server
// certificate and accepted client CA come from pki.
func startFakeAPID(ctx context.Context, t *testing.T, pki *fakeapid.PKI) *fakeapid.Server {
	t.Helper()

	server, err := fakeapid.Start(fakeapid.Config{PKI: pki}, fakeapid.Node{IP: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { server.Close() }) //nolint:errcheck

	select {
	case <-server.Listening():
	case <-ctx.Done():
		t.Fatal("fake apid did not start")
	}

	return server
}

func TestIssuerSignsAdminClientCertificate(t *testing.T) {
	clock := clockwork.NewFakeClockAt(fixtureTime.Add(time.Hour))
	issuer, g := newTestIssuer(t, clock)

	cert, err := issuer.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}

	// Parse from the DER the handshake sends, not from the cached Leaf.
	leaf, err := stdx509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}

	roles, unknown := role.Parse(leaf.Subject.Organization)
	if !roles.Includes(role.Admin) || len(unknown) != 0 || len(leaf.Subject.Organization) != 1 {
		t.Errorf("Subject.O = %v, want exactly [%s]", leaf.Subject.Organization, role.Admin)
	}

	if !slices.Equal(leaf.ExtKeyUsage, []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want exactly [ClientAuth] (apid rejects anything else)", leaf.ExtKeyUsage)
	}

	if leaf.IsCA {
		t.Error("client certificate is a CA")
	}

	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != DefaultCertTTL {
		t.Errorf("validity %s, want %s", got, DefaultCertTTL)
	}

	if now := clock.Now(); !leaf.NotBefore.Before(now) || !leaf.NotAfter.After(now.Add(DefaultCertTTL-clockSkewAllowance-time.Second)) {
		t.Errorf("validity [%s, %s] does not cover now %s for about a day", leaf.NotBefore, leaf.NotAfter, now)
	}

	caPool := stdx509.NewCertPool()
	if !caPool.AppendCertsFromPEM(g.bundle.Certs.OS.Crt) {
		t.Fatal("bundle OS CA does not parse")
	}

	if _, err := leaf.Verify(stdx509.VerifyOptions{
		Roots:       caPool,
		CurrentTime: clock.Now(),
		KeyUsages:   []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Errorf("client certificate does not chain to the machine CA: %v", err)
	}

	// ClusterCA is the machine CA: a server certificate it signed verifies.
	pki, err := fakeapid.PKIFromCA(g.bundle.Certs.OS)
	if err != nil {
		t.Fatal(err)
	}

	server, err := pki.ServerCertificate(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}

	serverLeaf, err := stdx509.ParseCertificate(server.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}

	if _, err := serverLeaf.Verify(stdx509.VerifyOptions{Roots: issuer.ClusterCA(), CurrentTime: serverLeaf.NotBefore.Add(time.Minute)}); err != nil {
		t.Errorf("server certificate of the same cluster not verified by ClusterCA: %v", err)
	}
}

func TestIssuerRenewsBeforeExpiry(t *testing.T) {
	start := fixtureTime.Add(time.Hour)
	clock := clockwork.NewFakeClockAt(start)
	issuer, _ := newTestIssuer(t, clock)

	first, err := issuer.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}

	// A third of the TTL must remain: the first certificate is kept until
	// NotAfter-ttl/3 and replaced right after.
	keepUntil := first.Leaf.NotAfter.Add(-DefaultCertTTL / 3)

	clock.Advance(keepUntil.Sub(start) - time.Minute)

	same, err := issuer.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}

	if same != first {
		t.Fatalf("renewed at %s although %s of validity remained", clock.Now(), first.Leaf.NotAfter.Sub(clock.Now()))
	}

	clock.Advance(2 * time.Minute)

	renewed, err := issuer.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}

	if renewed == first || renewed.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatalf("not renewed at %s with %s of validity left", clock.Now(), first.Leaf.NotAfter.Sub(clock.Now()))
	}

	if !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Errorf("renewed certificate expires %s, not after the old one (%s)", renewed.Leaf.NotAfter, first.Leaf.NotAfter)
	}

	// Over a long quorum wait the certificate handed out is always valid
	// with at least a third of its validity left.
	for range 24 * 10 {
		clock.Advance(37 * time.Minute)

		cert, err := issuer.ClientCertificate()
		if err != nil {
			t.Fatal(err)
		}

		now := clock.Now()
		if now.Before(cert.Leaf.NotBefore) || cert.Leaf.NotAfter.Sub(now) < DefaultCertTTL/3 {
			t.Fatalf("at %s handed out certificate valid [%s, %s]", now, cert.Leaf.NotBefore, cert.Leaf.NotAfter)
		}
	}
}

func TestIssuerRenewsWhenClockStepsBack(t *testing.T) {
	// Talos steps the clock when time first syncs; a certificate signed
	// before that can start in the "future".
	clock := clockwork.NewFakeClockAt(fixtureTime.Add(48 * time.Hour))
	issuer, _ := newTestIssuer(t, clock)

	first, err := issuer.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}

	stepped := clockwork.NewFakeClockAt(fixtureTime.Add(24 * time.Hour))
	issuer.clock = stepped

	second, err := issuer.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}

	if second == first || second.Leaf.NotBefore.After(stepped.Now()) {
		t.Errorf("after the clock stepped back to %s the certificate starts at %s", stepped.Now(), second.Leaf.NotBefore)
	}
}

// End to end against the fake apid (apid's mTLS, ExtKeyUsage and role
// checks): the signed certificate is accepted for an os:admin-only call,
// an expired one is refused, and renewal makes the same Issuer work again.
func TestIssuerAgainstFakeAPID(t *testing.T) {
	g := generateConfigs(t, config.TalosVersionCurrent)

	pki, err := fakeapid.PKIFromCA(g.bundle.Certs.OS)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	server := startFakeAPID(ctx, t, pki)

	cfg, err := parseMachineConfig(g.controlPlane)
	if err != nil {
		t.Fatal(err)
	}

	// The fake apid checks validity against the real clock; put the
	// issuer's clock 30 h in the past so its first certificate is expired.
	clock := clockwork.NewFakeClockAt(time.Now().Add(-30 * time.Hour))

	issuer, err := NewIssuer(cfg.issuingCA, clock, 0)
	if err != nil {
		t.Fatal(err)
	}

	readBootID := func() (string, error) {
		node, err := transport.NewDialer(issuer, transport.WithDialTimeout(5*time.Second)).Dial(ctx, server.Addr())
		if err != nil {
			return "", err
		}
		defer node.Close() //nolint:errcheck

		return node.BootID(ctx)
	}

	if id, err := readBootID(); err == nil {
		t.Fatalf("expired certificate accepted (boot id %s)", id)
	} else {
		t.Logf("expired certificate refused: %v", err)
	}

	clock.Advance(30 * time.Hour)

	id, err := readBootID()
	if err != nil {
		t.Fatalf("renewed certificate refused: %v", err)
	}

	if id != server.Node().BootID && !strings.EqualFold(id, server.Node().BootID) {
		t.Errorf("boot id %q, want %q", id, server.Node().BootID)
	}

	// Read is os:admin only, so this also proves the role.
	if n := server.CallCount("/machine.MachineService/Read"); n != 1 {
		t.Errorf("fake apid served Read %d times, want 1 (only with the valid certificate)", n)
	}
}

func TestIssuerRejectsForeignCluster(t *testing.T) {
	issuer, _ := newTestIssuer(t, nil)

	foreign, err := fakeapid.NewPKI()
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	server := startFakeAPID(ctx, t, foreign)

	node, err := transport.NewDialer(issuer, transport.WithDialTimeout(5*time.Second)).Dial(ctx, server.Addr())
	if err == nil {
		node.Close() //nolint:errcheck
		t.Fatal("a node of another cluster was accepted")
	}

	if !transport.IsCertificateRejected(err) {
		t.Errorf("error %v is not a certificate rejection", err)
	}
}

func TestIssuerRefusesExpiredCA(t *testing.T) {
	g := generateConfigs(t, config.TalosVersionCurrent)
	clock := clockwork.NewFakeClockAt(fixtureTime.Add(11 * 365 * 24 * time.Hour))

	_, err := NewIssuer(g.bundle.Certs.OS, clock, 0)
	if err == nil || !strings.Contains(err.Error(), "expired") || !isPermanent(err) {
		t.Errorf("expired CA: err = %v, want a permanent expiry error", err)
	}
}

// Nothing that formats or marshals credentials may reveal key material.
func TestNoKeyMaterialInOutput(t *testing.T) {
	clock := clockwork.NewFakeClockAt(fixtureTime.Add(time.Hour))
	issuer, g := newTestIssuer(t, clock)

	cert, err := issuer.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}

	tc := writeTalosconfig(t, g.talosconfig)

	_, static, err := TalosconfigSource{Path: tc, Clock: clock}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	staticCert, err := static.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}

	secrets := secretForms(g.bundle.Certs.OS.Key)
	secrets = append(secrets, secretForms(privateKeyPEM(t, cert.PrivateKey))...)
	secrets = append(secrets, secretForms(privateKeyPEM(t, staticCert.PrivateKey))...)

	for name, v := range map[string]any{"issuer": issuer, "talosconfig identity": static} {
		var out []byte

		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			out = append(out, fmt.Sprintf(verb, v)...)
			out = append(out, fmt.Sprintf(verb, struct{ ID any }{v})...)
		}

		js, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: marshal: %v", name, err)
		}

		out = append(out, js...)

		if containsAny(out, secrets...) || bytes.Contains(out, []byte("PRIVATE KEY")) {
			t.Errorf("%s output reveals key material:\n%s", name, out)
		}

		if !bytes.Contains(out, []byte("sha256:")) {
			t.Errorf("%s output does not identify the certificate:\n%s", name, out)
		}
	}
}

// secretForms are the encodings a key could leak in.
func secretForms(keyPEM []byte) [][]byte {
	forms := [][]byte{keyPEM, []byte(base64.StdEncoding.EncodeToString(keyPEM))}

	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return forms
	}

	raw := [][]byte{block.Bytes}

	// The bare Ed25519 key, as a formatted ed25519.PrivateKey would show.
	if key, err := stdx509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if ed, ok := key.(ed25519.PrivateKey); ok {
			raw = append(raw, ed, ed.Seed())
		}
	}

	for _, r := range raw {
		forms = append(forms,
			r,
			[]byte(base64.StdEncoding.EncodeToString(r)),
			[]byte(strings.Trim(fmt.Sprintf("%v", r), "[]")),
			[]byte(fmt.Sprintf("%x", r)),
		)
	}

	return forms
}

func privateKeyPEM(t *testing.T, key any) []byte {
	t.Helper()

	der, err := stdx509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}

	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
