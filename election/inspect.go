package election

import (
	"net/netip"
	"regexp"
	"strconv"
)

// This file is for the status command (cmd/internal/statusreport): it lends
// the operator's report the rules Step reads a view with, so that the report
// judges a cluster by the election's own code and holds no copy of it. The
// daemon does not call these.

// LockLeader is the peer that a daemon, in the round obs, takes for the
// leader of lock (as ReleaseLockOnlyForReason finds it: by node name, a later boot only when
// its status of that boot lists the locked one among its past boots), or
// nil when no peer in view is that leader. For the status command.
func LockLeader(obs Observation, lock IntentRef) *PeerFacts {
	return leaderOf(normalize(obs).Peers, lock.Leader)
}

// Ranked is the view of the round obs as Step ranks it, first to last: one
// candidate per machine, named as its status of this boot names it. For
// the status command.
func Ranked(obs Observation) []Candidate {
	obs = normalize(obs)

	return RankBy(obs.LeaderOrder, viewOf(obs))
}

// LiveBootstrap is the own intent for which st says Bootstrap may have been
// sent and was never withdrawn, 0 when there is none: a bootstrap that died
// with an earlier boot (OwnBootstrapNeverReelects) is withdrawn, and that node founded nothing.
// For the status command.
func LiveBootstrap(st Status) uint64 {
	if st.Bootstrapping > st.WithdrawnThrough {
		return st.Bootstrapping
	}

	return 0
}

// seenBootstrapping matches the reason Step gives a node that follows a
// peer bootstrapping its intent (see step, "is bootstrapping intent").
var seenBootstrapping = regexp.MustCompile(`(\S+) is bootstrapping intent (\d+) \(phase (` +
	string(PhaseBootstrapping) + `|` + string(PhaseBootstrapped) + `)\)`)

// SeenBootstrapping reads a published Reason for the peer that the node's
// last round found bootstrapping: its address, intent and phase; ok is
// false when the reason names none. A daemon records this only in its
// reason, which a later round overwrites: its absence proves nothing. For
// the status command.
func SeenBootstrapping(reason string) (ip netip.Addr, intent uint64, phase Phase, ok bool) {
	m := seenBootstrapping.FindStringSubmatch(reason)
	if m == nil {
		return netip.Addr{}, 0, "", false
	}

	ip, err := netip.ParseAddr(m[1])
	if err != nil {
		return netip.Addr{}, 0, "", false
	}

	intent, err = strconv.ParseUint(m[2], 10, 64)
	if err != nil {
		return netip.Addr{}, 0, "", false
	}

	return ip, intent, Phase(m[3]), true
}
