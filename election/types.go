package election

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// StatusVersion is the version of the status file format written by this code.
const StatusVersion = 1

// Incarnation identifies one boot of one node: a reboot makes a new
// incarnation even when the IP stays, because Bootstrap requests live in
// machined's memory and die with the boot.
type Incarnation struct {
	IP     netip.Addr `json:"ip"`
	BootID string     `json:"bootID"`
	// Node names the machine across reboots and address changes (DHCP): the
	// boot ID of the boot that first wrote its status file. Peers learn it
	// from that file; a lock finds its leader by it, not by address.
	Node string `json:"node,omitempty"`
}

// String is IP/boot id, the boot id shortened.
func (i Incarnation) String() string { return i.IP.String() + "/" + shortID(i.BootID) }

// Is: the same boot of the same node. The node name is left out: it only
// helps find a machine again after a reboot, and a boot ID is unique.
func (i Incarnation) Is(o Incarnation) bool { return i.BootID == o.BootID && i.IP == o.IP }

// sameMachine: a and b are boots of one machine, as far as their names tell.
func sameMachine(a, b Incarnation) bool {
	if a.Node != "" && b.Node != "" {
		return a.Node == b.Node
	}

	return a.IP == b.IP
}

// IntentRef names one numbered intent of one leader incarnation: what a lock
// points at.
type IntentRef struct {
	Leader Incarnation `json:"leader"`
	Number uint64      `json:"intent"`
}

// String is leader#intent, as reasons and the status command name a lock.
func (r IntentRef) String() string { return fmt.Sprintf("%s#%d", r.Leader, r.Number) }

// Is: the same intent of the same leader boot.
func (r IntentRef) Is(o IntentRef) bool { return r.Number == o.Number && r.Leader.Is(o.Leader) }

// names: the operator's BREAK_LOCK value (IP/boot id/intent, no node name)
// designates this lock.
func (r IntentRef) names(lock IntentRef) bool {
	return r.Leader.IP == lock.Leader.IP && r.Leader.BootID == lock.Leader.BootID && r.Number == lock.Number
}

// Candidate is a control-plane node in a view: its incarnation and its boot
// time (kernel btime from SystemStat, which moves when the clock is stepped).
type Candidate struct {
	Incarnation
	BootTime time.Time
	// Unsynced: the node's time is not synced yet (its own reading, or its
	// published status). It cannot bootstrap and its boot time will move,
	// so it ranks after every synced node: a node that never syncs must not
	// hold the lead.
	Unsynced bool
	// Init: Talos says the node's machine type is init (its apid, or its
	// published status): Talos founds etcd there by itself.
	Init bool
}

// LeaderOrder is TALOS_AUTO_BOOTSTRAP_LEADER_ORDER: how candidates rank.
type LeaderOrder string

// Leader orders.
const (
	// OrderBootTime: oldest boot first, then numeric IP (the default).
	OrderBootTime LeaderOrder = "boot-time"
	// OrderAddress: the lowest address in plain string order, as the Talos
	// Cluster API control-plane provider picks the node it bootstraps
	// (sort.Strings: "10.0.0.10" before "10.0.0.9"), so that both pick the
	// same node.
	OrderAddress LeaderOrder = "address"
)

// ParseLeaderOrder checks a LEADER_ORDER value.
func ParseLeaderOrder(s string) (LeaderOrder, error) {
	switch o := LeaderOrder(s); o {
	case OrderBootTime, OrderAddress:
		return o, nil
	}

	return "", fmt.Errorf("must be %s or %s", OrderBootTime, OrderAddress)
}

// orDefault: an empty order (a status of an older version) is boot-time.
func (o LeaderOrder) orDefault() LeaderOrder { return cmp.Or(o, OrderBootTime) }

// Rank orders candidates: oldest boot time first, ties broken by numeric IP
// order (netip.Addr.Compare, so 10.0.0.9 ranks before 10.0.0.10). It returns
// a sorted copy and leaves its argument alone.
func Rank(c []Candidate) []Candidate { return RankBy(OrderBootTime, c) }

// RankBy orders candidates by order.
func RankBy(order LeaderOrder, c []Candidate) []Candidate {
	out := slices.Clone(c)

	if order.orDefault() == OrderAddress {
		slices.SortStableFunc(out, compareByAddress)
	} else {
		slices.SortStableFunc(out, compareCandidates)
	}

	return out
}

// compareByAddress ignores time sync: the provider bootstraps the lowest
// address whatever its clock, so the daemon waits for that node too rather
// than pick another one.
func compareByAddress(a, b Candidate) int {
	if c := strings.Compare(a.IP.String(), b.IP.String()); c != 0 {
		return c
	}

	return cmp.Compare(a.BootID, b.BootID)
}

func compareCandidates(a, b Candidate) int {
	if a.Unsynced != b.Unsynced {
		if a.Unsynced {
			return 1
		}

		return -1
	}

	if c := a.BootTime.Compare(b.BootTime); c != 0 {
		return c
	}

	if c := a.IP.Compare(b.IP); c != 0 {
		return c
	}

	return cmp.Compare(a.BootID, b.BootID)
}

// Phase is where a node stands in the protocol; it is published in the
// status file so that peers can act on it.
type Phase string

// Phases.
const (
	PhaseIdle          Phase = "idle"          // no lock
	PhaseLocked        Phase = "locked"        // locked to another leader's intent
	PhaseAnnounced     Phase = "announced"     // locked to its own intent: a would-be leader
	PhaseBootstrapping Phase = "bootstrapping" // Bootstrap may be sent or in flight: never withdrawn in this boot
	PhaseBootstrapped  Phase = "bootstrapped"  // Talos answered the Bootstrap (accepted or already exists)
	PhaseDone          Phase = "done"          // own etcd Running and healthy
)

func (p Phase) known() bool {
	switch p {
	case PhaseIdle, PhaseLocked, PhaseAnnounced, PhaseBootstrapping, PhaseBootstrapped, PhaseDone:
		return true
	}

	return false
}

// Status is the state a daemon persists under /var/lib/kommodity-autobootstrap
// and that peers read through apid's Read. It is both the protocol's durable
// memory and the operator's view of the node.
type Status struct {
	Version     int         `json:"version"`
	Incarnation Incarnation `json:"incarnation"`
	BootTime    time.Time   `json:"bootTime"`
	Phase       Phase       `json:"phase"`
	// FSMState is informative, set by the daemon.
	FSMState string `json:"fsmState,omitempty"`
	// Lock is the one intent this node is bound to (its own when announced).
	Lock *IntentRef `json:"lock,omitempty"`
	// Intent is the node's latest intent number, monotonic across restarts
	// and reboots so that an intent number is never reused.
	Intent uint64 `json:"intent"`
	// WithdrawnThrough: own intents <= this are withdrawn and can never lead
	// to a Bootstrap. Monotonic, so a slow reader cannot miss a withdrawal.
	WithdrawnThrough uint64 `json:"withdrawnThrough"`
	// Send is the own bootstrap and what is known of its request.
	Send
	AnnouncedAt time.Time `json:"announcedAt,omitzero"`
	// Quorum is this node's QUORUM_NODES: a peer with another value is a
	// misconfiguration that neither leads nor locks (see Step).
	Quorum int `json:"quorum,omitempty"`
	// LeaderOrder is this node's LEADER_ORDER (empty: boot-time), checked
	// like Quorum.
	LeaderOrder LeaderOrder `json:"leaderOrder,omitempty"`
	// TimeUnsynced: this node's time is not synced (it ranks last).
	TimeUnsynced bool `json:"timeUnsynced,omitempty"`
	// Init: this node's machine type is init: Talos founds etcd here by
	// itself, and no daemon of the cluster sends Bootstrap.
	Init bool `json:"init,omitempty"`
	// Cluster is durable evidence that an etcd cluster exists: once a node
	// has seen one, it never takes part in an election again, even when the
	// node that showed it is out of sight.
	Cluster *Evidence `json:"cluster,omitempty"`
	// PastBoots are the boot ids of this machine's earlier boots that wrote
	// this file, oldest first, at most MaxPastBoots: a status of a later
	// boot proves it is the same machine only by listing the earlier one
	// (a cloned /var carries the same node name to another machine).
	PastBoots []string `json:"pastBoots,omitempty"`
	// StandDown says why this node stood down: another bootstrapper founds
	// this cluster (Omni, seen on this machine or on a peer that stood
	// down). Once set, this node never announces, takes a new lock or
	// sends Bootstrap, and peers that read it stand down too. It is kept
	// across boots: Omni manages the machine until it is wiped, and a wipe
	// removes this file. An older release ignores the field, so it still
	// loads the file, and reads the node as idle and unlocked: a leader of
	// that release that sees it stays blocked.
	StandDown string `json:"standDown,omitempty"`
	// QuorumMismatch is the last peer seen publishing another QUORUM_NODES
	// (or LEADER_ORDER), since when it has been seen with those values;
	// while it is set this node neither leads nor locks.
	QuorumMismatch *Mismatch     `json:"quorumMismatch,omitempty"`
	Candidates     []Incarnation `json:"candidates,omitempty"`
	Reason         string        `json:"reason,omitempty"`
	UpdatedAt      time.Time     `json:"updatedAt,omitzero"`
}

// Mismatch records a peer seen with another QUORUM_NODES.
type Mismatch struct {
	Node        Incarnation `json:"node"`
	Quorum      int         `json:"quorum"`
	LeaderOrder LeaderOrder `json:"leaderOrder,omitempty"`
	At          time.Time   `json:"at"`
}

// Evidence records where and when a cluster was seen.
type Evidence struct {
	Node Incarnation `json:"node"`
	What string      `json:"what"`
	At   time.Time   `json:"at"`
}

// String says where and when the cluster was seen, and what showed it.
func (e Evidence) String() string {
	return fmt.Sprintf("%s at %s: %s", e.Node.IP, e.At.UTC().Format(time.RFC3339), e.What)
}

// Clone returns a deep copy.
func (s Status) Clone() Status {
	s.copyShared()

	return s
}

// copyShared replaces what s shares with another status (pointers, slices)
// by copies of its own.
func (s *Status) copyShared() {
	if s.Lock != nil {
		l := *s.Lock
		s.Lock = &l
	}

	if s.Cluster != nil {
		c := *s.Cluster
		s.Cluster = &c
	}

	if s.QuorumMismatch != nil {
		m := *s.QuorumMismatch
		s.QuorumMismatch = &m
	}

	s.Candidates = slices.Clone(s.Candidates)
	s.PastBoots = slices.Clone(s.PastBoots)
}

// Validate checks the invariants every status this code writes holds, so
// that a peer answering garbage is rejected rather than acted upon.
func (s *Status) Validate() error {
	var errs []error

	if s.Version != StatusVersion {
		errs = append(errs, fmt.Errorf("version %d, want %d", s.Version, StatusVersion))
	}

	if !s.Incarnation.IP.IsValid() {
		errs = append(errs, errors.New("incarnation has no IP"))
	}

	if s.Incarnation.BootID == "" {
		errs = append(errs, errors.New("incarnation has no boot ID"))
	}

	if !s.Phase.known() {
		errs = append(errs, fmt.Errorf("unknown phase %q", s.Phase))
	}

	if s.WithdrawnThrough > s.Intent {
		errs = append(errs, fmt.Errorf("withdrawnThrough %d beyond intent %d", s.WithdrawnThrough, s.Intent))
	}

	if s.Bootstrapping > s.Intent {
		errs = append(errs, fmt.Errorf("bootstrapping %d beyond intent %d", s.Bootstrapping, s.Intent))
	}

	if err := s.Send.validate(); err != nil {
		errs = append(errs, err)
	}

	if s.Lock != nil && (!s.Lock.Leader.IP.IsValid() || s.Lock.Leader.BootID == "" || s.Lock.Number == 0) {
		errs = append(errs, fmt.Errorf("malformed lock %+v", *s.Lock))
	}

	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid status: %w", err)
	}

	return nil
}

// MarshalStatus encodes a status as written to status.json.
func MarshalStatus(s Status) ([]byte, error) {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}

	data = append(data, '\n')

	if read, ok := StatusAsRead(s); ok && read.Validate() == nil {
		rememberStatus(data, read)
	}

	return data, nil
}

// ParseStatus decodes and validates a status file (own or a peer's).
func ParseStatus(data []byte) (*Status, error) {
	if s := rememberedStatus(data); s != nil {
		return s, nil
	}

	var s Status
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}

	if err := s.Validate(); err != nil {
		return nil, err
	}

	rememberStatus(data, s)

	return &s, nil
}

// StatusState says how reading a peer's status file went.
type StatusState int

// Status read results.
const (
	StatusOK         StatusState = iota // read, parsed, and written in the peer's current boot
	StatusMissing                       // NotFound: the peer does not run the extension (yet)
	StatusStale                         // written in an earlier boot: the daemon has not resumed yet
	StatusUnreadable                    // any other error, or garbage
)

// String names how reading the status file went.
func (s StatusState) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusMissing:
		return "missing"
	case StatusStale:
		return "stale"
	case StatusUnreadable:
		return "unreadable"
	}

	return fmt.Sprintf("StatusState(%d)", int(s))
}

// Tri is a three-valued answer: a failed probe is Unsure, never No.
type Tri int

// Tri values.
const (
	Unsure Tri = iota
	Yes
	No
)

// String is yes, no or unsure.
func (t Tri) String() string {
	switch t {
	case Yes:
		return "yes"
	case No:
		return "no"
	}

	return "unsure"
}

// Signs are the signs of an existing (or starting) etcd cluster on one node.
type Signs struct {
	EtcdRunning     Tri
	DataDirNonEmpty Tri
	HasMembers      Tri
	// DataDirUnproven: the data directory was reported absent (NotFound, or
	// lstat ENOENT as Unknown), or empty while the node has no etcd service
	// yet. Before /var is mounted Talos answers the first on a bootstrapped
	// node too; on v1.14 /var/lib/etcd may be its own ETCD volume, whose
	// mount point lists empty until it is mounted, and Talos starts its
	// services (etcd included) only after every mount. Either proves
	// emptiness only when the volume is known to be mounted.
	DataDirUnproven bool
	// Unknown lists why some answer is Unsure.
	Unknown []string
}

// Any reports whether any sign is Yes.
func (s Signs) Any() bool {
	return s.EtcdRunning == Yes || s.DataDirNonEmpty == Yes || s.HasMembers == Yes
}

func (s Signs) describe() string {
	var parts []string

	if s.EtcdRunning == Yes {
		parts = append(parts, "etcd service started")
	}

	if s.DataDirNonEmpty == Yes {
		parts = append(parts, "/var/lib/etcd not empty")
	}

	if s.HasMembers == Yes {
		parts = append(parts, "etcd members listed")
	}

	return joinReasons(parts)
}

// PeerFacts is what one round learned about one control-plane peer.
type PeerFacts struct {
	Candidate
	Status      *Status
	StatusState StatusState
	StatusErr   string
	Signs       Signs
}

// Observation is everything Step may look at: the facts of one round.
type Observation struct {
	Now            time.Time
	Self           Candidate
	SelfSigns      Signs
	SelfTimeSynced bool
	// SelfEtcdHealthy: the local etcd service is Running and healthy (Done).
	SelfEtcdHealthy bool
	// SelfInit: this node's machine type is init (its config or COSI).
	SelfInit bool
	// InitMembers are the nodes that Talos cluster discovery lists with
	// machine type init, reachable or not: the addresses of each.
	InitMembers [][]netip.Addr
	// Peers are the control-plane peers in view, self excluded.
	Peers []PeerFacts
	// Quorum is QUORUM_NODES; it counts self.
	Quorum int
	// LeaderOrder is LEADER_ORDER (empty: boot-time).
	LeaderOrder LeaderOrder
	// ViewStableSince comes from ViewTracker.
	ViewStableSince time.Time
	// PreBootstrapDelay is PRE_BOOTSTRAP_DELAY.
	PreBootstrapDelay time.Duration
	// BreakLock is the operator escape hatch: nil normally.
	BreakLock *IntentRef
	// ResendAfter is how long an own Bootstrap that may have been accepted
	// (a crash before its answer was recorded, or an unknown answer) is
	// given to show etcd data before it is sent again. Talos accepts a
	// repeat while the data directory is still empty (etcd's image may be
	// pulling) and restarts etcd in bootstrap mode, so an early resend is a
	// second bootstrap of this node. Zero resends at once.
	ResendAfter time.Duration
}

// DecisionKind is what the daemon does after a Step.
type DecisionKind int

// Decisions.
const (
	Wait           DecisionKind = iota // nothing to do this round
	Lead                               // announced; waiting for locks, stability or checks
	Follow                             // locked to another leader, or a cluster exists elsewhere
	BeginBootstrap                     // status says bootstrapping k: persist, ConfirmLocks, then send Bootstrap
	AwaitEtcd                          // we bootstrapped (or may have): wait for own etcd, never re-elect
	Joined                             // own etcd exists (data or service): wait for it to be healthy
	Done                               // own etcd Running and healthy
	Halt                               // this node can never bootstrap (Talos says it is not a control plane)
	StandDown                          // another bootstrapper (Omni) founds this cluster: never bootstrap, exit 0
)

// String names the decision as the logs show it.
func (k DecisionKind) String() string {
	switch k {
	case Wait:
		return "wait"
	case Lead:
		return "lead"
	case Follow:
		return "follow"
	case BeginBootstrap:
		return "begin-bootstrap"
	case AwaitEtcd:
		return "await-etcd"
	case Joined:
		return "joined"
	case Done:
		return "done"
	case Halt:
		return "halt"
	case StandDown:
		return "stand-down"
	}

	return fmt.Sprintf("DecisionKind(%d)", int(k))
}

// Decision is Step's verdict; Reason is meant for logs and the status file.
type Decision struct {
	Kind   DecisionKind
	Reason string
	// Leader is the leader followed or awaited, for logs.
	Leader *Incarnation
	// UntilReconfigured: only an operator's fix (a peer's QUORUM_NODES or
	// LEADER_ORDER made to agree) changes this decision, so the daemon
	// asks again at its slow pace rather than every round.
	UntilReconfigured bool
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}

	return id
}
