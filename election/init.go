package election

import (
	"cmp"
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

// initNodes lists the init nodes known this round, one address each,
// sorted. They are counted by machine, not by address: a discovery member
// lists all of a node's addresses (IPv4, IPv6, KubeSpan), and a peer
// reached at one of them, or two peers with one boot id, are that node.
// Counted by address, one dual-stack init node read as two, a
// configuration Talos splits, and every daemon said so.
func initNodes(obs Observation) []netip.Addr {
	var machines []initMachine

	// add folds m into the machines it is the same node as. No two
	// machines kept are the same node, so merging one cannot make m meet
	// a machine it did not meet before.
	add := func(m initMachine) {
		for i := 0; i < len(machines); {
			if !machines[i].same(m) {
				i++

				continue
			}

			m = m.merge(machines[i])
			machines = slices.Delete(machines, i, i+1)
		}

		machines = append(machines, m)
	}

	if obs.SelfInit && obs.Self.IP.IsValid() {
		add(initMachine{addrs: []netip.Addr{obs.Self.IP}, seen: obs.Self.IP, bootID: obs.Self.BootID})
	}

	for _, p := range obs.Peers {
		if p.IP.IsValid() && (p.Init || (p.StatusState == StatusOK && p.Status != nil && p.Status.Init)) {
			add(initMachine{addrs: []netip.Addr{p.IP}, seen: p.IP, bootID: p.BootID})
		}
	}

	for _, g := range obs.InitMembers {
		if len(g) > 0 {
			add(initMachine{addrs: slices.Clone(g)})
		}
	}

	out := make([]netip.Addr, 0, len(machines))
	for _, m := range machines {
		out = append(out, m.name())
	}

	slices.SortFunc(out, netip.Addr.Compare)

	return out
}

// initMachine is one init node: the addresses it is known at, the one it
// answered at (if any), and its boot id (if read).
type initMachine struct {
	addrs  []netip.Addr
	seen   netip.Addr
	bootID string
}

func (m initMachine) same(o initMachine) bool {
	if m.bootID != "" && m.bootID == o.bootID {
		return true
	}

	return slices.ContainsFunc(m.addrs, func(a netip.Addr) bool { return slices.Contains(o.addrs, a) })
}

func (m initMachine) merge(o initMachine) initMachine {
	for _, a := range o.addrs {
		if !slices.Contains(m.addrs, a) {
			m.addrs = append(m.addrs, a)
		}
	}

	if !m.seen.IsValid() || (o.seen.IsValid() && o.seen.Less(m.seen)) {
		m.seen = o.seen
	}

	m.bootID = cmp.Or(m.bootID, o.bootID)

	return m
}

// name is the address a node is named by: the lowest it answered at, else
// its lowest known one.
func (m initMachine) name() netip.Addr {
	if m.seen.IsValid() {
		return m.seen
	}

	return slices.MinFunc(m.addrs, netip.Addr.Compare)
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
