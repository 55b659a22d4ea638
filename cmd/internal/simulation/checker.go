package simulation

import (
	"fmt"
	"strings"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// checker keeps what the verdict needs: every etcd cluster ever created,
// and the first problem seen.
type checker struct {
	created     int
	nextID      int
	preexisting bool
	double      bool
	problem     string
	// invariant is the first invariant violated (invariants.go), and
	// invariantWhy its message; brokenInStep: a daemon goroutine broke it
	// in the step under way.
	invariant    string
	invariantWhy string
	brokenInStep bool
	// founder names the machine that founded each cluster; foundedBy is
	// that machine (none for a cluster made by hand).
	founder   map[int]string
	foundedBy map[int]*tnode
	// endedEmpty holds the boots that ended with /var/lib/etcd empty (a
	// Bootstrap request dies with its boot).
	endedEmpty map[string]bool
	// withdrawnFor holds, per boot, the highest withdrawnThrough that a
	// status listing that boot (as its own or a past one) ever published:
	// a follower may act on a withdrawal it read even after a reset of
	// EPHEMERAL wiped the file that carried it.
	withdrawnFor map[string]uint64
}

// existing records a cluster made before the scenario (by hand).
func (c *checker) existing() int {
	c.preexisting = true
	c.nextID++
	c.setFounder(c.nextID, "a cluster made by hand")

	return c.nextID
}

// newCluster is a data directory filling after an accepted Bootstrap: a new
// etcd cluster. More than one in a site is the fault this daemon exists to
// prevent.
func (c *checker) newCluster(w *world, m *tnode) int {
	c.nextID++
	c.created++
	c.setFounder(c.nextID, nodeName(m))

	if c.foundedBy == nil {
		c.foundedBy = map[int]*tnode{}
	}

	c.foundedBy[c.nextID] = m
	w.tracef(m, "etcd cluster %d created", c.nextID)

	if c.created > 1 || c.preexisting {
		c.violation(w, fmt.Sprintf("cluster %d created by %s: %d clusters (preexisting: %v)", c.nextID, m, c.created, c.preexisting))
	}

	if w.hooks.clusterCreated != nil {
		w.hooks.clusterCreated(m)
	}

	return c.nextID
}

func (c *checker) setFounder(id int, who string) {
	if c.founder == nil {
		c.founder = map[int]string{}
	}

	c.founder[id] = who
}

func (c *checker) violation(w *world, why string) {
	if !c.double {
		c.double = true
		c.problem = "DOUBLE BOOTSTRAP: " + why
		w.tracef(nil, "%s", c.problem)
	}
}

func (c *checker) daemonFailed(w *world) {
	w.path("daemon exited with an error")
}

// otherMember: another running node holds n's cluster's data.
func (w *world) otherMember(n *tnode) bool {
	for _, m := range w.nodes {
		if m != n && m.up && m.data != 0 && m.data == n.data {
			return true
		}
	}

	return false
}

// rejoining: a reset node has not joined etcd again yet.
func (w *world) rejoining() bool {
	for _, m := range w.nodes {
		if m.wasReset && m.data == 0 {
			return true
		}
	}

	return false
}

func (w *world) allDone() bool {
	if w.inChaos() {
		return false
	}

	for _, n := range w.nodes {
		if n.cp && (n.daemon == nil || !n.daemon.finished || !n.healthy) {
			return false
		}
	}

	return true
}

// horizon is when liveness is judged: the end of the chaos, the settle
// allowance, and one crash cycle per control-plane node when the seed
// crashes daemons at their Bootstrap boundary.
func (w *world) horizon() time.Duration {
	h := w.p.chaosEnd + w.settleAllowance()

	if f := w.p.disk; f.on[faultKill] || f.on[faultPowerLoss] {
		// A Bootstrap boundary may crash each node once after the chaos:
		// a reboot, a slow /var and ETCD volume, the send judged again.
		// Each leader in turn may crash so at its send, so every
		// control-plane node may cost one such cycle (seven of them took
		// 22 minutes in one scenario, where one cycle was allowed).
		cps := 0

		for _, n := range w.nodes {
			if n.cp {
				cps++
			}
		}

		h += time.Duration(cps) * (6*time.Minute + w.p.cfg.EtcdWait)
	}

	return h
}

// settleAllowance is what the world may take to settle once nothing more
// is injected: what the model itself may take (a slow /var, a late time
// sync, the etcd wait before a resend, a slow image pull, filling and
// joining) and a bounded number of protocol rounds.
func (w *world) settleAllowance() time.Duration {
	c := w.p.cfg

	a := 3*time.Minute + 4*time.Minute + c.EtcdWait + w.p.fillMax + w.p.joinMax +
		2*c.MaxBackoff + c.PreBootstrapDelay + 12*c.ScanInterval + 12*c.FollowerCheckInterval
	if w.p.slowPull > 0 {
		a += c.EtcdWait + slowPullExtra
	}

	return a
}

// slowPullExtra bounds how much longer than the resend wait a slow etcd
// image pull takes.
const slowPullExtra = 10 * time.Minute

func (w *world) livenessProblem() string {
	if w.chk.problem != "" {
		return w.chk.problem
	}

	if n := w.addressLeaderNeverSyncs(); n != nil {
		// With LEADER_ORDER=address the lowest address leads whatever its
		// clock, as the Cluster API provider would pick it: a node that
		// never syncs time can never bootstrap, and nobody else may.
		return w.stallUnexplained(n)
	}

	if w.p.mixedQuorum {
		// QUORUM_NODES differs: nobody may lead or lock until the
		// configuration agrees (a node on its own may have bootstrapped
		// first). Liveness is every waiting node naming the mismatch.
		return w.mismatchUnreported()
	}

	want := 1
	if w.chk.preexisting {
		want = 0
	}

	if w.chk.created != want {
		return fmt.Sprintf("%d clusters created, want %d", w.chk.created, want)
	}

	var stuck []string

	for _, n := range w.nodes {
		if !n.cp || (n.daemon != nil && n.daemon.finished && n.healthy) {
			continue
		}

		reason := "no daemon running"

		if n.daemon != nil {
			reason = fmt.Sprintf("in %s", n.daemon.state)
		}

		if st := w.statusOf(n); st != "" {
			reason += ": " + st
		}

		stuck = append(stuck, fmt.Sprintf("%s (%s)", n, reason))
	}

	if len(stuck) > 0 {
		return "not done by the liveness deadline: " + strings.Join(stuck, "; ")
	}

	return ""
}

// mismatchUnreported names a control-plane node that neither finished nor
// says why it waits.
func (w *world) mismatchUnreported() string {
	for _, n := range w.nodes {
		if !n.cp || (n.daemon != nil && n.daemon.finished) {
			continue
		}

		if st := w.statusOf(n); !strings.Contains(st, "mismatch: ") && !strings.Contains(st, "a cluster exists") {
			return fmt.Sprintf("%s waits without naming the QUORUM_NODES mismatch: %s", n, st)
		}
	}

	return ""
}

// addressLeaderNeverSyncs is the control-plane node with the lowest
// address in string order, when the order is address and it never syncs:
// it ranks first and may not announce, so nobody bootstraps. (A node that
// is lowest only of those in view never announces either, so a lower one
// arriving later takes the lead.)
func (w *world) addressLeaderNeverSyncs() *tnode {
	if w.p.cfg.LeaderOrder != election.OrderAddress {
		return nil
	}

	var first *tnode

	for _, n := range w.nodes {
		if n.cp && (first == nil || n.ip.String() < first.ip.String()) {
			first = n
		}
	}

	if first != nil && first.neverSync {
		return first
	}

	return nil
}

// stallUnexplained names a waiting node whose status does not point at the
// leader that cannot act (or at a cluster).
func (w *world) stallUnexplained(leader *tnode) string {
	for _, n := range w.nodes {
		if !n.cp || (n.daemon != nil && n.daemon.finished) {
			continue
		}

		st := w.statusOf(n)
		if !strings.Contains(st, leader.ip.String()) && !strings.Contains(st, "time sync") && !strings.Contains(st, "a cluster exists") && !strings.Contains(st, "mismatch: ") {
			return fmt.Sprintf("%s waits without naming %s, the leader that never syncs time: %s", n, leader, st)
		}
	}

	return ""
}
