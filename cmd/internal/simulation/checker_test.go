package simulation

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// Two daemons that break invariants in one step run in parallel: whichever
// of them takes the lock first, the verdict and the trace are the same.
func TestViolationsOfOneStepDoNotDependOnGoroutineOrder(t *testing.T) {
	outcome := func(first, second string) (string, []string) {
		w := &world{sched: newSched(1), opts: Options{Trace: true}}
		n := &tnode{idx: 0}

		w.tracef(n, "a daemon's line") // a daemon goroutine: not stepping
		w.chk.broken(w, first, "found by the daemon of %s", first)
		w.chk.broken(w, second, "found by the daemon of %s", second)
		w.stepping = true
		w.flushDaemonLines()

		return w.chk.problem, w.trace
	}

	p1, t1 := outcome("InvariantB", "InvariantA")
	p2, t2 := outcome("InvariantA", "InvariantB")

	if p1 != p2 || !slices.Equal(t1, t2) {
		t.Fatalf("the goroutine order decides:\n%s\n%q\nagainst\n%s\n%q", p1, t1, p2, t2)
	}

	if !strings.HasSuffix(t1[0], "a daemon's line") {
		t.Fatalf("the checker's lines come before the daemon line that led to them: %q", t1)
	}

	// A later step keeps the first verdict.
	w := &world{sched: newSched(1)}
	w.chk.broken(w, "InvariantB", "first")
	w.chk.brokenInStep = false
	w.chk.broken(w, "InvariantA", "later")

	if w.chk.invariant != "InvariantB" {
		t.Fatalf("a later step replaced the first violation: %s", w.chk.invariant)
	}
}

// A follower's round may read its leader's withdrawal just before a reset
// of EPHEMERAL wipes the leader's status file: the withdrawal was
// published, so the lock it ends ended for its reason.
func TestWithdrawalWipedByAResetStillEndsALock(t *testing.T) {
	w := &world{sched: newSched(1), opts: Options{Trace: true}, bootOwner: map[string]*tnode{}}
	leader := &tnode{idx: 0, bootID: "leader-boot", data: 1}
	follower := &tnode{idx: 1, bootID: "follower-boot"}
	w.bootOwner[leader.bootID] = leader

	inc := election.Incarnation{IP: netip.MustParseAddr("198.18.0.10"), BootID: leader.bootID}
	lock := election.IntentRef{Leader: inc, Number: 1}

	done := election.NewStatus(election.Candidate{Incarnation: inc})
	done.Phase, done.Intent, done.WithdrawnThrough = election.PhaseDone, 1, 1
	w.chk.recordWithdrawal(&done)
	leader.inv = record{} // the reset wiped the file

	released := election.NewStatus(election.Candidate{Incarnation: election.Incarnation{IP: netip.MustParseAddr("198.18.0.11"), BootID: follower.bootID}})
	w.chk.checkRelease(w, follower, lock, &released)

	if w.chk.invariant != "" {
		t.Fatalf("a release after a published withdrawal was flagged: %s", w.chk.problem)
	}

	// Without the withdrawal, the same release breaks the invariant.
	w.chk.withdrawnFor = nil
	w.chk.checkRelease(w, follower, lock, &released)

	if w.chk.invariant != invLockReleasedForReason {
		t.Fatalf("a release without a reason was not flagged: %q", w.chk.invariant)
	}
}
