package discovery

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

func TestParseSources(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []SourceName
		wantErr string
	}{
		{in: "members", want: []SourceName{SourceMembers}},
		{in: " Members , scan,members ", want: []SourceName{SourceMembers, SourceScan}},
		{in: "peers,scan", want: []SourceName{SourcePeers, SourceScan}},
		{in: "", wantErr: "no source"},
		{in: " , ", wantErr: "no source"},
		{in: "members,dns", wantErr: `unknown source "dns"`},
	} {
		got, err := ParseSources(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.wantErr)
			}

			continue
		}

		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestMemberAddrs(t *testing.T) {
	a := netip.MustParseAddr
	got := MemberAddrs([]transport.Member{
		{ID: "n1", Addresses: []netip.Addr{a("fd00:198:18::5"), a("10.0.0.5"), a("fe80::1"), a("::ffff:10.0.0.6")}},
		{ID: "n2", Addresses: []netip.Addr{a("10.0.0.5"), a("127.0.0.1"), a("::"), a("224.0.0.1"), a("fe80::2%eth0")}},
		{ID: "n3"},
	})
	// IPv4 first, then IPv6; link-local, unspecified and multicast left
	// out; duplicates and the IPv4-mapped form folded.
	want := []netip.Addr{a("10.0.0.5"), a("10.0.0.6"), a("127.0.0.1"), a("fd00:198:18::5")}
	if !slices.Equal(got, want) {
		t.Fatalf("MemberAddrs = %v, want %v", got, want)
	}
}

// lister is a discovery registry that tests change between rounds.
type lister struct {
	mu      sync.Mutex
	members []transport.Member
	err     error
	calls   int
}

func (l *lister) ClusterMembers(context.Context) ([]transport.Member, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++

	return slices.Clone(l.members), l.err
}

func (l *lister) set(err error, members ...transport.Member) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.members, l.err = members, err
}

func TestCombinedOneCandidatePerBoot(t *testing.T) {
	env := newScanEnv(t)
	// B answers at an IPv4 address in the swept range and at ::1, which
	// only discovery lists; D is a member on another subnet (not swept);
	// a stale member (no apid there any more) and link-local addresses
	// are listed too.
	b := startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.9.2", "::1")
	d := startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.10.4")
	startAPID(t, env.pki, env.port, fakeapid.Node{MachineType: transport.MachineTypeWorker}, "127.42.9.3")

	members := &lister{}
	members.set(nil,
		transport.Member{ID: "b", Addresses: []netip.Addr{mustAddr("::1"), mustAddr("fe80::2"), mustAddr("127.42.9.2")}},
		transport.Member{ID: "d", Addresses: []netip.Addr{mustAddr("127.42.10.4")}},
		transport.Member{ID: "gone", Addresses: []netip.Addr{mustAddr("127.42.10.5")}},
	)

	c := NewCombined(env.scanner(t, ScannerOptions{}), []Source{
		Members{Lister: members},
		Fixed{SourceName: SourceScan, List: Targets{Addrs: env.hosts(t, "127.42.9.0/29"), Range: netip.MustParsePrefix("127.42.9.0/29")}},
	}, time.Second, nil, clockwork.NewRealClock(), zerolog.Nop())

	round, err := c.Scan(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	if got := addrsOf(round.ControlPlane); !slices.Equal(got, []netip.Addr{mustAddr("127.42.9.2"), mustAddr("127.42.10.4")}) {
		t.Fatalf("control plane %v, want B once (at its IPv4 address) and D; %+v", got, round.Result)
	}

	if p := round.ControlPlane[0]; p.BootID != b.Node().BootID || !slices.Equal(p.Aliases, []netip.Addr{mustAddr("::1")}) {
		t.Fatalf("B: boot id %s (want %s), aliases %v (want ::1)", p.BootID, b.Node().BootID, p.Aliases)
	}

	if round.ControlPlane[1].BootID != d.Node().BootID || len(round.Workers) != 1 {
		t.Fatalf("D %s, workers %d", round.ControlPlane[1].BootID, len(round.Workers))
	}

	// Members named B and D; the sweep named B and the worker.
	if want := map[SourceName]int{SourceMembers: 2, SourceScan: 2}; !mapsEqual(round.BySource, want) {
		t.Fatalf("by source %v, want %v", round.BySource, want)
	}

	// A refresh keeps the attribution without asking the sources.
	calls := members.calls

	round, err = c.Refresh(t.Context())
	if err != nil || len(round.ControlPlane) != 2 || round.BySource[SourceMembers] != 2 || members.calls != calls {
		t.Fatalf("refresh: %v, %d peers, by source %v, %d lister calls (was %d)", err, len(round.ControlPlane), round.BySource, members.calls, calls)
	}
}

func mapsEqual(a, b map[SourceName]int) bool {
	if len(a) != len(b) {
		return false
	}

	for k, v := range a {
		if b[k] != v {
			return false
		}
	}

	return true
}

func TestCombinedFailingSourceIsSkippedAndLoggedOnce(t *testing.T) {
	env := newScanEnv(t)
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.11.2")

	var logs bytes.Buffer

	members := &lister{}
	members.set(errors.New("list affiliates: Unimplemented"))

	c := NewCombined(env.scanner(t, ScannerOptions{}), []Source{
		Members{Lister: members},
		Fixed{SourceName: SourceScan, List: Targets{Addrs: env.hosts(t, "127.42.11.0/30"), Range: netip.MustParsePrefix("127.42.11.0/30")}},
	}, time.Second, nil, clockwork.NewRealClock(), zerolog.New(&logs))

	for range 3 {
		round, err := c.Scan(t.Context())
		if err != nil || len(round.ControlPlane) != 1 {
			t.Fatalf("scan: %v, %d peers: the sweep must go on without members", err, len(round.ControlPlane))
		}
	}

	if n := strings.Count(logs.String(), "discovery source unavailable"); n != 1 {
		t.Fatalf("logged the failure %d times, want once:\n%s", n, logs.String())
	}

	members.set(nil)

	if _, err := c.Scan(t.Context()); err != nil {
		t.Fatal(err)
	}

	if !strings.Contains(logs.String(), "discovery source answers again") {
		t.Fatalf("recovery not logged:\n%s", logs.String())
	}

	// Discovery disabled by the operator is news, not a warning.
	logs.Reset()
	members.set(transport.ErrDiscoveryDisabled)

	if _, err := c.Scan(t.Context()); err != nil {
		t.Fatal(err)
	}

	if !strings.Contains(logs.String(), `"level":"info"`) || strings.Contains(logs.String(), `"level":"warn"`) {
		t.Fatalf("disabled discovery should be logged at info:\n%s", logs.String())
	}
}

func TestCombinedPauseEndsWhenAMemberAppears(t *testing.T) {
	env := newScanEnv(t)
	clock := clockwork.NewFakeClock()
	members := &lister{}
	members.set(nil, transport.Member{ID: "a", Addresses: []netip.Addr{mustAddr("127.42.12.1")}})

	c := NewCombined(env.scanner(t, ScannerOptions{Timeout: 200 * time.Millisecond}), []Source{Members{Lister: members}}, 2*time.Second, nil, clock, zerolog.Nop())
	if _, err := c.Scan(t.Context()); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)

	go func() { done <- c.Pause(t.Context(), 30*time.Second) }()

	// Polls that find nothing new do not end the pause.
	for range 3 {
		if err := clock.BlockUntilContext(t.Context(), 2); err != nil {
			t.Fatal(err)
		}

		clock.Advance(2 * time.Second)

		select {
		case err := <-done:
			t.Fatalf("pause ended (%v) with no new member", err)
		case <-time.After(20 * time.Millisecond):
		}
	}

	members.set(nil,
		transport.Member{ID: "a", Addresses: []netip.Addr{mustAddr("127.42.12.1")}},
		transport.Member{ID: "b", Addresses: []netip.Addr{mustAddr("127.42.12.2")}})

	if err := clock.BlockUntilContext(t.Context(), 2); err != nil {
		t.Fatal(err)
	}

	clock.Advance(2 * time.Second)

	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pause did not end one poll after a member appeared")
	}

	// With only fixed sources a pause is the whole delay.
	fixed := NewCombined(env.scanner(t, ScannerOptions{}), []Source{Fixed{SourceName: SourcePeers}}, 2*time.Second, nil, clock, zerolog.Nop())

	go func() { done <- fixed.Pause(t.Context(), 10*time.Second) }()

	if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}

	clock.Advance(9 * time.Second)

	select {
	case err := <-done:
		t.Fatalf("pause ended early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}

	clock.Advance(time.Second)

	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A round whose listed addresses already show a quorum skips the sweep,
// which would wait a whole timeout for its silent addresses; one that does
// not sweeps as well.
func TestCombinedSkipsTheSweepWhenListedAreEnough(t *testing.T) {
	env := newScanEnv(t)
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.13.2")
	startAPID(t, env.pki, env.port, fakeapid.Node{}, "127.42.13.3")

	members := &lister{}
	members.set(nil, transport.Member{ID: "b", Addresses: []netip.Addr{mustAddr("127.42.13.2")}})

	quorum := 2
	c := NewCombined(env.scanner(t, ScannerOptions{}), []Source{
		Members{Lister: members},
		Fixed{SourceName: SourceScan, List: Targets{Addrs: env.hosts(t, "127.42.13.0/29"), Range: netip.MustParsePrefix("127.42.13.0/29")}},
	}, time.Second, func(r Result) bool { return 1+len(r.ControlPlane) >= quorum }, clockwork.NewRealClock(), zerolog.Nop())

	round, err := c.Scan(t.Context())
	if err != nil || round.Probed != 1 || len(round.ControlPlane) != 1 {
		t.Fatalf("quorum in members: %v, probed %d, peers %v; want only the member probed", err, round.Probed, addrsOf(round.ControlPlane))
	}

	quorum = 3

	round, err = c.Scan(t.Context())
	if err != nil || len(round.ControlPlane) != 2 || round.Probed < 6 {
		t.Fatalf("quorum missing: %v, probed %d, peers %v; want the sweep to find the second peer", err, round.Probed, addrsOf(round.ControlPlane))
	}
}

// A discovery member of machine type init is named as an init node whether
// it answers or not: Talos founds etcd there, and no quorum may form
// around it.
func TestMembersNameInitNodes(t *testing.T) {
	l := &lister{}
	l.set(nil,
		transport.Member{ID: "a", MachineType: transport.MachineTypeControlPlane, Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
		transport.Member{ID: "b", MachineType: transport.MachineTypeInit, Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fe80::1")}},
		transport.Member{ID: "c", MachineType: transport.MachineTypeWorker, Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.3")}},
		// A second init node, dual-stack: one node, two addresses.
		transport.Member{ID: "d", MachineType: transport.MachineTypeInit, Addresses: []netip.Addr{netip.MustParseAddr("fd00::4"), netip.MustParseAddr("10.0.0.4")}},
	)

	got, err := Members{Lister: l}.Targets(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	want := [][]netip.Addr{
		{netip.MustParseAddr("10.0.0.2")},
		{netip.MustParseAddr("10.0.0.4"), netip.MustParseAddr("fd00::4")},
	}
	if !slices.EqualFunc(got.Init, want, slices.Equal) {
		t.Fatalf("init nodes %v, want %v (one group of addresses per node)", got.Init, want)
	}
}
