package election

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// NewStatus is the status of a node that has never run the protocol.
func NewStatus(self Candidate) Status {
	inc := self.Incarnation
	if inc.Node == "" {
		inc.Node = inc.BootID // the first boot names the machine
	}

	return Status{
		Version:     StatusVersion,
		Incarnation: inc,
		BootTime:    self.BootTime,
		Phase:       PhaseIdle,
	}
}

// MaxPastBoots bounds Status.PastBoots. A lock finds its leader's later
// boots by this list, and only then can the leader's withdrawal release it:
// a follower that was off while its leader rebooted more often than this
// keeps its lock until the operator breaks it. A machine reboots that often
// before its cluster exists only in a boot loop; 1024 boot ids keep the
// file under 50 KB, well inside transport's StatusLimit.
const MaxPastBoots = 1024

// Resume adapts a reloaded status file to the running incarnation (the
// first of Step's rules, doc.go).
// Same incarnation: continue exactly where the file left off (a daemon
// restart). New boot (or new IP): keep the intent counter, WithdrawnThrough
// and a lock to another leader (locks survive reboots); withdraw an own
// announced intent; keep bootstrapping/bootstrapped so that Step decides
// from the local etcd data directory whether that bootstrap can still take
// effect. It is idempotent.
func Resume(saved Status, self Candidate) Status {
	st := saved.Clone()
	st.Version = StatusVersion
	st.BootTime = self.BootTime

	// The machine keeps its name across boots and addresses; a file of an
	// older version gets one now.
	self.Node = cmp.Or(saved.Incarnation.Node, self.Node, self.BootID)

	if st.Incarnation.Is(self.Incarnation) {
		return st
	}

	old := st.Incarnation
	st.Incarnation = self.Incarnation

	if old.BootID != self.BootID && !slices.Contains(st.PastBoots, old.BootID) {
		st.PastBoots = append(st.PastBoots, old.BootID)
		st.PastBoots = st.PastBoots[max(0, len(st.PastBoots)-MaxPastBoots):]
	}
	st.FSMState = ""

	switch st.Phase {
	case PhaseBootstrapping, PhaseBootstrapped, PhaseDone:
		// OwnBootstrapNeverReelects decides; BootstrapBootID still names the old boot.
		return st
	}

	if st.Lock != nil && st.Lock.Leader.Is(old) {
		st.Lock = nil
	}

	// Every own intent of an earlier boot is dead: nothing of it can be in
	// flight, because none reached bootstrapping.
	st.WithdrawnThrough = max(st.WithdrawnThrough, st.Intent)
	st.AnnouncedAt = time.Time{}

	if st.Lock != nil {
		st.Phase = PhaseLocked
	} else {
		st.Phase = PhaseIdle
	}

	st.Reason = fmt.Sprintf("resumed after a new boot (previous incarnation %s)", old)

	return st
}
