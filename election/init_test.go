package election

import (
	"net/netip"
	"strings"
	"testing"
)

// A Talos init node, known by any source, founds the cluster: nobody else
// leads, locks or bootstraps, even a node that ranks first.
func TestInitNodeEndsTheElection(t *testing.T) {
	idle := func(c Candidate) PeerFacts { return peer(c, statusOf(c, PhaseIdle, nil, 0, 0)) }

	for _, tc := range []struct {
		name    string
		arrange func(*Observation)
		kind    DecisionKind
		reason  string
	}{
		{name: "a peer's apid says init", arrange: func(o *Observation) { o.Peers[1].Init = true }, kind: Follow, reason: "10.0.0.3 is the Talos init node"},
		{name: "a peer's status says init", arrange: func(o *Observation) { o.Peers[0].Status.Init = true }, kind: Follow, reason: "10.0.0.2 is the Talos init node"},
		{name: "only a discovery member says init", arrange: func(o *Observation) {
			o.InitMembers = [][]netip.Addr{addrs("10.0.0.9")}
		}, kind: Follow, reason: "10.0.0.9 is the Talos init node"},
		{name: "this node is the init node", arrange: func(o *Observation) { o.SelfInit = true }, kind: Joined, reason: "this node is the Talos init node"},
		// One machine at several addresses is one init node, however it is
		// known: a member lists them all, a peer answers at one.
		{name: "a discovery member with two addresses", arrange: func(o *Observation) {
			o.InitMembers = [][]netip.Addr{addrs("10.0.0.9", "fd00::9")}
		}, kind: Follow, reason: "10.0.0.9 is the Talos init node"},
		{name: "a peer says init, its member lists its other address too", arrange: func(o *Observation) {
			o.Peers[1].Init = true
			o.InitMembers = [][]netip.Addr{addrs("fd00::3", "10.0.0.3")}
		}, kind: Follow, reason: "10.0.0.3 is the Talos init node"},
		{name: "this node is the init node, its member lists its other address too", arrange: func(o *Observation) {
			o.SelfInit = true
			o.InitMembers = [][]netip.Addr{addrs("10.0.0.1", "fd00::1")}
		}, kind: Joined, reason: "this node is the Talos init node"},
		{name: "two init nodes", arrange: func(o *Observation) {
			o.Peers[1].Init = true
			o.InitMembers = [][]netip.Addr{addrs("10.0.0.9")}
		}, kind: Wait, reason: "2 init nodes (10.0.0.3, 10.0.0.9)"},
		{name: "two init nodes, each at two addresses", arrange: func(o *Observation) {
			o.Peers[1].Init = true
			o.InitMembers = [][]netip.Addr{addrs("10.0.0.3", "fd00::3"), addrs("fd00::9", "10.0.0.9")}
		}, kind: Wait, reason: "2 init nodes (10.0.0.3, 10.0.0.9)"},
		{name: "one node answering at two addresses, one boot id", arrange: func(o *Observation) {
			o.Peers[0].Init, o.Peers[1].Init = true, true
			o.Peers[1].BootID = o.Peers[0].BootID
		}, kind: Follow, reason: "10.0.0.2 is the Talos init node"},
		{name: "a member joins a peer's address and another of its own", arrange: func(o *Observation) {
			o.Peers[1].Init = true
			o.InitMembers = [][]netip.Addr{addrs("fd00::3"), addrs("10.0.0.3", "fd00::3")}
		}, kind: Follow, reason: "10.0.0.3 is the Talos init node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := obsFor(cA, 0, idle(cB), idle(cC)) // A ranks first: without the init node it would announce
			tc.arrange(&obs)

			got, d := Step(NewStatus(cA), obs)
			if d.Kind != tc.kind || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("decision %s %q, want %s with %q", d.Kind, d.Reason, tc.kind, tc.reason)
			}

			if got.Lock != nil || got.Intent != 0 || got.Phase != PhaseIdle {
				t.Fatalf("took part in the election: phase %s, lock %v, intent %d", got.Phase, got.Lock, got.Intent)
			}

			if got.Cluster == nil || got.Init != obs.SelfInit {
				t.Fatalf("status remembers cluster %v, init %v; want the init node remembered and init=%v", got.Cluster, got.Init, obs.SelfInit)
			}

			// Remembered: the init node out of sight changes nothing.
			again := obsFor(cA, 0, idle(cB), idle(cC))
			if _, d := Step(got, again); d.Kind == Lead || d.Kind == BeginBootstrap {
				t.Fatalf("the init node out of sight, the node took part again: %s", d.Kind)
			}
		})
	}
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}

	return out
}

// A bootstrap decided but not sent is withdrawn once an init node shows,
// and ConfirmLocks refuses the send.
func TestInitNodeStopsAnUnsentBootstrap(t *testing.T) {
	p := func(c Candidate) PeerFacts { return peer(c, statusOf(c, PhaseLocked, ref(cA, 3), 0, 0)) }

	decided, d := Step(announcedA(), obsFor(cA, 0, p(cB), p(cC)))
	if d.Kind != BeginBootstrap {
		t.Fatalf("setup: %s", d.Kind)
	}

	obs := obsFor(cA, 0, p(cB), p(cC))
	obs.Peers[1].Init = true

	if err := ConfirmLocks(decided, obs); err == nil || !strings.Contains(err.Error(), "init node 10.0.0.3") {
		t.Fatalf("ConfirmLocks with an init node = %v, want a refusal naming it", err)
	}

	got, d := Step(decided, obs)
	if d.Kind != Follow || got.Phase != PhaseIdle || got.Bootstrapping != 0 || got.WithdrawnThrough < 3 {
		t.Fatalf("unsent bootstrap beside an init node: %s, phase %s, bootstrapping %d, withdrawn %d", d.Kind, got.Phase, got.Bootstrapping, got.WithdrawnThrough)
	}
}
