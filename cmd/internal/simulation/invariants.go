package simulation

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// The protocol's safety invariants (election/doc.go, "Invariants"), checked
// from the simulator's omniscient view: at every publish of a status file,
// at every Bootstrap machined accepts, and after every event.
const (
	invSentStaysSent         = "SentStaysSent"
	invActsOnWhatPeersRead   = "ActsOnWhatPeersRead"
	invClusterEndsElection   = "ClusterEndsElection"
	invLockReleasedForReason = "LockReleasedForReason"
	invOneFounding           = "OneFounding"
)

// Invariants lists them in doc.go's order.
var Invariants = []string{invSentStaysSent, invActsOnWhatPeersRead, invClusterEndsElection, invLockReleasedForReason, invOneFounding}

// record is what the checker keeps of one machine.
type record struct {
	// published is the last status a daemon published in status.json
	// (nil before the first, and after a reset of EPHEMERAL).
	published *election.Status
	// publishedData is its bytes.
	publishedData []byte
	// clusterSeen: a published status recorded a cluster (evidence or
	// phase done); lockAtRecord is its lock then.
	clusterSeen  bool
	lockAtRecord *election.IntentRef
	// sentBoot is the boot in which machined accepted this node's own
	// daemon's Bootstrap.
	sentBoot string
}

// broken records the first invariant violated; the run's verdict names it.
func (c *checker) broken(w *world, name, format string, args ...any) {
	why := fmt.Sprintf("INVARIANT %s: %s", name, fmt.Sprintf(format, args...))

	// Daemons woken in one step run in parallel: all they break then is
	// traced, and the smallest message is kept, so that the order in
	// which their goroutines took the lock does not choose the verdict.
	sameStep := c.invariant != "" && c.brokenInStep && !w.stepping
	if c.invariant != "" && !sameStep {
		return
	}

	w.tracef(nil, "%s", why)

	if sameStep && why >= c.invariantWhy {
		return
	}

	c.invariant, c.invariantWhy, c.brokenInStep = name, why, !w.stepping

	if c.problem == "" || !c.double {
		c.problem = why
	}
}

// published is a daemon's rename of a new status.json into place (mu held,
// the daemon's goroutine): what peers read from now on.
func (c *checker) published(w *world, d *daemonRun, data []byte) {
	st, err := election.ParseStatus(data)
	if err != nil {
		c.broken(w, invActsOnWhatPeersRead, "%s published an unreadable status: %v", d.node, err)

		return
	}

	n := d.node
	r := &n.inv
	prev := r.published

	c.checkSent(w, n, st)
	c.checkClusterEndsElection(w, n, st)
	c.recordWithdrawal(st)

	if prev != nil && prev.Lock != nil {
		c.checkRelease(w, n, *prev.Lock, st)
	}

	if st.Cluster != nil || st.Phase == election.PhaseDone {
		if !r.clusterSeen {
			r.clusterSeen, r.lockAtRecord = true, st.Lock
		}
	}

	r.published, r.publishedData = st, data

	if w.hooks.saved != nil {
		w.hooks.saved(d, *st)
	}
}

// checkSent: SentStaysSent. A Bootstrap machined accepted from this node's
// daemon in the current boot stays recorded as possibly sent.
func (c *checker) checkSent(w *world, n *tnode, st *election.Status) {
	if n.inv.sentBoot == "" || n.inv.sentBoot != n.bootID || st.Phase == election.PhaseDone {
		return
	}

	switch {
	case st.Phase != election.PhaseBootstrapping && st.Phase != election.PhaseBootstrapped:
		c.broken(w, invSentStaysSent, "%s: machined accepted its Bootstrap in boot %s, its status says phase %s (withdrawn through %d)",
			n, n.bootID, st.Phase, st.WithdrawnThrough)
	case st.BootstrapBootID != n.bootID:
		c.broken(w, invSentStaysSent, "%s: machined accepted its Bootstrap in boot %s, its status names boot %s", n, n.bootID, st.BootstrapBootID)
	case st.Withdrawable():
		c.broken(w, invSentStaysSent, "%s: machined accepted its Bootstrap of intent %d, its status records it as never sent", n, st.Bootstrapping)
	}
}

// recordWithdrawal keeps what st withdrew for its own boot and every past
// boot it lists: intents of those boots up to withdrawnThrough can never
// lead to a Bootstrap, and a lock to one of them may end.
func (c *checker) recordWithdrawal(st *election.Status) {
	if st.WithdrawnThrough == 0 {
		return
	}

	if c.withdrawnFor == nil {
		c.withdrawnFor = map[string]uint64{}
	}

	for _, boot := range append([]string{st.Incarnation.BootID}, st.PastBoots...) {
		c.withdrawnFor[boot] = max(c.withdrawnFor[boot], st.WithdrawnThrough)
	}
}

// accepted is machined taking a Bootstrap on n (scheduler side).
func (c *checker) accepted(w *world, n *tnode, by string) {
	if by != "daemon" {
		return
	}

	n.inv.sentBoot = n.bootID

	if st := n.inv.published; st != nil {
		c.checkSent(w, n, st)
	} else {
		c.broken(w, invSentStaysSent, "%s: machined accepted a Bootstrap its daemon never published", n)
	}
}

// checkClusterEndsElection: a node that recorded a cluster never takes
// part in an election again: no announce, no new lock, no new bootstrap.
func (c *checker) checkClusterEndsElection(w *world, n *tnode, st *election.Status) {
	r := &n.inv
	if !r.clusterSeen {
		return
	}

	switch {
	case st.Phase == election.PhaseAnnounced:
		c.broken(w, invClusterEndsElection, "%s recorded a cluster, then announced intent %d", n, st.Intent)
	case st.Lock != nil && (r.lockAtRecord == nil || !st.Lock.Is(*r.lockAtRecord)):
		c.broken(w, invClusterEndsElection, "%s recorded a cluster, then locked to %s", n, st.Lock)
	case r.published != nil && st.Bootstrapping > r.published.Bootstrapping:
		c.broken(w, invClusterEndsElection, "%s recorded a cluster, then began bootstrap %d", n, st.Bootstrapping)
	}
}

// checkRelease: LockReleasedForReason. A lock to another machine that
// leaves a published status was released because its leader withdrew that
// intent, or because the leader's boot ended with /var/lib/etcd empty.
func (c *checker) checkRelease(w *world, n *tnode, lock election.IntentRef, st *election.Status) {
	if st.Lock != nil && st.Lock.Is(lock) {
		return
	}

	leader := w.bootOwner[lock.Leader.BootID]
	if leader == nil || leader == n {
		return // an own intent (withdrawn or bootstrapping), or a boot of no machine here (a cloned file)
	}

	k := lock.Number

	if c.withdrawnFor[lock.Leader.BootID] >= k {
		return
	}

	if leader.bootID != lock.Leader.BootID && leader.data == 0 && leader.pending == nil {
		return
	}

	// The invariant as written: the locked boot ended with the data
	// directory empty, so nothing of that intent can found a cluster. A
	// founding the leader's new boot holds since (the Cluster API
	// provider's Bootstrap, which the follower's read of an empty
	// directory cannot see yet) is outside the lock protocol: OneFounding
	// judges it. One by its own daemon is not, and still counts.
	if leader.bootID != lock.Leader.BootID && c.endedEmpty[lock.Leader.BootID] && leader.inv.sentBoot != leader.bootID {
		return
	}

	c.broken(w, invLockReleasedForReason, "%s left its lock %s (now %v), but %s neither withdrew it nor rebooted with an empty /var/lib/etcd (boot %s, data %d)",
		n, lock, st.Lock, leader, leader.bootID, leader.data)
}

// adopted is a daemon run taking st as the status it acts on.
func (c *checker) adopted(d *daemonRun, st election.Status) {
	// Usually the run adopts the status it has just published: then its
	// bytes are the published ones, and comparing the decoded statuses
	// spares encoding it again (this runs every round). Anything else is
	// encoded: a status that only looks alike never passes for another.
	if r := &d.node.inv; r.published != nil && sameStatus(*r.published, st) {
		d.adopted = r.publishedData

		return
	}

	data, err := election.MarshalStatus(st)
	if err != nil {
		panic(err)
	}

	d.adopted = data
}

// sameStatus: st encodes to the status file that decoded as published.
func sameStatus(published, st election.Status) bool {
	read, ok := election.StatusAsRead(st)

	return ok && reflect.DeepEqual(published, read)
}

// diskReverted: a reset of EPHEMERAL wiped n's status (a power loss only
// undoes what was not durable; the next Load publishes the newest again).
func (c *checker) diskReverted(n *tnode) {
	if n.storage().status() == nil {
		n.inv = record{sentBoot: n.inv.sentBoot}
	}
}

// bootEnded records whether n's boot, ending now, leaves /var/lib/etcd
// empty: a Bootstrap request lives in machined's memory and dies with it.
func (c *checker) bootEnded(n *tnode) {
	if c.endedEmpty == nil {
		c.endedEmpty = map[string]bool{}
	}

	c.endedEmpty[n.bootID] = n.data == 0
}

// everyStep checks, after every event, the invariants that hold at every
// moment rather than at a publish.
func (c *checker) everyStep(w *world) {
	if c.invariant != "" {
		return
	}

	// ActsOnWhatPeersRead: a live daemon acts on the status peers read.
	for _, n := range w.nodes {
		d := n.daemon
		if d == nil || d.dead || d.finished || d.adopted == nil {
			continue
		}

		read := n.storage().status()
		if !bytes.Equal(d.adopted, read) {
			c.broken(w, invActsOnWhatPeersRead, "%s acts on a status other than the one peers read:\nacts on   %s\npeers read %s",
				n, oneLine(d.adopted), oneLine(read))

			return
		}

		// Equal: share the disk's bytes, so that the next steps compare
		// one array with itself (the disk never changes bytes in place).
		d.adopted = read
	}

	// OneFounding: at most one machine holds a founding that may still
	// create (or holds) a cluster: a Bootstrap accepted in its current
	// boot, or the data of the cluster it founded. This runs after every
	// event, so it counts first (never fewer than the founders) and names
	// the founders only when the count says there may be two.
	holders, data := 0, 0

	for _, n := range w.nodes {
		if n.up && n.pending != nil && n.pending.bootID == n.bootID && (n.data == 0 || c.foundedBy[n.data] != n) {
			holders++
		}

		if n.data != 0 && n.data != data {
			holders++
			data = n.data
		}
	}

	if holders > 1 {
		c.oneFounding(w)
	}
}

// oneFounding names the machines that hold foundings at once, and reports
// the violation when they are more than one.
func (c *checker) oneFounding(w *world) {
	founders := map[string]bool{}

	for _, n := range w.nodes {
		if n.up && n.pending != nil && n.pending.bootID == n.bootID {
			founders[nodeName(n)] = true
		}

		if n.data != 0 {
			founders[c.founder[n.data]] = true
		}
	}

	if len(founders) > 1 {
		c.broken(w, invOneFounding, "foundings held at once by %s", strings.Join(slices.Sorted(maps.Keys(founders)), ", "))
	}
}

// nodeName names a machine across reboots and address changes.
func nodeName(n *tnode) string { return fmt.Sprintf("n%d", n.idx) }

func oneLine(b []byte) string {
	return strings.Join(strings.Fields(string(b)), " ")
}
