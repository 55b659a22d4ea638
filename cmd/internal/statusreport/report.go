// Package statusreport turns what the status command read from each node
// (its status file, boot id and time, signs of etcd) into the operator's
// report: one row per node and a verdict computed by running election.Step
// from every node's point of view. It is pure: no I/O, no clock.
package statusreport

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
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
	// Split: the nodes' etcd member lists show separate etcd clusters.
	Split = "split"
	// Unknown: no node could be read.
	Unknown = "unknown"
	// StoodDown: no daemon bootstraps, because a node stood down: Omni
	// manages the cluster and bootstraps it.
	StoodDown = "stood-down"
)

// Blocker kinds.
const (
	KindNoExtension    = "no-extension"
	KindQuorumMismatch = "quorum-mismatch"
	KindOrderMismatch  = "leader-order-mismatch"
	KindVanishedLeader = "vanished-leader"
	// KindUnidentifiedLeader: a lock's leader is out of sight, and a node
	// that answers without a status of its current boot may be it.
	KindUnidentifiedLeader = "leader-unidentified"
	// KindUnconfirmed: a bootstrapping leader whose last check
	// (ConfirmLocks) fails, so it never sends Bootstrap.
	KindUnconfirmed = "unconfirmed-bootstrap"
	// KindTwoInitNodes: Talos founds a cluster on each init node.
	KindTwoInitNodes = "two-init-nodes"
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
	// EarlierStatus is the status file an earlier boot wrote (StatusStale):
	// only ever quoted to the operator, never judged by.
	EarlierStatus *election.Status
	Signs         election.Signs
	// EtcdHealthy: the node's etcd service is Running and healthy.
	EtcdHealthy bool
	// EtcdMembers is the member list of the node's running etcd; nil when
	// etcd does not run or the list was not read (EtcdMembersErr says why).
	EtcdMembers    []EtcdMember
	EtcdMembersErr string
	// MachineType is what the node's apid says it is ("" when unread).
	MachineType transport.MachineType
}

// init: Talos founds etcd on this node by itself (its apid or its status
// says machine type init).
func (f Facts) init() bool {
	return f.reachable() && (f.MachineType == transport.MachineTypeInit || (f.current() != nil && f.current().Init))
}

// EtcdMember is one member of the etcd cluster a node's etcd belongs to.
type EtcdMember struct {
	ID   uint64
	Name string
}

func (f Facts) reachable() bool { return f.Unreachable == "" && f.Foreign == "" && f.BootID != "" }

func (f Facts) current() *election.Status {
	if f.reachable() && f.StatusState == election.StatusOK && f.Status != nil {
		return f.Status
	}

	return nil
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
	// StandDown is why the node stood down (Omni manages it).
	StandDown string `json:"standDown,omitempty"`
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

// EtcdCluster is one etcd cluster as the member lists show it.
type EtcdCluster struct {
	// Nodes are the nodes asked whose etcd lists these members.
	Nodes   []string `json:"nodes"`
	Members []string `json:"members"`
}

// Verdict is the report's conclusion.
type Verdict struct {
	State       string               `json:"state"`
	Summary     string               `json:"summary"`
	LeaderOrder election.LeaderOrder `json:"leaderOrder,omitempty"`
	Leader      *Leader              `json:"leader,omitempty"`
	Blockers    []Blocker            `json:"blockers,omitempty"`
	BreakLocks  []BreakLock          `json:"breakLocks,omitempty"`
	// EtcdClusters are the separate etcd clusters of a split.
	EtcdClusters []EtcdCluster `json:"etcdClusters,omitempty"`
	// Notes are what the cluster waits for without anybody's help.
	Notes []string `json:"notes,omitempty"`
}

// Report is the table and the verdict.
type Report struct {
	Rows    []Row   `json:"nodes"`
	Verdict Verdict `json:"verdict"`
}

// stepped is one node's Step from its own point of view, with the round
// it saw.
type stepped struct {
	i    int
	obs  election.Observation
	next election.Status
	d    election.Decision
}

// Build makes the report from the facts of every node asked.
func Build(nodes []Facts, set Settings) Report {
	order := clusterOrder(nodes)
	ranks := rankOf(nodes, order, set)

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

		obs := observation(nodes, i, set)
		next, d := election.Step(st.Clone(), obs)
		runs = append(runs, stepped{i: i, obs: obs, next: next, d: d})
		rows[i].Next = d.Kind.String()
		rows[i].NextReason = d.Reason
	}

	v := judge(nodes, runs, order, ranks)
	v.LeaderOrder = order

	return Report{Rows: rows, Verdict: v}
}

// observation is the round node i's daemon would see: the other reachable
// nodes as peers, its own settings, and a view that has just changed. A
// node without a status of its current boot is named by the address it
// was asked at (it is only ranked, never stepped).
func observation(nodes []Facts, i int, set Settings) election.Observation {
	f := nodes[i]
	obs := election.Observation{
		Now:               set.Now,
		Self:              election.Candidate{Incarnation: election.Incarnation{IP: f.Addr, BootID: f.BootID}, BootTime: f.BootTime},
		SelfSigns:         f.Signs,
		SelfTimeSynced:    true,
		SelfEtcdHealthy:   f.EtcdHealthy,
		SelfInit:          f.init(),
		ViewStableSince:   set.Now,
		PreBootstrapDelay: set.PreBootstrapDelay,
		ResendAfter:       set.ResendAfter,
	}

	if st := f.current(); st != nil {
		obs.Self.IP, obs.Self.Node = st.Incarnation.IP, st.Incarnation.Node
		obs.SelfTimeSynced = !st.TimeUnsynced
		obs.Quorum, obs.LeaderOrder = st.Quorum, st.LeaderOrder
	}

	for j, p := range nodes {
		if j == i || !p.reachable() {
			continue
		}

		obs.Peers = append(obs.Peers, election.PeerFacts{
			Candidate: election.Candidate{
				Incarnation: election.Incarnation{IP: p.Addr, BootID: p.BootID},
				BootTime:    p.BootTime,
				Init:        p.MachineType == transport.MachineTypeInit,
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

// rankOf ranks the reachable nodes as Step ranks its view, in the
// cluster's order (1 = first); 0 for nodes that could not be read.
func rankOf(nodes []Facts, order election.LeaderOrder, set Settings) []int {
	ranks := make([]int, len(nodes))

	i := slices.IndexFunc(nodes, Facts.reachable)
	if i < 0 {
		return ranks
	}

	obs := observation(nodes, i, set)
	obs.LeaderOrder = order
	ranked := election.Ranked(obs)

	for j, f := range nodes {
		if f.reachable() {
			ranks[j] = 1 + slices.IndexFunc(ranked, func(c election.Candidate) bool { return c.BootID == f.BootID })
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
		r.StandDown = st.StandDown

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

// judge is the verdict: split (two etcd clusters), bootstrapped (etcd
// healthy now), progressing (a cluster is being made or the election moves
// on its own), or blocked.
func judge(nodes []Facts, runs []stepped, order election.LeaderOrder, ranks []int) Verdict {
	var v Verdict

	for _, f := range nodes {
		switch {
		case f.Foreign != "":
			v.Notes = append(v.Notes, fmt.Sprintf("%s is foreign (not counted, as the daemons do not count it): %s", f.Addr, f.Foreign))
		case f.Unreachable != "":
			v.Notes = append(v.Notes, fmt.Sprintf("%s is unreachable: %s", f.Addr, f.Unreachable))
		case f.EtcdMembersErr != "":
			v.Notes = append(v.Notes, fmt.Sprintf("%s runs etcd but its member list was not read, so it is left out of the split check: %s",
				f.Addr, f.EtcdMembersErr))
		}

		if st := f.current(); st != nil && st.Incarnation.IP != f.Addr {
			// Asked at another of its addresses, or moved within its boot:
			// its daemon exits and comes back under the new address.
			v.Notes = append(v.Notes, fmt.Sprintf("%s answers with a status naming it %s: another address of it, or its address changed "+
				"and its daemon has not restarted yet", f.Addr, st.Incarnation.IP))
		}
	}

	if !slices.ContainsFunc(nodes, Facts.reachable) {
		v.State, v.Summary = Unknown, "no node could be read"

		return v
	}

	if clusters := etcdClusters(nodes); len(clusters) > 1 {
		return splitVerdict(v, clusters)
	}

	if down := stoodDown(nodes, runs); len(down) > 0 {
		return stoodDownVerdict(v, nodes, runs, down)
	}

	if inits := initNodes(nodes); len(inits) > 0 {
		return initVerdict(v, nodes, inits)
	}

	if bl, l := unconfirmed(nodes, runs); len(bl) > 0 {
		v.Leader, v.Blockers = l, bl

		return blocked(v, "")
	}

	if clusterExists(nodes, runs) {
		return clusterVerdict(v, nodes)
	}

	if r := sending(runs); r != nil {
		f := nodes[r.i]
		v.Leader = &Leader{Node: f.Addr.String(), BootID: f.BootID, Role: "bootstrapping", Intent: r.next.Bootstrapping}
		v.State = Progressing
		v.Summary = fmt.Sprintf("%s is bootstrapping intent %d: %s", f.Addr, r.next.Bootstrapping, r.d.Reason)

		return v
	}

	v.Leader = electionLeader(nodes, runs, ranks)
	locks := lockBlockers(nodes, runs)
	v.Blockers = append(v.Blockers, missingExtension(nodes, locks.suspects)...)
	v.Blockers = append(v.Blockers, mismatches(nodes, runs)...)
	v.Blockers = append(v.Blockers, locks.blockers...)
	v.BreakLocks = locks.breakLocks
	v.Notes = slices.DeleteFunc(v.Notes, func(n string) bool {
		// An unreachable leader is already named by its blocker.
		return slices.ContainsFunc(v.BreakLocks, func(b BreakLock) bool { return strings.HasPrefix(n, b.Leader+" is ") })
	})
	v.Notes = append(v.Notes, electionNotes(nodes, runs, v.Leader)...)

	if len(v.Blockers) > 0 {
		return blocked(v, locks.seen)
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

	if i := slices.IndexFunc(nodes, func(f Facts) bool { return f.Addr.String() == v.Leader.Node }); i >= 0 &&
		order == election.OrderAddress && nodes[i].current() != nil && nodes[i].current().TimeUnsynced {
		// Under address the lowest address leads whatever its clock, as the
		// Cluster API provider would pick it; boot-time ranked it last.
		v.Summary += fmt.Sprintf("; %s ranks first by address but its time is not synced: nothing is bootstrapped until it syncs (check its NTP servers)",
			v.Leader.Node)
	}

	return v
}

// initNodes are the nodes Talos founds etcd on by itself, one entry per
// machine: a node asked at two of its addresses answers with one boot id.
func initNodes(nodes []Facts) []Facts {
	var out []Facts

	for _, f := range nodes {
		if f.init() && !slices.ContainsFunc(out, func(o Facts) bool { return o.BootID != "" && o.BootID == f.BootID }) {
			out = append(out, f)
		}
	}

	return out
}

// initVerdict: a Talos init node founds the cluster, nobody sends
// Bootstrap. Two of them are a configuration Talos splits in two.
func initVerdict(v Verdict, nodes []Facts, inits []Facts) Verdict {
	names := make([]string, len(inits))
	for i, f := range inits {
		names[i] = f.Addr.String()
	}

	if len(inits) > 1 {
		v.Blockers = append(v.Blockers, Blocker{Kind: KindTwoInitNodes, Detail: fmt.Sprintf(
			"%s are all Talos init nodes: Talos founds a separate etcd cluster on each; give one control-plane node machine type init at most; "+
				"no daemon sends Bootstrap, not even after the change (each remembers the init nodes it saw as a cluster being founded)",
			strings.Join(names, ", "))})

		return blocked(v, "")
	}

	in := inits[0]
	v.Leader = &Leader{Node: in.Addr.String(), BootID: in.BootID, Role: "init node"}

	if clusterExists(nodes, nil) {
		v = clusterVerdict(v, nodes)
		v.Notes = append(v.Notes, fmt.Sprintf("%s is the Talos init node: Talos founded etcd there by itself", in.Addr))

		return v
	}

	var waiting []string

	for _, f := range nodes {
		if f.reachable() && f.Addr != in.Addr {
			waiting = append(waiting, f.Addr.String())
		}
	}

	v.State = Progressing
	v.Summary = fmt.Sprintf("%s is the Talos init node: Talos founds etcd there by itself (its etcd image may still be pulling); nobody sends Bootstrap", in.Addr)

	if len(waiting) > 0 {
		v.Summary += "; " + strings.Join(waiting, ", ") + " wait to join"
	}

	return v
}

// blocked summarises the blockers; first, when set, is said before them.
func blocked(v Verdict, first string) Verdict {
	v.State = Blocked
	v.Summary = v.Blockers[0].Detail

	if n := len(v.Blockers) - 1; n > 0 {
		v.Summary += fmt.Sprintf(" (and %d more)", n)
	}

	if first != "" {
		v.Summary = first + ". " + v.Summary
	}

	return v
}

// etcdClusters groups the nodes whose running etcd listed its members:
// lists that share a member id are one cluster. apid exposes no cluster
// id, and a member id belongs to one cluster only.
func etcdClusters(nodes []Facts) []EtcdCluster {
	type group struct {
		nodes []int
		ids   map[uint64]string
	}

	var groups []*group

	for i, f := range nodes {
		if !f.reachable() || len(f.EtcdMembers) == 0 {
			continue
		}

		g := &group{nodes: []int{i}, ids: map[uint64]string{}}
		for _, m := range f.EtcdMembers {
			g.ids[m.ID] = cmp.Or(m.Name, fmt.Sprintf("%x", m.ID))
		}

		kept := groups[:0]

		for _, o := range groups {
			if sharesMember(o.ids, g.ids) {
				g.nodes = append(g.nodes, o.nodes...)
				maps.Copy(g.ids, o.ids)
			} else {
				kept = append(kept, o)
			}
		}

		groups = append(kept, g)
	}

	out := make([]EtcdCluster, 0, len(groups))

	for _, g := range groups {
		slices.Sort(g.nodes)

		var c EtcdCluster
		for _, i := range g.nodes {
			c.Nodes = append(c.Nodes, nodes[i].Addr.String())
		}

		c.Members = slices.Sorted(maps.Values(g.ids))
		out = append(out, c)
	}

	slices.SortFunc(out, func(a, b EtcdCluster) int { return cmp.Compare(a.Nodes[0], b.Nodes[0]) })

	return out
}

func sharesMember(a, b map[uint64]string) bool {
	for id := range a {
		if _, ok := b[id]; ok {
			return true
		}
	}

	return false
}

func splitVerdict(v Verdict, clusters []EtcdCluster) Verdict {
	parts := make([]string, 0, len(clusters))
	for _, c := range clusters {
		parts = append(parts, fmt.Sprintf("%s (members %s)", strings.Join(c.Nodes, ", "), strings.Join(c.Members, ", ")))
	}

	v.State = Split
	v.EtcdClusters = clusters
	v.Summary = fmt.Sprintf("%d separate etcd clusters, whose member lists share no member: %s", len(clusters), strings.Join(parts, "; "))

	return v
}

// stoodDown says which nodes stood down and why: by their status, or by
// Step's decision on their next round (a peer of theirs stood down).
func stoodDown(nodes []Facts, runs []stepped) []string {
	var out []string

	for _, r := range runs {
		f := nodes[r.i]

		switch {
		case f.current().StandDown != "":
			out = append(out, fmt.Sprintf("%s stood down: %s", f.Addr, f.current().StandDown))
		case r.d.Kind == election.StandDown:
			out = append(out, fmt.Sprintf("%s stands down on its next round: %s", f.Addr, r.d.Reason))
		}
	}

	return out
}

// stoodDownVerdict: once a cluster exists (Omni bootstrapped it) it is
// judged as any cluster, with the stand-downs as notes; before, no daemon
// sends Bootstrap, and the verdict says who stood down and why.
func stoodDownVerdict(v Verdict, nodes []Facts, runs []stepped, down []string) Verdict {
	if clusterExists(nodes, runs) {
		v = clusterVerdict(v, nodes)
		v.Notes = append(v.Notes, down...)

		return v
	}

	v.State = StoodDown
	v.Summary = down[0] + "; no daemon of this cluster sends Bootstrap"
	v.Notes = append(v.Notes, down[1:]...)

	return v
}

// unconfirmed: leaders that Step sends Bootstrap from but whose last check,
// ConfirmLocks on the same round, fails: the daemon retries that check for
// ever and never sends. The first such leader is returned too.
func unconfirmed(nodes []Facts, runs []stepped) ([]Blocker, *Leader) {
	var (
		out    []Blocker
		leader *Leader
	)

	for _, r := range runs {
		if r.d.Kind != election.BeginBootstrap {
			continue
		}

		err := election.ConfirmLocks(r.next, r.obs)
		if err == nil {
			continue
		}

		f := nodes[r.i]
		k := r.next.Bootstrapping
		detail := fmt.Sprintf("%s is bootstrapping intent %d but never sends Bootstrap while its last check fails: %v", f.Addr, k, err)

		if lock := r.next.Lock; lock != nil && lock.Leader.BootID == f.BootID && lock.Leader.IP != r.next.Incarnation.IP {
			detail += fmt.Sprintf("; its address changed from %s within its boot, so its own lock no longer names it: reboot it "+
				"(its next boot withdraws a request that never took effect, or finds the etcd data of one that did)", lock.Leader.IP)
		}

		out = append(out, Blocker{Kind: KindUnconfirmed, Node: f.Addr.String(), Detail: detail})

		if leader == nil {
			leader = &Leader{Node: f.Addr.String(), BootID: f.BootID, Role: "bootstrapping", Intent: k}
		}
	}

	return out, leader
}

// clusterExists: etcd exists somewhere in view, by what is read now or
// what a daemon saw and remembers (Step's decision or its evidence).
func clusterExists(nodes []Facts, runs []stepped) bool {
	for _, f := range nodes {
		if f.reachable() && (f.Signs.Any() || f.EtcdHealthy) {
			return true
		}
	}

	for _, r := range runs {
		if r.d.Kind == election.Done || r.d.Kind == election.Joined || r.next.Cluster != nil {
			return true
		}
	}

	return false
}

// sending is the run of a leader that sent Bootstrap and waits for its
// etcd, or sends it now (its last check passed), nil when none does.
func sending(runs []stepped) *stepped {
	for i := range runs {
		if k := runs[i].d.Kind; k == election.AwaitEtcd || k == election.BeginBootstrap {
			return &runs[i]
		}
	}

	return nil
}

// clusterVerdict: bootstrapped once etcd reads healthy now on every node
// that answered with a status file (a saved phase "done" is not enough:
// etcd may be down since); else progressing, naming the others.
func clusterVerdict(v Verdict, nodes []Facts) Verdict {
	by := "etcd exists"

	if b := bootstrappers(nodes); len(b) > 0 {
		v.Leader = &b[0]

		names := make([]string, 0, len(b))
		for _, l := range b {
			names = append(names, fmt.Sprintf("%s (intent %d)", l.Node, l.Intent))
		}

		by = "etcd was bootstrapped by " + strings.Join(names, " and ")
	}

	var (
		waiting           []string
		healthy, withFile int
	)

	for _, f := range nodes {
		if !f.reachable() {
			continue
		}

		if f.current() == nil {
			v.Notes = append(v.Notes, fmt.Sprintf("%s has no current status file (%s); its etcd: %s", f.Addr, rowOf(f, 0).State, etcdOf(f)))
		}

		if f.StatusState != election.StatusMissing {
			withFile++
		}

		switch {
		case f.EtcdHealthy:
			healthy++
		case f.StatusState == election.StatusMissing:
		case f.current() != nil && f.current().Phase == election.PhaseDone:
			waiting = append(waiting, fmt.Sprintf("%s (etcd %s now, although its status says done)", f.Addr, etcdOf(f)))
		default:
			waiting = append(waiting, fmt.Sprintf("%s (etcd %s)", f.Addr, etcdOf(f)))
		}
	}

	if len(waiting) == 0 && healthy > 0 {
		v.State = Bootstrapped
		v.Summary = fmt.Sprintf("%s; etcd is running and healthy on all %d nodes with a status file", by, withFile)

		if withFile == 0 {
			v.Summary = fmt.Sprintf("%s; etcd is running and healthy on %d nodes, none with a status file", by, healthy)
		}

		return v
	}

	v.State = Progressing
	v.Summary = fmt.Sprintf("%s; waiting for %s to be healthy", by, strings.Join(waiting, ", "))

	if len(waiting) == 0 {
		v.Summary = by + "; waiting for etcd to be healthy on a node"
	}

	return v
}

// bootstrappers are the nodes whose status of their current boot records
// a Bootstrap that may have been sent and was never withdrawn.
func bootstrappers(nodes []Facts) []Leader {
	var out []Leader

	for _, f := range nodes {
		st := f.current()
		if st == nil {
			continue
		}

		k := election.LiveBootstrap(*st)
		if k == 0 {
			continue
		}

		role := "bootstrapped"
		if st.Phase == election.PhaseBootstrapping {
			role = "bootstrapping"
		}

		out = append(out, Leader{Node: f.Addr.String(), BootID: f.BootID, Role: role, Intent: k})
	}

	return out
}

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

// missingExtension: nodes without a status file, except those a lock's
// blocker already names as maybe its leader.
func missingExtension(nodes []Facts, suspects map[int]bool) []Blocker {
	var out []Blocker

	for i, f := range nodes {
		if f.reachable() && f.StatusState == election.StatusMissing && !suspects[i] {
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
			": give every node the same value (unset means address; a status without one, from an older release, boot-time)"})
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

// lockFindings are the locks Step keeps to a leader out of sight.
type lockFindings struct {
	blockers   []Blocker
	breakLocks []BreakLock
	// suspects are nodes named as maybe a lock's leader.
	suspects map[int]bool
	// seen says that a lock's leader was last seen bootstrapping.
	seen string
}

// lockBlockers finds locks whose leader the election does not find in
// view (election.LockLeader: by node name and past boots). The escape hatch
// is offered only when every node that answered has a status of its
// current boot: one that answers without it (apid answers before /var is
// mounted) may be that leader after a reboot, with etcd data.
func lockBlockers(nodes []Facts, runs []stepped) lockFindings {
	out := lockFindings{suspects: map[int]bool{}}

	var silent []int

	for i, f := range nodes {
		if f.reachable() && f.current() == nil {
			silent = append(silent, i)
		}
	}

	for _, r := range runs {
		self := nodes[r.i]
		lock := r.next.Lock

		if lock == nil || lock.Leader.BootID == self.BootID || election.LockLeader(r.obs, *lock) != nil {
			continue // no lock to another leader, or Step sees its leader and decides
		}

		// Said first in the verdict and in the escape hatch's conditions.
		seen := lastSeenBootstrapping(nodes, *lock)
		if out.seen == "" {
			out.seen = seen
		}

		if seen != "" {
			seen += "; "
		}

		if len(silent) > 0 {
			names := make([]string, 0, len(silent))
			for _, i := range silent {
				names = append(names, withoutStatus(nodes[i], *lock))
				out.suspects[i] = true
			}

			out.blockers = append(out.blockers, Blocker{Kind: KindUnidentifiedLeader, Node: self.Addr.String(), Detail: fmt.Sprintf(
				"%s is locked to %s, whose leader is out of sight; %s answers without a status of its current boot and may be "+
					"that leader after a reboot (apid answers before /var is mounted): no BREAK_LOCK until every node that answers has one",
				self.Addr, lock, strings.Join(names, ", "))})

			continue
		}

		out.blockers = append(out.blockers, Blocker{Kind: KindVanishedLeader, Node: self.Addr.String(), Detail: fmt.Sprintf(
			"%s is locked to %s, whose leader %s %s", self.Addr, lock, lock.Leader.IP, whereIs(nodes, lock.Leader.IP))})
		out.breakLocks = append(out.breakLocks, BreakLock{
			Node:   self.Addr.String(),
			Leader: lock.Leader.IP.String(),
			Line:   BreakLockVariable + "=" + config.LockRef{IP: lock.Leader.IP, BootID: lock.Leader.BootID, Intent: lock.Number}.String(),
			Conditions: fmt.Sprintf("%sonly if %s never ran etcd and will not come back with its disk (it is powered off, wiped, "+
				"or out of the network for good); set it on %s only; only that exact lock is released (docs/operations.md, Breaking a lock)",
				seen, lock.Leader.IP, self.Addr),
		})
	}

	return out
}

// whereIs says what became of a leader's address among the nodes asked.
func whereIs(nodes []Facts, ip netip.Addr) string {
	for _, f := range nodes {
		if f.Addr != ip {
			continue
		}

		switch {
		case f.Foreign != "":
			return "is foreign: " + f.Foreign
		case !f.reachable():
			return "is unreachable: " + f.Unreachable
		default:
			return fmt.Sprintf("now answers as another machine (boot %s, whose status does not list the locked boot)", f.BootID)
		}
	}

	return "is not among the nodes asked"
}

// withoutStatus names a node that answered without a status of its current
// boot, and what its status file says of it.
func withoutStatus(f Facts, lock election.IntentRef) string {
	switch f.StatusState {
	case election.StatusMissing:
		return fmt.Sprintf("%s (no status file)", f.Addr)
	case election.StatusStale:
		if es := f.EarlierStatus; es != nil && es.Incarnation.BootID == lock.Leader.BootID {
			return fmt.Sprintf("%s (its status file was written by %s, the locked boot: it is that leader, rebooted, and its daemon "+
				"has not resumed yet)", f.Addr, es.Incarnation)
		}

		return fmt.Sprintf("%s (status file of an earlier boot: its daemon has not resumed yet)", f.Addr)
	}

	return fmt.Sprintf("%s (status file unreadable: %s)", f.Addr, f.StatusErr)
}

// lastSeenBootstrapping says when a status shows lock's leader in a phase
// that may have founded etcd: a follower's last published reason, or the
// leader's own status file of the locked boot. "" when none does, which
// proves nothing (a later round overwrites a reason).
func lastSeenBootstrapping(nodes []Facts, lock election.IntentRef) string {
	for _, f := range nodes {
		if st := f.current(); st != nil {
			if ip, k, phase, ok := election.SeenBootstrapping(st.Reason); ok && ip == lock.Leader.IP && k == lock.Number {
				return fmt.Sprintf("%s was last seen in phase %s of intent %d (in %s's status): it may have founded etcd", ip, phase, k, f.Addr)
			}
		}

		es := f.EarlierStatus
		if !f.reachable() || es == nil || es.Incarnation.BootID != lock.Leader.BootID {
			continue
		}

		switch es.Phase { //nolint:exhaustive
		case election.PhaseBootstrapping, election.PhaseBootstrapped, election.PhaseDone:
			return fmt.Sprintf("%s was last seen in phase %s of intent %d (its own status file of that boot, read at %s): it may have founded etcd",
				lock.Leader.IP, es.Phase, es.Bootstrapping, f.Addr)
		}
	}

	return ""
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
