package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

func addrsOf(peers []Peer) []netip.Addr {
	out := make([]netip.Addr, len(peers))
	for i, p := range peers {
		out[i] = p.Addr
	}
	return out
}

// One /28 holds every kind of neighbour; only the nodes of our cluster are
// candidates, and everything else is counted and let go.
func TestScanClassifiesNeighbours(t *testing.T) {
	env := newScanEnv(t)
	p := env.port
	boot := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

	self := startAPID(t, env.pki, p, fakeapid.Node{BootTime: boot.Add(-time.Hour)}, "127.42.1.1")
	startAPID(t, env.pki, p, fakeapid.Node{BootTime: boot, BootID: "0f0e9c49-8a3c-4a1e-9c53-0d1b2f8f6a01"}, "127.42.1.2")
	startAPID(t, env.pki, p, fakeapid.Node{MachineType: transport.MachineTypeInit}, "127.42.1.3")
	startAPID(t, env.pki, p, fakeapid.Node{MachineType: transport.MachineTypeWorker}, "127.42.1.4")
	// Another cluster's control-plane node.
	startAPID(t, mustPKI(t, foreignPKI), p, fakeapid.Node{}, "127.42.1.5")

	// Accepts and says nothing: costs one timeout, and the connection is
	// closed when it is up.
	silentClosed := make(chan struct{})
	listen(t, addrPort("127.42.1.6", p), func(c net.Conn) {
		io.Copy(io.Discard, c) //nolint:errcheck // until the prober hangs up
		close(silentClosed)
		c.Close()
	})
	// Answers garbage.
	listen(t, addrPort("127.42.1.7", p), func(c net.Conn) {
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")) //nolint:errcheck
		c.Close()
	})
	// Self-signed TLS, like a node in maintenance mode.
	cert := selfSignedCertificate(t)
	listen(t, addrPort("127.42.1.8", p), func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		tc.Handshake()          //nolint:errcheck
		io.Copy(io.Discard, tc) //nolint:errcheck
		tc.Close()
	})
	// Resets the connection.
	listen(t, addrPort("127.42.1.9", p), func(c net.Conn) {
		c.(*net.TCPConn).SetLinger(0) //nolint:errcheck
		c.Close()
	})
	// Our cluster's certificate, but not gRPC behind it.
	ours, err := env.pki.ServerCertificate(netip.MustParseAddr("127.42.1.10"))
	if err != nil {
		t.Fatal(err)
	}
	listen(t, addrPort("127.42.1.10", p), func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{ours}})
		if tc.Handshake() == nil {
			tc.Write([]byte("garbage, not HTTP/2\n")) //nolint:errcheck
		}
		tc.Close()
	})

	s := env.scanner(t, ScannerOptions{Timeout: 700 * time.Millisecond})
	me, err := s.ProbeSelf(t.Context(), netip.MustParseAddr("127.42.1.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !me.BootTime.Equal(boot.Add(-time.Hour)) || me.BootID != self.Node().BootID || me.MachineType != transport.MachineTypeControlPlane {
		t.Fatalf("self: %+v", me)
	}

	res, err := s.Scan(t.Context(), env.hosts(t, "127.42.1.0/28"))
	if err != nil {
		t.Fatal(err)
	}
	if got := addrsOf(res.ControlPlane); !slices.Equal(got, []netip.Addr{mustAddr("127.42.1.2"), mustAddr("127.42.1.3")}) {
		t.Fatalf("control plane %v", got)
	}
	cp := res.ControlPlane[0]
	if !cp.BootTime.Equal(boot) || cp.BootID != "0f0e9c49-8a3c-4a1e-9c53-0d1b2f8f6a01" || cp.MachineType != transport.MachineTypeControlPlane || cp.Node == nil || cp.Misses != 0 {
		t.Fatalf("peer %+v", cp)
	}
	if res.ControlPlane[1].MachineType != transport.MachineTypeInit {
		t.Fatalf("init node: %+v", res.ControlPlane[1])
	}
	if got := addrsOf(res.Workers); !slices.Equal(got, []netip.Addr{mustAddr("127.42.1.4")}) {
		t.Fatalf("workers %v", got)
	}
	// 14 hosts, self not swept: 4 peers, foreign CA and self-signed,
	// silent/garbage/reset/non-gRPC, 4 addresses with nothing on the port.
	if res.Probed != 13 || res.Foreign != 2 || res.Failed != 4 || res.Silent != 4 {
		t.Fatalf("counts: probed %d foreign %d failed %d silent %d", res.Probed, res.Foreign, res.Failed, res.Silent)
	}
	select {
	case <-silentClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the prober left the silent listener's connection open")
	}
	if d := env.dialer.dials.Load(); d != 5 { // self, 3 peers, non-gRPC
		t.Fatalf("%d gRPC dials; the handshake should have kept the others from dialling", d)
	}
}

// Known peers are re-probed over their connection, survive misses below the
// threshold, and are dropped and closed at it.
func TestScanKeepsKnownPeers(t *testing.T) {
	env := newScanEnv(t)
	a := startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.2.2")
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.2.3")
	s := env.scanner(t, ScannerOptions{Timeout: 300 * time.Millisecond, MissThreshold: 3})
	targets := env.hosts(t, "127.42.2.0/29")

	scan := func() Result {
		t.Helper()
		res, err := s.Scan(t.Context(), targets)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := scan()
	if len(first.ControlPlane) != 2 {
		t.Fatalf("first scan: %+v", first)
	}
	for range 3 {
		if res := scan(); len(res.ControlPlane) != 2 || res.Probed != 6 {
			t.Fatalf("rescan: %+v", res)
		}
	}
	if d := env.dialer.dials.Load(); d != 2 {
		t.Fatalf("%d dials for 2 peers over 4 scans", d)
	}
	if n := a.CallCount("/machine.MachineService/SystemStat"); n != 4 {
		t.Fatalf("peer asked for SystemStat %d times in 4 scans", n)
	}

	// One slow answer, then two failures: still a candidate, flagged.
	node := env.dialer.node("127.42.2.2")
	node.hang.Store(true)
	for miss := 1; miss <= 2; miss++ {
		if miss == 2 {
			node.hang.Store(false)
			node.broken.Store(true)
		}
		res := scan()
		if len(res.ControlPlane) != 2 || res.ControlPlane[0].Misses != miss || res.Failed != 0 {
			t.Fatalf("miss %d: %+v", miss, res)
		}
	}
	// It answers again: the count starts over.
	node.broken.Store(false)
	if res := scan(); res.ControlPlane[0].Misses != 0 {
		t.Fatalf("recovered: %+v", res.ControlPlane[0])
	}
	node.broken.Store(true)
	for range 2 {
		scan()
	}
	if node.closed.Load() {
		t.Fatal("closed before the threshold")
	}
	res := scan()
	if got := addrsOf(res.ControlPlane); !slices.Equal(got, []netip.Addr{mustAddr("127.42.2.3")}) {
		t.Fatalf("after 3 misses: %v", got)
	}
	if !node.closed.Load() {
		t.Fatal("dropped peer's connection left open")
	}
	// The address is swept again like any other: the server still answers,
	// so it comes back with a new connection.
	if res := scan(); len(res.ControlPlane) != 2 || env.dialer.dials.Load() != 3 {
		t.Fatalf("rediscovery: %+v, %d dials", res, env.dialer.dials.Load())
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c := env.dialer.closes.Load(); c != 3 {
		t.Fatalf("%d nodes closed, want all 3 ever opened", c)
	}
}

// A peer that rebooted is seen with its new boot time and ID at once.
func TestScanSeesReboot(t *testing.T) {
	env := newScanEnv(t)
	first := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	srv := startAPID(t, env.pki, env.port, fakeapid.Node{BootTime: first}, "127.42.3.2")
	s := env.scanner(t, ScannerOptions{Timeout: time.Second})
	targets := slices.Values([]netip.Addr{mustAddr("127.42.3.2")})

	res, err := s.Scan(t.Context(), targets)
	if err != nil || len(res.ControlPlane) != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	oldID := res.ControlPlane[0].BootID
	srv.Close()
	second := first.Add(10 * time.Minute)
	startAPID(t, env.pki, env.port, fakeapid.Node{BootTime: second}, "127.42.3.2")

	// gRPC may need a round to notice the new server; within the misses
	// allowed the peer never vanishes.
	for range DefaultMissThreshold {
		res, err = s.Scan(t.Context(), targets)
		if err != nil || len(res.ControlPlane) != 1 {
			t.Fatalf("%+v %v", res, err)
		}
		if p := res.ControlPlane[0]; p.BootID != oldID {
			if !p.BootTime.Equal(second) || p.Misses != 0 {
				t.Fatalf("after reboot: %+v", p)
			}
			return
		}
	}
	t.Fatal("reboot never seen")
}

// Self is excluded by boot ID too, and a node reachable at two addresses
// counts once, under its lowest address.
func TestScanSelfAndDuplicateAddresses(t *testing.T) {
	env := newScanEnv(t)
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.4.1", "127.42.4.6")
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.4.5", "127.42.4.2")
	s := env.scanner(t, ScannerOptions{})
	if _, err := s.ProbeSelf(t.Context(), mustAddr("127.42.4.1")); err != nil {
		t.Fatal(err)
	}
	res, err := s.Scan(t.Context(), env.hosts(t, "127.42.4.0/29"))
	if err != nil {
		t.Fatal(err)
	}
	if got := addrsOf(res.ControlPlane); !slices.Equal(got, []netip.Addr{mustAddr("127.42.4.2")}) {
		t.Fatalf("control plane %v", got)
	}
	// ProbeSelf again reuses its connection.
	dials := env.dialer.dials.Load()
	if _, err := s.ProbeSelf(t.Context(), mustAddr("127.42.4.1")); err != nil || env.dialer.dials.Load() != dials {
		t.Fatalf("second self probe: %v, %d dials (was %d)", err, env.dialer.dials.Load(), dials)
	}
	if _, err := s.ProbeSelf(t.Context(), mustAddr("127.42.4.7")); !errors.Is(err, ErrSilent) {
		t.Fatalf("self probe of an empty address: %v", err)
	}
}

// No more probes than Concurrency are in flight, and the pool is used.
func TestScanConcurrencyBound(t *testing.T) {
	env := newScanEnv(t)
	for i := 1; i <= 20; i++ {
		listen(t, addrPort(netip.AddrFrom4([4]byte{127, 42, 5, byte(i)}).String(), env.port), func(c net.Conn) {
			io.Copy(io.Discard, c) //nolint:errcheck
			c.Close()
		})
	}
	s := env.scanner(t, ScannerOptions{Timeout: 150 * time.Millisecond, Concurrency: 4})
	var mu sync.Mutex
	open, peak := 0, 0
	dial := s.dial
	s.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		mu.Lock()
		open++
		peak = max(peak, open)
		mu.Unlock()
		c, err := dial(ctx, network, address)
		if err != nil {
			mu.Lock()
			open--
			mu.Unlock()
			return nil, err
		}
		return &closeHook{Conn: c, onClose: func() { mu.Lock(); open--; mu.Unlock() }}, nil
	}
	res, err := s.Scan(t.Context(), env.hosts(t, "127.42.5.0/27"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 20 || res.Silent != 10 {
		t.Fatalf("%+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != 4 || open != 0 {
		t.Fatalf("peak %d connections in flight, want 4; %d left open", peak, open)
	}
}

type closeHook struct {
	net.Conn
	once    sync.Once
	onClose func()
}

func (c *closeHook) Close() error {
	c.once.Do(c.onClose)
	return c.Conn.Close()
}

// A cancelled scan stops sweeping, returns the context's error, and does
// not count the cut-short probes as misses.
func TestScanCancelled(t *testing.T) {
	env := newScanEnv(t)
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.6.2")
	s := env.scanner(t, ScannerOptions{Timeout: 5 * time.Second, Concurrency: 1})
	targets := env.hosts(t, "127.42.6.0/29")
	if res, err := s.Scan(t.Context(), targets); err != nil || len(res.ControlPlane) != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	env.dialer.node("127.42.6.2").hang.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	var sweptPast int
	res, err := s.Scan(ctx, func(yield func(netip.Addr) bool) {
		for a := range targets {
			if !yield(a) {
				return
			}
			sweptPast++
		}
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
	if len(res.ControlPlane) != 1 || res.ControlPlane[0].Misses != 0 {
		t.Fatalf("cancelled scan counted a miss: %+v", res)
	}
	if sweptPast != 0 {
		t.Fatalf("the sweep went on past %d addresses after cancellation", sweptPast)
	}
}

func TestNewScannerChecksOptions(t *testing.T) {
	env := newScanEnv(t)
	for name, opts := range map[string]ScannerOptions{
		"no identity": {Dialer: env.dialer},
		"no dialer":   {Identity: env.id},
		"negative":    {Identity: env.id, Dialer: env.dialer, Concurrency: -1},
	} {
		if _, err := NewScanner(opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s, err := NewScanner(ScannerOptions{Identity: env.id, Dialer: env.dialer})
	if err != nil {
		t.Fatal(err)
	}
	if s.port != transport.APIDPort || s.timeout != DefaultScanTimeout || s.concurrency != DefaultScanConcurrency || s.threshold != DefaultMissThreshold {
		t.Fatalf("defaults: %+v", s)
	}
}

// A peer that passes the handshake but answers nonsense is not a candidate.
func TestDescribeRejectsGarbage(t *testing.T) {
	cases := map[string]struct {
		node fakeNode
		want string
	}{
		"no boot time": {fakeNode{bootID: "0f0e9c49-8a3c-4a1e-9c53-0d1b2f8f6a01", mt: transport.MachineTypeWorker}, "no boot time"},
		"bad boot id":  {fakeNode{boot: time.Unix(1e9, 0), bootID: "<html>", mt: transport.MachineTypeWorker}, `"<html>" is not a UUID`},
		"bad type":     {fakeNode{boot: time.Unix(1e9, 0), bootID: "0f0e9c49-8a3c-4a1e-9c53-0d1b2f8f6a01", mt: "toaster"}, `unknown machine type "toaster"`},
		"rpc error":    {fakeNode{err: errors.New("rpc error: code = Unavailable")}, "boot time: rpc error"},
	}
	for name, c := range cases {
		_, err := describe(t.Context(), c.node)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	p, err := describe(t.Context(), fakeNode{boot: time.Unix(1e9, 0), bootID: "0F0E9C49-8A3C-4A1E-9C53-0D1B2F8F6A01", mt: transport.MachineTypeWorker})
	if err != nil || p.MachineType != transport.MachineTypeWorker {
		t.Fatalf("%+v %v", p, err)
	}
}

// fakeNode answers the three description calls with fixed values.
type fakeNode struct {
	transport.Node
	boot   time.Time
	bootID string
	mt     transport.MachineType
	err    error
}

func (f fakeNode) BootTime(context.Context) (time.Time, error) { return f.boot, f.err }
func (f fakeNode) BootID(context.Context) (string, error)      { return f.bootID, f.err }
func (f fakeNode) MachineType(context.Context) (transport.MachineType, error) {
	return f.mt, f.err
}
