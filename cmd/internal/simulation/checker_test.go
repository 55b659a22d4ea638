package simulation

import (
	"slices"
	"strings"
	"testing"
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
