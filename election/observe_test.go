package election

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// One machine reached at two addresses (an address that forwards to its
// apid) is one candidate, kept with its readable status: counted twice, its
// one lock would count twice towards a leader's quorum.
func TestOneCandidatePerMachine(t *testing.T) {
	alias := cand("10.0.0.102", "b1", 10) // B's apid, reached through another address
	locked := statusOf(cB, PhaseLocked, ref(cA, 3), 0, 0)
	unread := peer(alias, nil)
	unread.StatusState = StatusUnreadable

	got := normalize(obsFor(cA, 0, unread, peer(cB, locked), peer(cC, nil)))

	if len(got.Peers) != 2 {
		t.Fatalf("%d peers, want 2 (B once, C): %+v", len(got.Peers), got.Peers)
	}

	b := got.Peers[0]
	if b.BootID != "b1" || b.StatusState != StatusOK || b.Status != locked {
		t.Fatalf("B kept as %s with status %s, want the entry whose status was read", b.IP, b.StatusState)
	}
}

// apid answers before /var (and Talos v1.14's ETCD volume) is mounted, and
// then lists no data directory even on a node that bootstrapped: until the
// etcd service entry proves the mount, "absent or empty" is unknown, never
// "no data". A status of the current boot proves /var, not the ETCD
// volume: the daemon may start before that volume is mounted.
func TestUnmountedDataDirectoryIsUnknown(t *testing.T) {
	premount := peer(cB, nil)
	premount.Signs.DataDirUnproven = true

	p := normalize(obsFor(cA, 0, premount)).Peers[0]
	if p.Signs.DataDirNonEmpty != Unsure || len(p.Signs.Unknown) == 0 || !strings.Contains(p.Signs.Unknown[0], "mounted") {
		t.Fatalf("data directory before the mount: %s, unknown %q; want unsure, saying the mount is unproven", p.Signs.DataDirNonEmpty, p.Signs.Unknown)
	}

	early := peer(cB, statusOf(cB, PhaseIdle, nil, 0, 0))
	early.StatusState = StatusOK
	early.Signs.DataDirUnproven = true

	if p := normalize(obsFor(cA, 0, early)).Peers[0]; p.Signs.DataDirNonEmpty != Unsure {
		t.Fatalf("data directory with a status of the current boot but no etcd service: %s, want unsure", p.Signs.DataDirNonEmpty)
	}

	proven := early
	proven.Signs.DataDirUnproven = false

	if p := normalize(obsFor(cA, 0, proven)).Peers[0]; p.Signs.DataDirNonEmpty != No {
		t.Fatalf("data directory listed beside etcd's service: %s, want no data", p.Signs.DataDirNonEmpty)
	}
}

// A lock to A#1 held by a follower, and A back in a new boot with an empty
// data directory: the lock is released only once a status of A's new boot
// proves /var is mounted there, and names A's machine (its past boots list
// the locked one).
func TestRebootedLeaderReleasesOnlyWithProofOfTheMount(t *testing.T) {
	leader := Incarnation{IP: netip.MustParseAddr("10.0.0.1"), BootID: "a1", Node: "a0"}
	lock := IntentRef{Leader: leader, Number: 1}
	rebooted := cand("10.0.0.1", "a2", 100)

	newBoot := statusOf(rebooted, PhaseIdle, nil, 1, 0)
	newBoot.Incarnation.Node, newBoot.PastBoots = "a0", []string{"a0", "a1"}

	for _, tc := range []struct {
		name    string
		status  *Status
		state   StatusState
		etcd    Tri
		release bool
	}{
		{name: "status of the new boot read", status: newBoot, state: StatusOK, etcd: No, release: true},
		// The daemon of the new boot has not written yet: the status is
		// the old boot's, and nothing proves the mount.
		{name: "status of the old boot only", status: statusOf(cA, PhaseBootstrapping, ref(cA, 1), 1, 0), state: StatusStale, etcd: No},
		{name: "no status read", state: StatusUnreadable, etcd: No},
		// The new boot reboots or upgrades: Talos stops etcd (Finished,
		// read as unsure), then unmounts the ETCD volume and /var while
		// apid answers, so the listing is empty though the leader holds
		// data. An unanswered ServiceList is unsure too.
		{name: "etcd finished or unknown", status: newBoot, state: StatusOK, etcd: Unsure},
	} {
		p := peer(rebooted, tc.status)
		p.StatusState = tc.state
		p.Signs.EtcdRunning = tc.etcd
		obs := normalize(obsFor(cB, time.Minute, p))

		if why := releaseReason(lock, obs); (why != "") != tc.release {
			t.Errorf("%s: release reason %q, want a release %v", tc.name, why, tc.release)
		}
	}
}

// releaseReason does not take a read status alone as proof of the mount:
// the status must be of the boot the peer runs now, even when the peer is
// found as the leader (facts that normalize would never produce, so that
// the guard holds on its own).
func TestReleaseNeedsAStatusOfTheCurrentBoot(t *testing.T) {
	leader := Incarnation{IP: netip.MustParseAddr("10.0.0.1"), BootID: "a1", Node: "a0"}
	lock := IntentRef{Leader: leader, Number: 1}

	oldBoot := statusOf(cA, PhaseBootstrapping, ref(cA, 1), 1, 0)
	oldBoot.Incarnation.Node, oldBoot.PastBoots = "a0", []string{"a0", "a1"}

	p := peer(cand("10.0.0.1", "a2", 100), oldBoot)
	p.Node = "a0"

	if why := releaseReason(lock, obsFor(cB, time.Minute, p)); why != "" {
		t.Fatalf("released on a status of the leader's old boot: %q", why)
	}
}

// A peer without a name (no status of its current boot was read) is never
// a lock's leader, whatever its address: only a status of that boot shows
// which machine it is and that its /var is mounted.
func TestUnnamedPeerIsNoLeader(t *testing.T) {
	leader := Incarnation{IP: netip.MustParseAddr("10.0.0.1"), BootID: "a1", Node: "a0"}

	unnamed := peer(cand("10.0.0.1", "a1", 0), nil)
	unnamed.StatusState = StatusUnreadable

	if p := leaderOf([]PeerFacts{unnamed}, leader); p != nil {
		t.Fatalf("an unnamed peer at %s was taken for the leader %s", p.IP, leader)
	}

	named := unnamed
	named.Node = "a0"

	if p := leaderOf([]PeerFacts{named}, leader); p == nil {
		t.Fatal("the named peer of the leader's boot was not found")
	}
}

// The first-ranked node announces and leads from the next round: its
// intent is published before any rule can decide to bootstrap it, even
// where nothing else blocks (one node, QUORUM_NODES=1, no delay).
func TestAnnounceBeforeBootstrap(t *testing.T) {
	obs := obsFor(cA, 0)
	obs.Quorum, obs.PreBootstrapDelay = 1, 0

	st, d := Step(NewStatus(cA), obs)
	if d.Kind != Lead || st.Phase != PhaseAnnounced || st.Bootstrapping != 0 {
		t.Fatalf("first round: %s, phase %s, bootstrapping %d; want announced, leading", d.Kind, st.Phase, st.Bootstrapping)
	}

	if _, d := Step(st, obs); d.Kind != BeginBootstrap {
		t.Fatalf("next round: %s (%s), want the bootstrap", d.Kind, d.Reason)
	}
}
