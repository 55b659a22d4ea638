package election

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxReasons bounds how many blockers a Reason lists.
const maxReasons = 3

// Step is the protocol: given the persisted status and one round's
// observation it returns the status to persist (before acting) and what to
// do. It is pure: no I/O, no clock, no randomness. The rules are numbered as
// in doc.go.
func Step(st Status, obs Observation) (Status, Decision) {
	st = Resume(st, obs.Self)
	obs.Self.Node = st.Incarnation.Node
	obs = normalize(obs) // after naming self: dropping this node seen at another address compares node names too
	st.UpdatedAt = obs.Now
	st.Quorum = obs.Quorum
	st.LeaderOrder = obs.LeaderOrder.orDefault()
	st.TimeUnsynced = !obs.SelfTimeSynced
	st.Init = obs.SelfInit
	st.Candidates = st.Candidates[:0:0]

	for _, c := range RankBy(obs.LeaderOrder, viewOf(obs)) {
		st.Candidates = append(st.Candidates, c.Incarnation)
	}

	next, d := step(st, obs)
	next.Reason = d.Reason

	return next, d
}

func step(st Status, obs Observation) (Status, Decision) {
	self := obs.Self.Incarnation

	// DoneStaysDone, then OwnBootstrapNeverReelects (below): terminal and
	// post-bootstrap phases never elect again.
	if st.Phase == PhaseDone {
		return st, Decision{Kind: Done, Reason: "own etcd is running and healthy"}
	}

	if obs.SelfEtcdHealthy {
		withdrawOwn(&st, self)
		st.Phase = PhaseDone

		return st, Decision{Kind: Done, Reason: "own etcd is running and healthy"}
	}

	// StandDownForOtherBootstrapper: another bootstrapper founds this
	// cluster (standdown.go).
	if next, d, ok := standDown(st, obs); ok {
		return next, d
	}

	if st.Phase == PhaseBootstrapping || st.Phase == PhaseBootstrapped {
		next, d, settled := ownBootstrap(st, obs)
		if settled {
			return next, d
		}

		st = next // the bootstrap died with an earlier boot: elect again
	}

	// ReleaseLockOnlyForReason: release a lock to another leader, only for
	// the listed reasons.
	var released string

	if st.Lock != nil && !st.Lock.Leader.Is(self) {
		if why := releaseReason(*st.Lock, obs); why != "" {
			released = fmt.Sprintf("released lock %s: %s; ", st.Lock, why)
			st.Lock = nil
			st.Phase = PhaseIdle
		}
	}

	// OwnEtcdEndsElection: signs of etcd here end the election for us.
	if obs.SelfSigns.Any() {
		withdrawOwn(&st, self)

		return st, Decision{Kind: Joined, Reason: released + "this node already has etcd (" +
			obs.SelfSigns.describe() + "): waiting for it to be healthy, never bootstrapping"}
	}

	// InitNodeFoundsCluster: a Talos init node founds the cluster by
	// itself: nobody else may.
	if inits := initNodes(obs); len(inits) > 0 {
		d := initDecision(&st, obs, inits)
		d.Reason = released + d.Reason

		return st, d
	}

	// SeenClusterEndsElection: a cluster seen anywhere, now or earlier,
	// ends the election for good. The evidence is kept in the status,
	// because the node that showed it may drop out of sight (a reboot, a
	// flapping link) before this one joined, and a new election would then
	// make a second cluster.
	if seen := rememberCluster(&st, obs); seen != nil {
		withdrawOwn(&st, self)
		inc := seen.Node

		return st, Decision{Kind: Follow, Leader: &inc, Reason: released + "a cluster exists (" + seen.String() +
			"): waiting for own etcd to join"}
	}

	// LockToBootstrappingPeer: a peer bootstrapping (or having
	// bootstrapped) its intent k in this boot needs locks like any leader:
	// an unlocked node locks to it, so that its last check counts a node
	// that rebooted or arrived late.
	if p := bootstrappingPeer(obs.Peers); p != nil {
		withdrawOwn(&st, self)
		k := p.Status.Bootstrapping

		if st.Lock == nil {
			st.Lock = &IntentRef{Leader: p.Incarnation, Number: k}
			st.Phase = PhaseLocked
		}

		inc := p.Incarnation

		return st, Decision{Kind: Follow, Leader: &inc, Reason: released + fmt.Sprintf("%s is bootstrapping intent %d (phase %s): ",
			p.IP, k, p.Status.Phase) + lockReason(st) + "waiting for own etcd to join"}
	}

	// ConfigMismatchBlocks: a peer configured with another QUORUM_NODES
	// (or LEADER_ORDER): a node with a smaller value could bootstrap on its
	// own while the others reach theirs, so nobody leads or takes a lock
	// until the configuration agrees. It is remembered, on both sides,
	// because the misconfigured node may later be cut off and would then
	// find its small quorum alone.
	if why := rememberMismatch(&st, obs); why != "" {
		withdrawOwn(&st, self)

		if st.Lock != nil {
			leader := st.Lock.Leader

			return st, Decision{Kind: Follow, Leader: &leader, Reason: released + why + "; locked to " + st.Lock.String()}
		}

		return st, Decision{Kind: Wait, UntilReconfigured: true, Reason: released + why +
			": give every node the same TALOS_AUTO_BOOTSTRAP_QUORUM_NODES (unset means 1) and TALOS_AUTO_BOOTSTRAP_LEADER_ORDER (unset means address; a status without one, from an older release, boot-time)"}
	}

	// OutrankedLeaderWithdraws: an announced leader that no longer ranks first
	// withdraws at once; withdrawal is always safe before Bootstrap.
	if st.Phase == PhaseAnnounced {
		if top := RankBy(obs.LeaderOrder, viewOf(obs))[0]; !top.Incarnation.Is(self) {
			k := st.Intent
			withdrawOwn(&st, self)
			released += fmt.Sprintf("withdrew intent %d: %s ranks first; ", k, top.Incarnation)
		} else {
			return lead(st, obs)
		}
	}

	// QuorumInView: no election without a quorum in view. (Without synced time a
	// node may still lock; it only may not announce, below.)
	if n := Machines(viewOf(obs)); n < obs.Quorum {
		return st, Decision{Kind: Wait, Reason: released + fmt.Sprintf("quorum missing: %d of %d control-plane nodes in view", n, obs.Quorum)}
	}

	// LockHolds: a lock holds until ReleaseLockOnlyForReason releases it.
	if st.Lock != nil {
		st.Phase = PhaseLocked
		leader := st.Lock.Leader

		return st, Decision{Kind: Follow, Leader: &leader, Reason: released + "locked to " + st.Lock.String()}
	}

	// FirstAnnouncesOthersLock: the first-ranked candidate announces; others lock to the
	// highest-ranked live intent in view.
	ranked := RankBy(obs.LeaderOrder, viewOf(obs))
	if ranked[0].Incarnation.Is(self) {
		if !obs.SelfTimeSynced {
			// Bootstrap needs synced time, and the clock step at the first
			// sync moves this node's boot time.
			return st, Decision{Kind: Wait, Reason: released + "ranked first, waiting for time sync before announcing"}
		}

		st.Intent++
		st.Lock = &IntentRef{Leader: self, Number: st.Intent}
		st.Phase = PhaseAnnounced
		st.AnnouncedAt = obs.Now

		return st, Decision{Kind: Lead, Leader: &self, Reason: released + fmt.Sprintf("ranked first of %d: announced intent %d", len(ranked), st.Intent)}
	}

	for _, c := range ranked {
		p := peerByIncarnation(obs.Peers, c.Incarnation)
		if p == nil || !liveIntent(p) {
			continue
		}

		st.Lock = &IntentRef{Leader: p.Incarnation, Number: p.Status.Intent}
		st.Phase = PhaseLocked
		leader := p.Incarnation

		return st, Decision{Kind: Follow, Leader: &leader, Reason: released + "locked to " + st.Lock.String()}
	}

	top := ranked[0].Incarnation

	return st, Decision{Kind: Wait, Leader: &top, Reason: released + "waiting for " + top.String() + " to announce"}
}

// ownBootstrap handles phases bootstrapping and bootstrapped. settled=false
// means the bootstrap belonged to an earlier boot and provably died: the
// returned status has withdrawn it and the election continues.
func ownBootstrap(st Status, obs Observation) (Status, Decision, bool) {
	self := obs.Self.Incarnation
	k := st.Bootstrapping
	leader := self

	if obs.SelfSigns.DataDirNonEmpty == Yes || obs.SelfSigns.EtcdRunning == Yes {
		st.Phase = PhaseBootstrapped

		return st, Decision{Kind: AwaitEtcd, Leader: &leader, Reason: fmt.Sprintf("bootstrap %d: etcd data present: waiting for etcd to be healthy", k)}, true
	}

	if st.BootstrapBootID != self.BootID {
		// OwnBootstrapNeverReelects: the request lived in machined's memory of an earlier
		// boot; with /var/lib/etcd empty it can no longer take effect. Empty
		// counts only beside an etcd that has not run in this boot: Talos
		// stops extension services last in a reboot or upgrade, so this
		// daemon still runs after etcd stopped (Finished) and the ETCD
		// volume and /var were unmounted, and there its data lists absent.
		// Likewise before etcd's service exists: the daemon may start
		// before v1.14's ETCD volume is mounted.
		if obs.SelfSigns.DataDirNonEmpty != No || obs.SelfSigns.EtcdRunning != No || obs.SelfSigns.DataDirUnproven {
			return st, Decision{Kind: Wait, Reason: fmt.Sprintf("bootstrap %d was sent in an earlier boot and /var/lib/etcd is unknown: %s",
				k, joinReasons(obs.SelfSigns.Unknown))}, true
		}

		st.WithdrawnThrough = max(st.WithdrawnThrough, st.Intent)
		st.Lock = nil
		st.Phase = PhaseIdle
		st.Send = st.Send.diedWithItsBoot()

		return st, Decision{}, false
	}

	if st.Phase == PhaseBootstrapped {
		return st, Decision{Kind: AwaitEtcd, Leader: &leader, Reason: fmt.Sprintf("bootstrap %d answered: waiting for etcd to be healthy", k)}, true
	}

	if st.Withdrawable() {
		// Decided but never sent (or only refused as "not now"): still free
		// to withdraw, and it must if a cluster appeared meanwhile (an
		// operator's or another tool's bootstrap). Never once a send may
		// have reached machined in this boot: it may still take effect.
		rememberCluster(&st, obs)

		if p, why := clusterSign(obs.Peers); p != nil {
			st.WithdrawnThrough = max(st.WithdrawnThrough, st.Intent, k)
			st.Lock, st.Phase, st.Send = nil, PhaseIdle, Send{}
			inc := p.Incarnation

			return st, Decision{Kind: Follow, Leader: &inc, Reason: "a cluster exists: " + why +
				": withdrew the unsent bootstrap, waiting for own etcd to join"}, true
		}

		if inits := initNodes(obs); len(inits) > 0 {
			st.WithdrawnThrough = max(st.WithdrawnThrough, st.Intent, k)
			st.Lock, st.Phase, st.Send = nil, PhaseIdle, Send{}
			d := initDecision(&st, obs, inits)
			d.Reason = "withdrew the unsent bootstrap: " + d.Reason

			return st, d, true
		}

		return st, Decision{Kind: BeginBootstrap, Leader: &leader, Reason: fmt.Sprintf("sending Bootstrap for intent %d", k)}, true
	}

	// Sent in this boot and no etcd data yet. The request may be under way
	// (accepted just before a crash, or an unknown answer): Talos would
	// accept a repeat while the data directory is empty and restart etcd in
	// bootstrap mode, so first give it ResendAfter to show data.
	if since := obs.Now.Sub(st.BootstrapAt); since < obs.ResendAfter {
		return st, Decision{Kind: AwaitEtcd, Leader: &leader, Reason: fmt.Sprintf(
			"bootstrap %d may be under way: waiting %s for etcd data before sending it again", k, (obs.ResendAfter - since).Round(time.Second))}, true
	}

	// Nothing showed up: the request never reached machined, or died with
	// etcd's start. Resend on this node only (no other node can have
	// bootstrapped: the locks still bind them), guarded by ConfirmLocks.
	return st, Decision{Kind: BeginBootstrap, Leader: &leader, Reason: fmt.Sprintf("sending Bootstrap for intent %d again: no sign of etcd", k)}, true
}

// lead is BootstrapWhenConfirmed, for a leader that still ranks first.
func lead(st Status, obs Observation) (Status, Decision) {
	self := obs.Self.Incarnation
	k := st.Intent
	mine := IntentRef{Leader: self, Number: k}

	var blockers []string

	if !obs.SelfTimeSynced {
		blockers = append(blockers, "time not synced")
	}

	if n := Machines(viewOf(obs)); n < obs.Quorum {
		blockers = append(blockers, fmt.Sprintf("quorum missing: %d of %d control-plane nodes in view", n, obs.Quorum))
	}

	if len(obs.SelfSigns.Unknown) > 0 {
		blockers = append(blockers, "own cluster check unknown: "+joinReasons(obs.SelfSigns.Unknown))
	}

	for _, p := range obs.Peers {
		if why := peerBlocker(p, mine); why != "" {
			blockers = append(blockers, why)
		}
	}

	if stable := obs.Now.Sub(stableSince(st, obs)); stable < obs.PreBootstrapDelay {
		blockers = append(blockers, fmt.Sprintf("view stable for %s of %s", max(stable, 0), obs.PreBootstrapDelay))
	}

	if len(blockers) > 0 {
		return st, Decision{Kind: Lead, Leader: &self, Reason: fmt.Sprintf("leading intent %d, blocked: %s", k, joinReasons(blockers))}
	}

	st.Phase = PhaseBootstrapping
	st.Send = decided(k, self.BootID) // BootstrapAt is set by MarkSending, just before the RPC

	return st, Decision{Kind: BeginBootstrap, Leader: &self, Reason: fmt.Sprintf("all %d control-plane nodes locked to intent %d: bootstrapping", 1+len(obs.Peers), k)}
}

// stableSince is when the leader's wait began: the later of the view's
// last change and the announcement.
func stableSince(st Status, obs Observation) time.Time {
	if st.AnnouncedAt.After(obs.ViewStableSince) {
		return st.AnnouncedAt
	}

	return obs.ViewStableSince
}

// StableAt is when a leader's view will have been stable for
// PRE_BOOTSTRAP_DELAY if nothing changes: the earliest moment
// BootstrapWhenConfirmed can send, so that the daemon can look again then
// rather than on its next round.
func StableAt(st Status, obs Observation) time.Time {
	return stableSince(st, obs).Add(obs.PreBootstrapDelay)
}

// peerBlocker says why a peer keeps the leader of intent mine from
// bootstrapping, or "".
func peerBlocker(p PeerFacts, mine IntentRef) string {
	name := "control-plane node " + p.IP.String()

	switch p.StatusState {
	case StatusOK:
	case StatusMissing:
		return name + " has no status file: every control-plane node must run the extension"
	case StatusStale:
		return name + " status file is from an earlier boot: its daemon has not resumed yet"
	default:
		return name + " status file unreadable: " + p.StatusErr
	}

	switch {
	case p.Status == nil || !p.Status.Incarnation.Is(p.Incarnation):
		return name + " status file names another incarnation"
	case p.Status.Lock == nil:
		return name + " has not locked yet"
	case !p.Status.Lock.Is(mine):
		return name + " is locked to " + p.Status.Lock.String()
	case len(p.Signs.Unknown) > 0:
		return name + " cluster check unknown: " + joinReasons(p.Signs.Unknown)
	}

	return ""
}

// MarkSending records, just before the Bootstrap RPC, that the request is
// about to leave: persisted first, it tells a restarted daemon that the
// request may be under way (see ResendAfter), which the decision alone
// does not.
//
// A mark already in place means an earlier send of this intent left and
// its answer was never recorded (a crash, or a failed persist after the
// RPC): machined may have accepted it, so from now on the send counts as
// made, and no later "not now" answer can turn it back into an unsent,
// withdrawable bootstrap.
func MarkSending(st Status, now time.Time) Status {
	st = st.Clone()
	st.Send = st.Send.leaving(now)
	st.UpdatedAt = now

	return st
}

// ConfirmLocks is the last check before the Bootstrap RPC, run on a fresh
// read of the peers after "bootstrapping k" was persisted and published.
// nil means send. It demands a quorum locked to exactly (self, k) and no
// competing bootstrap; unlike the first check it tolerates peers that joined
// the view later without locking, so that a resend after a crash cannot be
// blocked forever by a late joiner (who follows our published bootstrapping).
func ConfirmLocks(st Status, obs Observation) error {
	obs.Self.Node = cmp.Or(obs.Self.Node, st.Incarnation.Node)
	obs = normalize(obs)
	self := obs.Self.Incarnation

	if !st.Incarnation.Is(self) {
		return fmt.Errorf("status belongs to %s, this node is %s", st.Incarnation, self)
	}

	if st.Phase != PhaseBootstrapping || st.Bootstrapping == 0 || st.BootstrapBootID != self.BootID {
		return fmt.Errorf("status is not bootstrapping in this boot (phase %s, intent %d)", st.Phase, st.Bootstrapping)
	}

	k := st.Bootstrapping
	if st.Lock == nil || !st.Lock.Is(IntentRef{Leader: self, Number: k}) || k <= st.WithdrawnThrough {
		return fmt.Errorf("own lock %v does not hold live intent %d", st.Lock, k)
	}

	if obs.BreakLock != nil && obs.BreakLock.names(*st.Lock) {
		return fmt.Errorf("operator asked to break lock %s", st.Lock)
	}

	mine := *st.Lock
	locked := []Candidate{obs.Self}

	var errs []error

	if inits := initNodes(obs); len(inits) > 0 {
		errs = append(errs, fmt.Errorf("init node %s founds etcd by itself", inits[0]))
	}

	for _, p := range obs.Peers {
		if p.StatusState != StatusOK || p.Status == nil || !p.Status.Incarnation.Is(p.Incarnation) {
			continue
		}

		if p.Status.Lock != nil && p.Status.Lock.Is(mine) {
			locked = append(locked, p.Candidate)

			continue
		}

		if p.Status.Phase == PhaseBootstrapping || p.Status.Phase == PhaseBootstrapped {
			errs = append(errs, fmt.Errorf("%s is bootstrapping intent %d itself", p.IP, p.Status.Bootstrapping))
		}
	}

	// A cluster may have appeared since the decision (an operator, another
	// tool), on a node that still holds our lock: its etcd is the answer,
	// never a second one. Unknown checks refuse too, as in Step.
	for _, p := range obs.Peers {
		if p.Signs.Any() {
			errs = append(errs, fmt.Errorf("%s already has etcd (%s)", p.IP, p.Signs.describe()))
		} else if len(p.Signs.Unknown) > 0 {
			errs = append(errs, fmt.Errorf("%s: cluster check unknown: %s", p.IP, joinReasons(p.Signs.Unknown)))
		}
	}

	if n := Machines(locked); n < obs.Quorum {
		errs = append(errs, fmt.Errorf("only %d of quorum %d nodes locked to %s", n, obs.Quorum, mine))
	}

	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("confirm locks: %w", err)
	}

	return nil
}

// releaseReason returns why a lock to another leader may end, or "".
func releaseReason(lock IntentRef, obs Observation) string {
	if obs.BreakLock != nil && obs.BreakLock.names(lock) {
		return "OPERATOR BREAK-LOCK: the operator asserted that this leader never bootstrapped and never will"
	}

	p := leaderOf(obs.Peers, lock.Leader)
	if p == nil {
		return ""
	}

	// (a) Withdrawn: intent numbers are per node and monotonic across boots,
	// so WithdrawnThrough >= k from any later status of that node covers k.
	// Intent >= k guards against a node whose file was wiped (counter reset).
	if p.StatusState == StatusOK && p.Status != nil && p.Status.Incarnation.Is(p.Incarnation) &&
		p.Status.Intent >= lock.Number && p.Status.WithdrawnThrough >= lock.Number {
		return fmt.Sprintf("leader withdrew through intent %d", p.Status.WithdrawnThrough)
	}

	// (b) Rebooted leader with an empty data directory: the Bootstrap request
	// lived in memory and died with the boot, and no etcd data was written.
	// Only a status of the new boot names the leader's machine there and
	// shows /var mounted, and normalize believes an empty listing only
	// beside etcd's service entry: before, Talos lists no data directory
	// even on a bootstrapped node. And only an etcd seen before it ever ran (No, not Finished or
	// unknown) shows that the listing was not made in a reboot or upgrade:
	// Talos stops etcd first, then unmounts the ETCD volume and /var while
	// apid still answers, so a leader holding data lists empty there.
	mounted := p.StatusState == StatusOK && p.Status != nil && p.Status.Incarnation.BootID == p.BootID
	if p.BootID != lock.Leader.BootID && p.Signs.DataDirNonEmpty == No && p.Signs.EtcdRunning == No && mounted {
		return "leader rebooted (boot ID " + shortID(p.BootID) + ") and its /var/lib/etcd is empty"
	}

	return ""
}

// rememberCluster records the first sign of etcd on a peer in the status
// and returns what the status remembers (nil: no cluster seen), so that a
// cluster that drops out of view still counts.
func rememberCluster(st *Status, obs Observation) *Evidence {
	if p, why := dataSign(obs.Peers); p != nil && st.Cluster == nil {
		st.Cluster = &Evidence{Node: p.Incarnation, What: why, At: obs.Now}
	}

	return st.Cluster
}

// dataSign returns a peer showing that an etcd cluster exists: etcd
// running, data, members, or a status saying its etcd was healthy.
func dataSign(peers []PeerFacts) (*PeerFacts, string) {
	for i := range peers {
		p := &peers[i]
		if p.Signs.Any() {
			return p, p.IP.String() + ": " + p.Signs.describe()
		}

		if p.StatusState == StatusOK && p.Status != nil && p.Status.Phase == PhaseDone {
			return p, p.IP.String() + " is in phase done"
		}
	}

	return nil, ""
}

// bootstrappingPeer returns a peer whose current status says it may have
// sent Bootstrap for a live intent of its own.
func bootstrappingPeer(peers []PeerFacts) *PeerFacts {
	for i := range peers {
		p := &peers[i]
		s := p.Status

		if p.StatusState == StatusOK && s != nil && s.Incarnation.BootID == p.BootID && s.BootstrapBootID == p.BootID &&
			(s.Phase == PhaseBootstrapping || s.Phase == PhaseBootstrapped) && s.Bootstrapping > s.WithdrawnThrough {
			return p
		}
	}

	return nil
}

// rememberMismatch records a peer whose published QUORUM_NODES or
// LEADER_ORDER differs from this node's, forgets it once that machine
// publishes the same values, and describes what is remembered ("" when
// nothing is).
func rememberMismatch(st *Status, obs Observation) string {
	mine := obs.LeaderOrder.orDefault()
	agrees := func(quorum int, order LeaderOrder) bool { return quorum == obs.Quorum && order.orDefault() == mine }

	// The remembered mismatch stays as it is while its machine is out of
	// view or shows it again unchanged: with several misconfigured peers in
	// view, a record of "the last one seen" would change every round, and
	// a node waiting on it would rewrite its status file every round.
	kept := st.QuorumMismatch
	if kept != nil && agrees(kept.Quorum, kept.LeaderOrder) {
		// This node's own values changed to the ones it saw: another peer
		// in view may still differ, and is remembered instead below.
		kept = nil
	}

	var first *Mismatch

	for _, p := range obs.Peers {
		if p.StatusState != StatusOK || p.Status == nil {
			continue
		}

		same := kept != nil && sameMachine(p.Incarnation, kept.Node)

		if agrees(p.Status.Quorum, p.Status.LeaderOrder) {
			if same {
				kept = nil // that machine publishes this node's values now
			}

			continue
		}

		seen := Mismatch{Node: p.Incarnation, Quorum: p.Status.Quorum, LeaderOrder: p.Status.LeaderOrder.orDefault(), At: obs.Now}
		if same && (kept.Node != seen.Node || kept.Quorum != seen.Quorum || kept.LeaderOrder != seen.LeaderOrder) {
			kept = &seen // a new boot of that machine, or other values
		}

		if first == nil {
			first = &seen
		}
	}

	st.QuorumMismatch = kept
	if kept == nil {
		st.QuorumMismatch = first
	}

	m := st.QuorumMismatch
	if m == nil {
		return ""
	}

	seen := m.At.UTC().Format(time.RFC3339)

	if m.Quorum != obs.Quorum {
		theirs := "none (an older extension?)"
		if m.Quorum != 0 {
			theirs = fmt.Sprint(m.Quorum)
		}

		return fmt.Sprintf("quorum mismatch: %s has %s, this node %d (seen since %s)", m.Node.IP, theirs, obs.Quorum, seen)
	}

	return fmt.Sprintf("leader order mismatch: %s has %s, this node %s (seen since %s)", m.Node.IP, m.LeaderOrder.orDefault(), mine, seen)
}

func lockReason(st Status) string {
	if st.Lock == nil {
		return ""
	}

	return "locked to " + st.Lock.String() + ": "
}

// clusterSign returns a peer showing that a cluster exists or is being
// made: a sign of etcd, or a status saying bootstrapping or bootstrapped.
func clusterSign(peers []PeerFacts) (*PeerFacts, string) {
	if p, why := dataSign(peers); p != nil {
		return p, why
	}

	// A phase kept from an earlier boot proves nothing: that boot's request
	// died with it unless its data shows (dataSign above). Counted anyway, a
	// leader withdraws a bootstrap that may already be under way.
	for i := range peers {
		p := &peers[i]
		if p.StatusState == StatusOK && p.Status != nil &&
			(p.Status.Phase == PhaseBootstrapping || p.Status.Phase == PhaseBootstrapped) &&
			p.Status.BootstrapBootID == p.BootID {
			return p, fmt.Sprintf("%s is in phase %s", p.IP, p.Status.Phase)
		}
	}

	return nil, ""
}

// liveIntent: the peer announced an intent it has not withdrawn.
func liveIntent(p *PeerFacts) bool {
	s := p.Status

	return p.StatusState == StatusOK && s != nil && s.Incarnation.Is(p.Incarnation) &&
		s.Phase == PhaseAnnounced && s.Lock != nil &&
		s.Lock.Is(IntentRef{Leader: p.Incarnation, Number: s.Intent}) &&
		s.Intent > s.WithdrawnThrough
}

// withdrawOwn withdraws an announced, not yet bootstrapping, own intent.
func withdrawOwn(st *Status, self Incarnation) {
	if st.Phase == PhaseBootstrapping || st.Phase == PhaseBootstrapped {
		return
	}

	if st.Lock != nil && st.Lock.Leader.Is(self) {
		st.WithdrawnThrough = max(st.WithdrawnThrough, st.Lock.Number)
		st.Lock = nil
		st.Phase = PhaseIdle
	}
}

func viewOf(obs Observation) []Candidate {
	view := make([]Candidate, 0, 1+len(obs.Peers))
	view = append(view, obs.Self)

	for _, p := range obs.Peers {
		view = append(view, p.Candidate)
	}

	return view
}

func peerByIncarnation(peers []PeerFacts, inc Incarnation) *PeerFacts {
	for i := range peers {
		if peers[i].Incarnation.Is(inc) {
			return &peers[i]
		}
	}

	return nil
}

// leaderOf finds a lock's leader in the view by its node name, so that a
// leader back from a reboot at another address is still recognised (its
// withdrawal releases the lock); by address for a lock without one.
func leaderOf(peers []PeerFacts, leader Incarnation) *PeerFacts {
	for i := range peers {
		p := &peers[i]

		// A peer is named only by a status of its current boot, which also
		// proves its /var is mounted: an unnamed one is never the leader.
		if !sameMachine(p.Incarnation, leader) || (p.Node == "" && leader.Node != "") {
			continue
		}

		// Another boot of that machine must say so: its status lists the
		// locked boot among its past ones. A name alone is copied with a
		// cloned /var to another machine, whose empty data directory would
		// then pass for the leader's after a reboot.
		if p.BootID == leader.BootID ||
			(p.StatusState == StatusOK && p.Status != nil && slices.Contains(p.Status.PastBoots, leader.BootID)) {
			return p
		}
	}

	return nil
}

func joinReasons(r []string) string {
	if len(r) > maxReasons {
		r = append(r[:maxReasons:maxReasons], fmt.Sprintf("and %d more", len(r)-maxReasons))
	}

	return strings.Join(r, "; ")
}
