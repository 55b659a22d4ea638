// Package statusreport turns what the status command read from each node
// (its status file, boot id and time, signs of etcd) into the operator's
// report: one row per node and a verdict computed by running election.Step
// from every node's point of view. It is pure: no I/O, no clock.
package statusreport

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// Row states: how reading a node went.
const (
	StateOK          = "ok"
	StateUnreachable = "unreachable"
	StateForeign     = "foreign"
	StateNoStatus    = "no-status"
	StateStale       = "stale"
	StateUnreadable  = "unreadable"
)

// Verdict states.
const (
	Bootstrapped = "bootstrapped"
	Progressing  = "progressing"
	Blocked      = "blocked"
	// Unknown: no node could be read.
	Unknown = "unknown"
)

// Blocker kinds.
const (
	KindNoExtension    = "no-extension"
	KindQuorumMismatch = "quorum-mismatch"
	KindOrderMismatch  = "leader-order-mismatch"
	KindVanishedLeader = "vanished-leader"
	KindLeaderRebooted = "leader-rebooted"
)

// BreakLockVariable is the escape hatch's variable.
const BreakLockVariable = config.Prefix + "BREAK_LOCK"

// Facts is what was read about one node through its apid.
type Facts struct {
	// Addr is the address the node was asked at.
	Addr netip.Addr
	// Unreachable is why the node could not be read ("" when it could).
	Unreachable string
	// Foreign: its certificate does not chain to this cluster's CA, or the
	// TLS handshake failed: another cluster, or maintenance mode.
	Foreign     string
	BootID      string
	BootTime    time.Time
	Status      *election.Status
	StatusState election.StatusState
	StatusErr   string
	Signs       election.Signs
	// EtcdHealthy: the node's etcd service is Running and healthy.
	EtcdHealthy bool
}

func (f Facts) reachable() bool { return f.Unreachable == "" && f.Foreign == "" && f.BootID != "" }

func (f Facts) current() *election.Status {
	if f.reachable() && f.StatusState == election.StatusOK && f.Status != nil {
		return f.Status
	}

	return nil
}

// ip is the address the node identifies itself by (its status's), else the
// one it was asked at.
func (f Facts) ip() netip.Addr {
	if st := f.current(); st != nil {
		return st.Incarnation.IP
	}

	return f.Addr
}

// Settings are the daemons' timings the verdict assumes (they are not
// published in the status file) and the time of the report.
type Settings struct {
	Now               time.Time
	PreBootstrapDelay time.Duration
	ResendAfter       time.Duration
}

// Row is one node in the table.
type Row struct {
	Node        string    `json:"node"`
	State       string    `json:"state"`
	Error       string    `json:"error,omitempty"`
	BootTime    time.Time `json:"bootTime,omitzero"`
	BootID      string    `json:"bootID,omitempty"`
	Rank        int       `json:"rank,omitempty"`
	Phase       string    `json:"phase,omitempty"`
	Lock        string    `json:"lock,omitempty"`
	Intent      uint64    `json:"intent,omitempty"`
	Quorum      int       `json:"quorum,omitempty"`
	LeaderOrder string    `json:"leaderOrder,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Etcd        string    `json:"etcd,omitempty"`
	// Next is what election.Step decides from this node's point of view.
	Next       string `json:"next,omitempty"`
	NextReason string `json:"nextReason,omitempty"`
}

// Leader is who leads, led, or would lead.
type Leader struct {
	Node   string `json:"node"`
	BootID string `json:"bootID,omitempty"`
	// Role: "bootstrapped", "bootstrapping", "leads" or "would lead".
	Role   string `json:"role"`
	Intent uint64 `json:"intent,omitempty"`
}

// Blocker is something that keeps the cluster from being bootstrapped
// until somebody acts.
type Blocker struct {
	Kind   string `json:"kind"`
	Node   string `json:"node,omitempty"`
	Detail string `json:"detail"`
}

// BreakLock is the escape hatch for one blocked node.
type BreakLock struct {
	Node       string `json:"node"`
	Leader     string `json:"leader"`
	Line       string `json:"line"`
	Conditions string `json:"conditions"`
}

// Verdict is the report's conclusion.
type Verdict struct {
	State       string               `json:"state"`
	Summary     string               `json:"summary"`
	LeaderOrder election.LeaderOrder `json:"leaderOrder,omitempty"`
	Leader      *Leader              `json:"leader,omitempty"`
	Blockers    []Blocker            `json:"blockers,omitempty"`
	BreakLocks  []BreakLock          `json:"breakLocks,omitempty"`
	// Notes are what the cluster waits for without anybody's help.
	Notes []string `json:"notes,omitempty"`
}

// Report is the table and the verdict.
type Report struct {
	Rows    []Row   `json:"nodes"`
	Verdict Verdict `json:"verdict"`
}

// stepped is one node's Step from its own point of view.
type stepped struct {
	i    int
	next election.Status
	d    election.Decision
}

// Build makes the report from the facts of every node asked.
func Build(nodes []Facts, set Settings) Report {
	order := clusterOrder(nodes)
	ranks := rankOf(nodes, order)

	rows := make([]Row, len(nodes))
	for i, f := range nodes {
		rows[i] = rowOf(f, ranks[i])
	}

	var runs []stepped

	for i, f := range nodes {
		st := f.current()
		if st == nil {
			continue
		}

		next, d := election.Step(st.Clone(), observation(nodes, i, set))
		runs = append(runs, stepped{i: i, next: next, d: d})
		rows[i].Next = d.Kind.String()
		rows[i].NextReason = d.Reason
	}

	v := judge(nodes, runs, order, ranks)
	v.LeaderOrder = order

	return Report{Rows: rows, Verdict: v}
}

// observation is the round node i's daemon would see: the other reachable
// nodes as peers, its own settings, and a view that has just changed.
func observation(nodes []Facts, i int, set Settings) election.Observation {
	f := nodes[i]
	st := f.current()
	obs := election.Observation{
		Now: set.Now,
		Self: election.Candidate{
			Incarnation: election.Incarnation{IP: st.Incarnation.IP, BootID: f.BootID, Node: st.Incarnation.Node},
			BootTime:    f.BootTime,
		},
		SelfSigns:         f.Signs,
		SelfTimeSynced:    !st.TimeUnsynced,
		SelfEtcdHealthy:   f.EtcdHealthy,
		Quorum:            st.Quorum,
		LeaderOrder:       st.LeaderOrder,
		ViewStableSince:   set.Now,
		PreBootstrapDelay: set.PreBootstrapDelay,
		ResendAfter:       set.ResendAfter,
	}

	for j, p := range nodes {
		if j == i || !p.reachable() {
			continue
		}

		obs.Peers = append(obs.Peers, election.PeerFacts{
			Candidate: election.Candidate{
				Incarnation: election.Incarnation{IP: p.Addr, BootID: p.BootID},
				BootTime:    p.BootTime,
			},
			Status:      p.Status,
			StatusState: p.StatusState,
			StatusErr:   p.StatusErr,
			Signs:       p.Signs,
		})
	}

	return obs
}

// clusterOrder is the leader order most statuses publish (boot-time when
// none does); a disagreement is reported as a blocker.
func clusterOrder(nodes []Facts) election.LeaderOrder {
	count := map[election.LeaderOrder]int{}
	best := election.OrderBootTime

	for _, f := range nodes {
		if st := f.current(); st != nil {
			o := orderOf(st)
			count[o]++

			if count[o] > count[best] {
				best = o
			}
		}
	}

	return best
}

func orderOf(st *election.Status) election.LeaderOrder {
	return cmp.Or(st.LeaderOrder, election.OrderBootTime)
}

// rankOf ranks the reachable nodes with the cluster's order (1 = first);
// 0 for nodes that could not be read.
func rankOf(nodes []Facts, order election.LeaderOrder) []int {
	var cands []election.Candidate

	for _, f := range nodes {
		if !f.reachable() {
			continue
		}

		c := election.Candidate{Incarnation: election.Incarnation{IP: f.ip(), BootID: f.BootID}, BootTime: f.BootTime}
		if st := f.current(); st != nil {
			c.Unsynced = st.TimeUnsynced
		}

		cands = append(cands, c)
	}

	ranked := election.RankBy(order, cands)
	ranks := make([]int, len(nodes))

	for i, f := range nodes {
		if f.reachable() {
			ranks[i] = 1 + slices.IndexFunc(ranked, func(c election.Candidate) bool { return c.BootID == f.BootID })
		}
	}

	return ranks
}

func rowOf(f Facts, rank int) Row {
	r := Row{Node: f.Addr.String(), BootTime: f.BootTime.UTC(), BootID: f.BootID, Rank: rank}

	switch {
	case f.Foreign != "":
		r.State, r.Error = StateForeign, f.Foreign
	case !f.reachable():
		r.State, r.Error = StateUnreachable, f.Unreachable
	default:
		r.Etcd = etcdOf(f)

		switch f.StatusState {
		case election.StatusOK:
			r.State = StateOK
		case election.StatusMissing:
			r.State = StateNoStatus
		case election.StatusStale:
			r.State = StateStale
		default:
			r.State, r.Error = StateUnreadable, f.StatusErr
		}
	}

	if st := f.current(); st != nil {
		r.Phase = string(st.Phase)
		r.Intent = st.Intent
		r.Quorum = st.Quorum
		r.LeaderOrder = string(orderOf(st))
		r.Reason = st.Reason

		if st.Lock != nil {
			r.Lock = st.Lock.String()
		}
	}

	return r
}

func etcdOf(f Facts) string {
	switch {
	case f.EtcdHealthy:
		return "healthy"
	case f.Signs.Any():
		return "present"
	case len(f.Signs.Unknown) > 0:
		return "unknown"
	}

	return "none"
}

// judge is the verdict: bootstrapped, progressing (a cluster is being made
// or the election moves on its own), or blocked.
func judge(nodes []Facts, runs []stepped, order election.LeaderOrder, ranks []int) Verdict {
	var v Verdict

	for _, f := range nodes {
		switch {
		case f.Foreign != "":
			v.Notes = append(v.Notes, fmt.Sprintf("%s is foreign (not counted, as the daemons do not count it): %s", f.Addr, f.Foreign))
		case f.Unreachable != "":
			v.Notes = append(v.Notes, fmt.Sprintf("%s is unreachable: %s", f.Addr, f.Unreachable))
		}
	}

	if !slices.ContainsFunc(nodes, Facts.reachable) {
		v.State, v.Summary = Unknown, "no node could be read"

		return v
	}

	if cluster(nodes, runs) {
		return clusterVerdict(v, nodes, runs)
	}

	v.Leader = electionLeader(nodes, runs, ranks)
	v.Blockers = append(v.Blockers, missingExtension(nodes)...)
	v.Blockers = append(v.Blockers, mismatches(nodes, runs)...)
	v = lockBlockers(v, nodes, runs)
	v.Notes = slices.DeleteFunc(v.Notes, func(n string) bool {
		// An unreachable leader is already named by its blocker.
		return slices.ContainsFunc(v.BreakLocks, func(b BreakLock) bool { return strings.HasPrefix(n, b.Leader+" is ") })
	})
	v.Notes = append(v.Notes, electionNotes(nodes, runs, v.Leader)...)

	if len(v.Blockers) > 0 {
		v.State = Blocked
		v.Summary = v.Blockers[0].Detail

		if n := len(v.Blockers) - 1; n > 0 {
			v.Summary += fmt.Sprintf(" (and %d more)", n)
		}

		return v
	}

	v.State = Progressing
	v.Summary = fmt.Sprintf("%s %s", v.Leader.Node, v.Leader.Role)

	if v.Leader.Intent != 0 {
		v.Summary += fmt.Sprintf(" intent %d", v.Leader.Intent)
	}

	if v.Leader.Role == "would lead" {
		v.Summary += fmt.Sprintf(" (ranked first by %s)", order)
	}

	if r := leaderRun(nodes, runs, v.Leader); r != nil {
		v.Summary += ": " + r.d.Reason
	}

	return v
}

// cluster: etcd exists or is being made somewhere in view, by the rules
// every node follows (Step's decision or its remembered evidence).
func cluster(nodes []Facts, runs []stepped) bool {
	for _, f := range nodes {
		if f.reachable() && (f.Signs.Any() || f.EtcdHealthy) {
			return true
		}
	}

	for _, r := range runs {
		switch r.d.Kind { //nolint:exhaustive
		case election.Done, election.Joined, election.AwaitEtcd, election.BeginBootstrap:
			return true
		}

		if r.next.Cluster != nil {
			return true
		}
	}

	return false
}

func clusterVerdict(v Verdict, nodes []Facts, runs []stepped) Verdict {
	v.Leader = bootstrapLeader(nodes)

	var waiting []string

	for _, r := range runs {
		if r.d.Kind != election.Done {
			waiting = append(waiting, nodes[r.i].Addr.String())
		}
	}

	for _, f := range nodes {
		if f.reachable() && f.current() == nil {
			v.Notes = append(v.Notes, fmt.Sprintf("%s has no current status file (%s); its etcd: %s", f.Addr, rowOf(f, 0).State, etcdOf(f)))
		}
	}

	by := "etcd exists"
	if v.Leader != nil {
		by = fmt.Sprintf("etcd was bootstrapped by %s (intent %d)", v.Leader.Node, v.Leader.Intent)
	}

	if len(waiting) == 0 && len(runs) > 0 {
		v.State = Bootstrapped
		v.Summary = fmt.Sprintf("%s; etcd is running and healthy on all %d nodes with a status", by, len(runs))

		return v
	}

	v.State = Progressing
	v.Summary = fmt.Sprintf("%s; waiting for %s to be healthy", by, strings.Join(waiting, ", "))

	return v
}

// bootstrapLeader is the node whose status says it sent (or is sending)
// Bootstrap in its current boot, nil when etcd was made by somebody else.
func bootstrapLeader(nodes []Facts) *Leader {
	for _, f := range nodes {
		st := f.current()
		if st == nil || st.Bootstrapping == 0 {
			continue
		}

		role := "bootstrapped"
		if st.Phase == election.PhaseBootstrapping {
			role = "bootstrapping"
		}

		return &Leader{Node: f.Addr.String(), BootID: f.BootID, Role: role, Intent: st.Bootstrapping}
	}

	return nil
}

// electionLeader: the node Step lets lead, else the first-ranked one.
func electionLeader(nodes []Facts, runs []stepped, ranks []int) *Leader {
	for _, r := range runs {
		if r.d.Kind == election.Lead {
			return &Leader{Node: nodes[r.i].Addr.String(), BootID: nodes[r.i].BootID, Role: "leads", Intent: r.next.Intent}
		}
	}

	i := slices.Index(ranks, 1)

	return &Leader{Node: nodes[i].Addr.String(), BootID: nodes[i].BootID, Role: "would lead"}
}

func leaderRun(nodes []Facts, runs []stepped, l *Leader) *stepped {
	for i := range runs {
		if nodes[runs[i].i].BootID == l.BootID {
			return &runs[i]
		}
	}

	return nil
}

func missingExtension(nodes []Facts) []Blocker {
	var out []Blocker

	for _, f := range nodes {
		if f.reachable() && f.StatusState == election.StatusMissing {
			out = append(out, Blocker{Kind: KindNoExtension, Node: f.Addr.String(), Detail: fmt.Sprintf(
				"%s has no status file: every control-plane node must run the extension (installed there? its service started?)", f.Addr)})
		}
	}

	return out
}

// mismatches compares the published QUORUM_NODES and LEADER_ORDER, and
// reports mismatches a node still remembers from a peer out of sight.
func mismatches(nodes []Facts, runs []stepped) []Blocker {
	quorum := map[string][]string{}
	order := map[string][]string{}

	for _, f := range nodes {
		if st := f.current(); st != nil {
			q := "none (unset: 1, or an older extension)"
			if st.Quorum != 0 {
				q = fmt.Sprint(st.Quorum)
			}

			quorum[q] = append(quorum[q], f.Addr.String())
			order[string(orderOf(st))] = append(order[string(orderOf(st))], f.Addr.String())
		}
	}

	var out []Blocker

	if len(quorum) > 1 {
		out = append(out, Blocker{Kind: KindQuorumMismatch, Detail: "TALOS_AUTO_BOOTSTRAP_QUORUM_NODES differs: " + groups(quorum) +
			": give every node the same value (unset means 1)"})
	}

	if len(order) > 1 {
		out = append(out, Blocker{Kind: KindOrderMismatch, Detail: "TALOS_AUTO_BOOTSTRAP_LEADER_ORDER differs: " + groups(order) +
			": give every node the same value (unset means boot-time)"})
	}

	if len(out) > 0 {
		return out
	}

	for _, r := range runs {
		if m := r.next.QuorumMismatch; m != nil {
			out = append(out, Blocker{Kind: KindQuorumMismatch, Node: nodes[r.i].Addr.String(), Detail: fmt.Sprintf(
				"%s remembers %s with QUORUM_NODES %d and LEADER_ORDER %s (seen %s) and neither leads nor locks until that node is seen with its values (%s)",
				nodes[r.i].Addr, m.Node.IP, m.Quorum, cmp.Or(m.LeaderOrder, election.OrderBootTime), m.At.UTC().Format(time.RFC3339), r.d.Reason)})
		}
	}

	return out
}

func groups(m map[string][]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}

	slices.Sort(keys)

	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		verb := "has"
		if len(m[k]) > 1 {
			verb = "have"
		}

		parts = append(parts, fmt.Sprintf("%s %s %s", strings.Join(m[k], ", "), verb, k))
	}

	return strings.Join(parts, "; ")
}

// lockBlockers finds locks that Step keeps to a leader that is gone: out of
// sight (the escape hatch applies) or rebooted without releasing them.
func lockBlockers(v Verdict, nodes []Facts, runs []stepped) Verdict {
	for _, r := range runs {
		self := nodes[r.i]
		lock := r.next.Lock

		if lock == nil || lock.Leader.BootID == self.BootID {
			continue
		}

		leader := findLeader(nodes, lock.Leader)

		switch {
		case leader == nil || !leader.reachable():
			where := "is not among the nodes asked"
			if leader != nil {
				where = "is " + rowOf(*leader, 0).State + ": " + cmp.Or(leader.Foreign, leader.Unreachable)
			}

			v.Blockers = append(v.Blockers, Blocker{Kind: KindVanishedLeader, Node: self.Addr.String(), Detail: fmt.Sprintf(
				"%s is locked to %s, whose leader %s %s", self.Addr, lock, lock.Leader.IP, where)})
			v.BreakLocks = append(v.BreakLocks, BreakLock{
				Node:   self.Addr.String(),
				Leader: lock.Leader.IP.String(),
				Line:   BreakLockVariable + "=" + config.LockRef{IP: lock.Leader.IP, BootID: lock.Leader.BootID, Intent: lock.Number}.String(),
				Conditions: fmt.Sprintf("only if %s never ran etcd and will not come back with its disk (it is powered off, wiped, "+
					"or out of the network for good); set it on %s only; only that exact lock is released (README, Safety, escape hatch)",
					lock.Leader.IP, self.Addr),
			})
		case leader.BootID != lock.Leader.BootID && leader.StatusState == election.StatusStale:
			v.Notes = append(v.Notes, fmt.Sprintf("%s is locked to %s, whose leader rebooted: the lock is released once its daemon "+
				"publishes a status of the new boot and its /var/lib/etcd is empty", self.Addr, lock))
		case leader.BootID != lock.Leader.BootID:
			v.Blockers = append(v.Blockers, Blocker{Kind: KindLeaderRebooted, Node: self.Addr.String(), Detail: fmt.Sprintf(
				"%s is locked to %s, whose leader rebooted (boot id now %s) without a status of its new boot (%s) that would release it",
				self.Addr, lock, leader.BootID, rowOf(*leader, 0).State)})
		}
	}

	return v
}

// findLeader finds a lock's leader among the nodes asked: by node name when
// both have one (as Step does), else by address.
func findLeader(nodes []Facts, leader election.Incarnation) *Facts {
	for i := range nodes {
		if st := nodes[i].current(); st != nil && st.Incarnation.Node != "" && leader.Node != "" {
			if st.Incarnation.Node == leader.Node {
				return &nodes[i]
			}

			continue
		}

		if nodes[i].ip() == leader.IP {
			return &nodes[i]
		}
	}

	return nil
}

// electionNotes: what the election waits for on its own.
func electionNotes(nodes []Facts, runs []stepped, l *Leader) []string {
	var notes []string

	for _, f := range nodes {
		if !f.reachable() {
			continue
		}

		switch f.StatusState { //nolint:exhaustive
		case election.StatusStale:
			notes = append(notes, fmt.Sprintf("%s has a status file of an earlier boot: its daemon has not resumed yet", f.Addr))
		case election.StatusUnreadable:
			notes = append(notes, fmt.Sprintf("%s status file unreadable: %s", f.Addr, f.StatusErr))
		}
	}

	lr := leaderRun(nodes, runs, l)
	if l.Role != "leads" || lr == nil {
		return notes
	}

	mine := election.IntentRef{Leader: lr.next.Incarnation, Number: lr.next.Intent}

	for _, r := range runs {
		if r.i == lr.i {
			continue
		}

		st := nodes[r.i].current()
		if st.Lock != nil && st.Lock.Is(mine) {
			continue
		}

		note := fmt.Sprintf("%s has not locked to %s yet", nodes[r.i].Addr, mine)
		if r.next.Lock != nil && r.next.Lock.Is(mine) {
			note += ": it locks on its next round"
		} else {
			note += ": " + r.d.Reason
		}

		notes = append(notes, note)
	}

	return notes
}
