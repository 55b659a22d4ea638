package discovery

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// Two clusters' PKIs, made once: a secrets bundle takes about half a second.
var (
	clusterPKI = sync.OnceValues(fakeapid.NewPKI)
	foreignPKI = sync.OnceValues(fakeapid.NewPKI)
)

func mustPKI(t testing.TB, f func() (*fakeapid.PKI, error)) *fakeapid.PKI {
	t.Helper()
	p, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func adminIdentity(t testing.TB, p *fakeapid.PKI) *fakeapid.Identity {
	t.Helper()
	id, err := p.AdminIdentity(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// freePort finds a port that is free on 127.0.0.1; tests listen on it at
// other 127/8 addresses, where it is free too unless something else
// happens to pick the same port at the same address.
func freePort(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func addrPort(ip string, port uint16) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// startAPID runs a fake apid of pki's cluster on ips at port.
func startAPID(t testing.TB, pki *fakeapid.PKI, port uint16, node fakeapid.Node, ips ...string) *fakeapid.Server {
	t.Helper()
	if !node.IP.IsValid() {
		node.IP = netip.MustParseAddr(ips[0])
	}
	var listen []string
	for _, ip := range ips {
		listen = append(listen, addrPort(ip, port))
	}
	srv, err := fakeapid.Start(fakeapid.Config{PKI: pki, Listen: listen}, node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// countingDialer counts dials and the Close of every node it opened.
type countingDialer struct {
	transport.Dialer
	dials  atomic.Int64
	closes atomic.Int64
	mu     sync.Mutex
	nodes  map[netip.Addr]*switchableNode
}

func newCountingDialer(id transport.Identity) *countingDialer {
	return &countingDialer{Dialer: transport.NewDialer(id), nodes: map[netip.Addr]*switchableNode{}}
}

func (d *countingDialer) Dial(ctx context.Context, addr netip.AddrPort) (transport.Node, error) {
	d.dials.Add(1)
	n, err := d.Dialer.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	sn := &switchableNode{Node: n, d: d}
	d.mu.Lock()
	d.nodes[addr.Addr()] = sn
	d.mu.Unlock()
	return sn, nil
}

func (d *countingDialer) node(a string) *switchableNode {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes[netip.MustParseAddr(a)]
}

// switchableNode is a real node whose BootTime can be made to fail or
// hang, standing in for a peer that is slow or briefly gone.
type switchableNode struct {
	transport.Node
	d      *countingDialer
	broken atomic.Bool
	hang   atomic.Bool
	closed atomic.Bool
}

func (n *switchableNode) BootTime(ctx context.Context) (time.Time, error) {
	if n.hang.Load() {
		<-ctx.Done()
		return time.Time{}, ctx.Err()
	}
	if n.broken.Load() {
		return time.Time{}, errBroken
	}
	return n.Node.BootTime(ctx)
}

var errBroken = &net.OpError{Op: "read", Err: net.ErrClosed}

func (n *switchableNode) Close() error {
	if n.closed.CompareAndSwap(false, true) {
		n.d.closes.Add(1)
	}
	return n.Node.Close()
}

type scanEnv struct {
	port   uint16
	pki    *fakeapid.PKI
	id     *fakeapid.Identity
	dialer *countingDialer
}

func newScanEnv(t testing.TB) *scanEnv {
	t.Helper()
	pki := mustPKI(t, clusterPKI)
	id := adminIdentity(t, pki)
	return &scanEnv{port: freePort(t), pki: pki, id: id, dialer: newCountingDialer(id)}
}

func (e *scanEnv) scanner(t testing.TB, opts ScannerOptions) *Scanner {
	t.Helper()
	opts.Identity = e.id
	opts.Dialer = e.dialer
	opts.Port = e.port
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	s, err := NewScanner(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (e *scanEnv) hosts(t testing.TB, prefix string) func(func(netip.Addr) bool) {
	t.Helper()
	seq, err := Hosts(netip.MustParsePrefix(prefix), 0)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// listen opens a plain TCP listener and hands every connection to serve.
func listen(t testing.TB, addr string, serve func(net.Conn)) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
}

// selfSignedCertificate is what a node in maintenance mode (or any other
// TLS server) presents: a certificate no cluster CA signed.
func selfSignedCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "maintenance"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}
