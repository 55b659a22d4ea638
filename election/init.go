package election

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Talos's init machine type founds etcd by itself: StartAllServices starts
// etcd in bootstrap mode on an init node, with no Bootstrap call, once its
// image is pulled. A Bootstrap sent anywhere else would make a second
// cluster, and the init node's data may appear only minutes later, after
// every other check passed. So an init node known by any source (this
// node's own type, a peer's apid or status file, a discovery member) ends
// the election like a cluster: nobody leads, locks or sends Bootstrap.

// initNodes lists the init nodes known this round, by address, sorted.
func initNodes(obs Observation) []netip.Addr {
	var out []netip.Addr

	add := func(a netip.Addr) {
		if a.IsValid() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}

	if obs.SelfInit {
		add(obs.Self.IP)
	}

	for _, p := range obs.Peers {
		if p.Init || (p.StatusState == StatusOK && p.Status != nil && p.Status.Init) {
			add(p.IP)
		}
	}

	for _, a := range obs.InitMembers {
		add(a)
	}

	slices.SortFunc(out, netip.Addr.Compare)

	return out
}

// initEvidence is what a status remembers of an init node: the cluster
// Talos founds there.
func initEvidence(obs Observation, inits []netip.Addr) *Evidence {
	inc := Incarnation{IP: inits[0]}

	for _, p := range obs.Peers {
		if p.IP == inits[0] {
			inc = p.Incarnation
		}
	}

	if obs.SelfInit && obs.Self.IP == inits[0] {
		inc = obs.Self.Incarnation
	}

	return &Evidence{Node: inc, What: "Talos init node: it founds etcd by itself", At: obs.Now}
}

// initDecision is the round of a node that knows of an init node: the init
// node itself waits for its own etcd, everyone else for theirs to join.
// Two init nodes are a configuration Talos itself splits into two
// clusters: said, naming both, and nobody bootstraps.
func initDecision(st *Status, obs Observation, inits []netip.Addr) Decision {
	self := obs.Self.Incarnation
	withdrawOwn(st, self)

	if st.Cluster == nil {
		st.Cluster = initEvidence(obs, inits)
	}

	if len(inits) > 1 {
		names := make([]string, len(inits))
		for i, a := range inits {
			names[i] = a.String()
		}

		return Decision{Kind: Wait, Reason: fmt.Sprintf("%d init nodes (%s): Talos founds a separate etcd cluster on each; "+
			"give one control-plane node machine type init at most, or none; nobody sends Bootstrap", len(inits), strings.Join(names, ", "))}
	}

	if obs.SelfInit {
		return Decision{Kind: Joined, Leader: &self, Reason: "this node is the Talos init node: Talos founds etcd here by itself; waiting for it to be healthy"}
	}

	leader := st.Cluster.Node

	return Decision{Kind: Follow, Leader: &leader, Reason: fmt.Sprintf("%s is the Talos init node: Talos founds etcd there by itself; waiting for own etcd to join", inits[0])}
}
