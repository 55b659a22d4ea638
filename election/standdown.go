package election

import "fmt"

// StandDownMessage is the reason a node publishes when Talos tells it that
// Omni manages it; signal names what Talos showed (for example
// "siderolink.api=https://omni.example.com"). Omni calls Bootstrap on every
// cluster it manages, on a node of its own choosing: a second bootstrapper
// with another choice makes a second cluster.
func StandDownMessage(signal string) string {
	return "SideroLink configured (" + signal + "): Omni bootstraps this cluster"
}

// MarkStoodDown makes st the status of a node that stands down for reason. An
// own announced intent is withdrawn (nothing of it was sent, and its
// followers must not wait for it). A lock to another leader and an own
// bootstrap that may be under way stay as they are: only their own rules
// may end them, and standing down sends nothing either way.
func MarkStoodDown(st Status, self Incarnation, reason string) Status {
	st = st.Clone()
	withdrawOwn(&st, self)
	st.StandDown = reason
	st.Reason = reason

	return st
}

// standDown is the rule for a cluster another bootstrapper founds: a node
// that stood down (its own signs, in this boot or an earlier one) stays
// down, and a peer whose status of its current boot says it stood down
// makes this node stand down too, so that no daemon of the cluster sends
// Bootstrap. ok=false: neither, the election goes on.
func standDown(st Status, obs Observation) (Status, Decision, bool) {
	reason := st.StandDown

	if reason == "" {
		p := stoodDownPeer(obs.Peers)
		if p == nil {
			return st, Decision{}, false
		}

		reason = fmt.Sprintf("%s stood down: %s", p.IP, p.Status.StandDown)
	}

	return MarkStoodDown(st, obs.Self.Incarnation, reason), Decision{Kind: StandDown, Reason: reason}, true
}

// stoodDownPeer returns a peer whose status, written in its current boot,
// says it stood down; nil when none does.
func stoodDownPeer(peers []PeerFacts) *PeerFacts {
	for i := range peers {
		p := &peers[i]
		if p.StatusState == StatusOK && p.Status != nil && p.Status.Incarnation.BootID == p.BootID && p.Status.StandDown != "" {
			return p
		}
	}

	return nil
}
