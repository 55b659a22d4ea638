package election

import (
	"net/netip"
	"testing"
)

// The status command reads a follower's published reason for the peer it
// last saw bootstrapping; the reason is Step's own.
func TestSeenBootstrappingReadsStepsReason(t *testing.T) {
	for _, phase := range []Phase{PhaseBootstrapping, PhaseBootstrapped} {
		a := statusOf(cA, phase, ref(cA, 3), 3, 2)
		a.Bootstrapping, a.BootstrapBootID = 3, cA.BootID

		next, d := Step(lockedB(ref(cA, 3)), obsFor(cB, 0, peer(cA, a), peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0))))
		if d.Kind != Follow {
			t.Fatalf("%s: decision %+v, want follow", phase, d)
		}

		ip, k, seen, ok := SeenBootstrapping(next.Reason)
		if !ok || ip != cA.IP || k != 3 || seen != phase {
			t.Fatalf("SeenBootstrapping(%q) = %s, %d, %s, %v; want %s, 3, %s", next.Reason, ip, k, seen, ok, cA.IP, phase)
		}
	}

	if _, _, _, ok := SeenBootstrapping("locked to 10.0.0.1/a1#3"); ok {
		t.Fatal("a plain lock reason read as a bootstrapping peer")
	}
}

func TestLockLeaderNeedsAStatusOfTheCurrentBoot(t *testing.T) {
	lock := IntentRef{Leader: Incarnation{IP: cA.IP, BootID: "a1", Node: "a0"}, Number: 3}
	moved := cand("10.0.0.9", "a2", 0) // A rebooted onto another address

	// /var not mounted yet: no status, so nothing names the machine.
	obs := obsFor(cB, 0, peer(moved, nil), peer(cC, statusOf(cC, PhaseLocked, &lock, 0, 0)))
	if p := LockLeader(obs, lock); p != nil {
		t.Fatalf("LockLeader = %+v, want none: a node without a status is never the leader", p)
	}

	// Its new boot's status lists the locked boot: the same machine.
	st := statusOf(moved, PhaseIdle, nil, 3, 3)
	st.Incarnation.Node, st.PastBoots = "a0", []string{"a1"}
	obs.Peers[0] = peer(moved, st)

	if p := LockLeader(obs, lock); p == nil || p.BootID != "a2" || p.IP != netip.MustParseAddr("10.0.0.9") {
		t.Fatalf("LockLeader = %+v, want the machine a0 at 10.0.0.9", p)
	}

	// The same name without the locked boot among its past ones: a clone.
	st.PastBoots = nil
	if p := LockLeader(obs, lock); p != nil {
		t.Fatalf("LockLeader = %+v, want none for a copied name", p)
	}
}

func TestLiveBootstrapIsNoneOnceWithdrawn(t *testing.T) {
	st := statusOf(cA, PhaseBootstrapping, ref(cA, 3), 3, 2)
	st.Bootstrapping, st.BootstrapBootID = 3, cA.BootID

	if k := LiveBootstrap(*st); k != 3 {
		t.Fatalf("LiveBootstrap = %d, want 3", k)
	}

	// A later boot with an empty data directory withdraws it (OwnBootstrapNeverReelects).
	later := cand(cA.IP.String(), "a2", 0)
	next, _ := Step(*st, obsFor(later, 0))

	if k := LiveBootstrap(next); k != 0 || next.Bootstrapping != 3 {
		t.Fatalf("after the withdrawal: LiveBootstrap = %d (bootstrapping %d), want 0 with the intent still recorded", k, next.Bootstrapping)
	}
}
