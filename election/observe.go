package election

import (
	"cmp"
	"slices"
)

// normalize makes one round's facts consistent before any rule reads them:
//   - a peer with this node's own boot ID is this node,
//     answering at another address (a VIP, a load balancer, NAT): never a
//     peer, or ConfirmLocks would count this node twice;
//   - one machine reached at several addresses is one candidate;
//   - a peer whose status of its current boot was read is named the way it
//     names itself (address, node name, time sync), so that every
//     observer's ranks and locks agree;
//   - an absent /var/lib/etcd (or an empty one before etcd's service
//     exists, or one listed while etcd stopped) proves nothing: apid
//     answers before EPHEMERAL (and v1.14's ETCD volume) is mounted and
//     after they are unmounted, and then lists no data even on a
//     bootstrapped node. The etcd service entry, read before and after the
//     listing, is the proof (transport.ProbeEtcdSigns).
func normalize(obs Observation) Observation {
	obs.Self.Unsynced = !obs.SelfTimeSynced
	peers := make([]PeerFacts, 0, len(obs.Peers))

	for _, p := range obs.Peers {
		if p.StatusState == StatusOK && p.Status != nil && p.Status.Incarnation.BootID == p.BootID {
			p.IP = p.Status.Incarnation.IP
			p.Node = p.Status.Incarnation.Node
			p.Unsynced = p.Status.TimeUnsynced
		}

		// By boot id only: a node name is copied with a cloned /var, and
		// the copy is another machine that must be seen.
		if p.BootID == obs.Self.BootID {
			continue
		}

		// A status of the current boot proves /var mounted, not Talos
		// v1.14's ETCD volume: the daemon may start (extension services
		// wait only for their own dependencies) before that volume is
		// mounted and before etcd is loaded. Only the etcd service entry,
		// which Talos creates after every mount, proves the listing.
		if p.Signs.DataDirUnproven && p.Signs.DataDirNonEmpty == No {
			p.Signs.DataDirNonEmpty = Unsure
			p.Signs.Unknown = append(slices.Clip(p.Signs.Unknown), p.IP.String()+": /var/lib/etcd absent or empty, and nothing shows it is mounted yet")
		}

		peers = append(peers, p)
	}

	// One candidate per machine: prefer the entry with a readable status.
	slices.SortStableFunc(peers, func(a, b PeerFacts) int {
		if c := cmp.Compare(a.BootID, b.BootID); c != 0 {
			return c
		}

		return cmp.Compare(a.StatusState, b.StatusState)
	})
	peers = slices.CompactFunc(peers, func(a, b PeerFacts) bool { return a.BootID == b.BootID })
	slices.SortStableFunc(peers, func(a, b PeerFacts) int { return a.IP.Compare(b.IP) })

	obs.Peers = peers

	return obs
}

// NormalizedView is the candidate view Step ranks for obs (self first): this
// node and one candidate per peer machine, named as each names itself, with
// this node at another address left out. The daemon's ViewTracker watches
// it, so that only a change of what Step ranks restarts the stability
// window; obs.Self.Node must already be this node's name, as Step sets it.
func NormalizedView(obs Observation) []Candidate {
	return viewOf(normalize(obs))
}
