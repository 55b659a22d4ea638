package election

import (
	"slices"
	"time"
)

// ViewTracker remembers since when the candidate set has stayed the same.
// Any change of a member, of its boot ID or of its boot time (a clock step)
// restarts the stability period. It is not safe for concurrent use.
type ViewTracker struct {
	last  []Candidate
	since time.Time
	seen  bool
}

// Observe records the view of one round (self included) and returns since
// when it has been unchanged.
func (v *ViewTracker) Observe(now time.Time, view []Candidate) time.Time {
	sorted := Rank(view)

	if !v.seen || !slices.EqualFunc(sorted, v.last, sameCandidate) {
		v.last = sorted
		v.since = now
		v.seen = true
	}

	return v.since
}

func sameCandidate(a, b Candidate) bool {
	return a.Incarnation.Is(b.Incarnation) && a.BootTime.Equal(b.BootTime) && a.Unsynced == b.Unsynced
}

// Machines counts the machines among candidates (self and its peers), one
// per boot id: a machine reached at several addresses (a second interface,
// a VIP or load balancer that forwards to it, this node itself at another
// address) is one node of the quorum. Every quorum test counts with it, so
// that discovery's wait, the refresh's fallback to a sweep and the
// election agree on what a quorum is.
func Machines(candidates []Candidate) int {
	boots := make(map[string]bool, len(candidates))

	for _, c := range candidates {
		boots[c.BootID] = true
	}

	return len(boots)
}
