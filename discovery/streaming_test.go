package discovery

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// holdOpen accepts TCP on addr and never answers: a probe there waits out
// its whole timeout, as a silent address on a real network does.
func holdOpen(t *testing.T, addr string) {
	t.Helper()
	listen(t, addr, func(c net.Conn) {
		io.Copy(io.Discard, c) //nolint:errcheck
		c.Close()
	})
}

// countDials counts the sweep's probes (every new address is dialled once
// per probe; re-probes of known peers reuse their connection).
func countDials(s *Scanner) func() map[netip.Addr]int {
	var mu sync.Mutex
	seen := map[netip.Addr]int{}
	dial := s.dial
	s.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		mu.Lock()
		seen[netip.MustParseAddrPort(address).Addr()]++
		mu.Unlock()
		return dial(ctx, network, address)
	}
	return func() map[netip.Addr]int {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[netip.Addr]int, len(seen))
		for a, n := range seen {
			out[a] = n
		}
		return out
	}
}

func enoughCP(n int) func(Result) bool {
	return func(r Result) bool { return len(r.ControlPlane) >= n }
}

// A round proceeds once the peers it waits for answered, while the probes
// of silent addresses go on; their outcomes count in the next round, and
// no address gets a second probe while one is in flight.
func TestScanUntilProceedsWhileProbesGoOn(t *testing.T) {
	env := newScanEnv(t)
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.20.2")
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.20.3")
	for i := 4; i <= 6; i++ {
		holdOpen(t, addrPort(netip.AddrFrom4([4]byte{127, 42, 20, byte(i)}).String(), env.port))
	}
	const timeout = time.Second
	s := env.scanner(t, ScannerOptions{Timeout: timeout})
	dials := countDials(s)
	targets := env.hosts(t, "127.42.20.0/29")

	began := time.Now()
	res, err := s.ScanUntil(t.Context(), targets, enoughCP(2))
	took := time.Since(began)
	if err != nil || len(res.ControlPlane) != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	if took > timeout/2 {
		t.Fatalf("the round took %v: it waited for the silent addresses (timeout %v)", took, timeout)
	}

	// The next round starts while the silent probes still run: it does not
	// probe them again, waits for them, and counts their end.
	res, err = s.Scan(t.Context(), targets)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 3 || len(res.ControlPlane) != 2 {
		t.Fatalf("the first round's silent probes were not counted in the next: %+v", res)
	}
	if time.Since(began) > timeout+timeout/2 {
		t.Fatalf("two rounds took %v: the second probed the silent addresses anew", time.Since(began))
	}
	for a, n := range dials() {
		if a.As4()[3] >= 4 && n != 1 {
			t.Errorf("%s dialled %d times in two rounds, want 1: its probe was still in flight", a, n)
		}
	}
}

// A node that answers after its round proceeded is a candidate in the
// next round.
func TestScanUntilLateAnswerFeedsTheNextRound(t *testing.T) {
	env := newScanEnv(t)
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.22.2")
	slow := netip.MustParseAddr("127.42.22.3")
	// The slow node accepts at once and answers TLS only after 300 ms.
	srv := startAPID(t, env.pki, env.port+1, fakeapid.Node{IP: slow}, slow.String())
	_ = srv
	listen(t, addrPort(slow.String(), env.port), func(c net.Conn) {
		defer c.Close()
		time.Sleep(300 * time.Millisecond)
		up, err := net.Dial("tcp", addrPort(slow.String(), env.port+1))
		if err != nil {
			return
		}
		defer up.Close()
		go io.Copy(up, c) //nolint:errcheck
		io.Copy(c, up)    //nolint:errcheck
	})
	s := env.scanner(t, ScannerOptions{Timeout: 2 * time.Second})
	targets := env.hosts(t, "127.42.22.0/29")

	res, err := s.ScanUntil(t.Context(), targets, enoughCP(1))
	if err != nil || len(res.ControlPlane) != 1 {
		t.Fatalf("first round: %+v %v", res, err)
	}
	time.Sleep(time.Second)
	res, err = s.ScanUntil(t.Context(), targets, enoughCP(2))
	if err != nil || len(res.ControlPlane) != 2 {
		t.Fatalf("the late answer was lost: %v %v", addrsOf(res.ControlPlane), err)
	}
}

// A known peer that stopped answering (it moved away) holds no round:
// rounds that have their quorum go on at once, and one that waits for it
// ends within one probe timeout, counting the miss.
func TestStalePeerHoldsARoundAtMostOneTimeout(t *testing.T) {
	env := newScanEnv(t)
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.23.2")
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.23.3")
	const timeout = 600 * time.Millisecond
	s := env.scanner(t, ScannerOptions{Timeout: timeout})
	if res, err := s.Scan(t.Context(), nil); err != nil || len(res.ControlPlane) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	if res, err := s.Scan(t.Context(), env.hosts(t, "127.42.23.0/29")); err != nil || len(res.ControlPlane) != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	env.dialer.node("127.42.23.3").hang.Store(true)

	began := time.Now()
	res, err := s.ScanUntil(t.Context(), nil, enoughCP(1))
	if err != nil || len(res.ControlPlane) != 2 || time.Since(began) > timeout/2 {
		t.Fatalf("with a quorum answering: %v, %v, %+v", time.Since(began), err, res)
	}
	began = time.Now()
	res, err = s.Scan(t.Context(), nil)
	took := time.Since(began)
	if err != nil || took > timeout+timeout/3 {
		t.Fatalf("waiting for the stale peer: %v (timeout %v), %v", took, timeout, err)
	}
	if len(res.ControlPlane) != 2 || res.ControlPlane[1].Misses != 1 {
		t.Fatalf("the stale peer's miss: %+v", res.ControlPlane)
	}
}

// paceRun runs Combined rounds over prefix (every address refuses at
// once, so nothing but the pace slows the sweep) back to back for d, with
// no pause, and returns each address's probes.
func paceRun(t *testing.T, prefix string, concurrency int, timeout, d time.Duration, pause bool) (map[netip.Addr]int, int) {
	t.Helper()
	env := newScanEnv(t)
	s := env.scanner(t, ScannerOptions{Timeout: timeout, Concurrency: concurrency})
	dials := countDials(s)
	p := netip.MustParsePrefix(prefix)
	c := NewCombined(s, []Source{Fixed{SourceName: SourceScan, List: Targets{Addrs: env.hosts(t, prefix), Range: p}}},
		timeout, enoughCP(3), clockwork.NewRealClock(), zerolog.Nop())
	rounds := 0
	for end := time.Now().Add(d); time.Now().Before(end); rounds++ {
		if _, err := c.Scan(t.Context()); err != nil {
			t.Fatal(err)
		}
		if pause {
			time.Sleep(c.NextDelay(1, 3, 0, 30*time.Second))
		}
	}
	return dials(), rounds
}

// The pace: at most Concurrency sweep probes begin per window of
// PaceWindows × timeout, however often rounds come; a range the budget
// covers is swept whole in every window.
func TestSweepPace(t *testing.T) {
	const timeout, run = 100 * time.Millisecond, 2 * time.Second
	windows := int(run/(PaceWindows*timeout)) + 1

	t.Run("a /24 in one window", func(t *testing.T) {
		seen, rounds := paceRun(t, "127.42.24.0/24", 256, timeout, run, true)
		if len(seen) != 254 {
			t.Fatalf("%d of 254 addresses probed", len(seen))
		}
		least, most := windows, 0
		for _, n := range seen {
			least, most = min(least, n), max(most, n)
		}
		t.Logf("a /24 over %v, %d rounds: every address probed %d to %d times (%d windows of %v)",
			run, rounds, least, most, windows, PaceWindows*timeout)
		if most > windows {
			t.Errorf("an address was probed %d times in %d windows", most, windows)
		}
		if least < windows/2 {
			t.Errorf("an address was probed only %d times in %d windows", least, windows)
		}
	})
	t.Run("a /20 rolls at the same rate", func(t *testing.T) {
		seen, rounds := paceRun(t, "127.43.0.0/20", 64, timeout, run, false)
		total := 0
		for _, n := range seen {
			total += n
		}
		t.Logf("a /20 at concurrency 64 over %v, %d rounds back to back: %d probes, %d addresses (bound %d)",
			run, rounds, total, len(seen), 64*windows)
		if total > 64*windows {
			t.Errorf("%d probes in %d windows of 64", total, windows)
		}
		if total < 64*windows/3 {
			t.Errorf("only %d probes in %d windows of 64: the sweep stalls", total, windows)
		}
		for a, n := range seen {
			if n > 1 {
				t.Errorf("%s probed %d times before the pass covered the range", a, n)
			}
		}
	})
}
