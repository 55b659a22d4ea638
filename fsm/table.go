// Package fsm holds the daemon's state machine: one declarative transition
// table and the supervisor that runs a handler per state, follows the table,
// retries failed states with backoff and logs every transition.
package fsm

import (
	lfsm "github.com/looplab/fsm"
)

// State is a phase of the daemon.
type State string

// The daemon's states, in the order a bootstrap walks them.
const (
	Detect       State = "Detect"
	Credentials  State = "Credentials"
	Connect      State = "Connect"
	Scan         State = "Scan"
	Elect        State = "Elect"
	LeaderDelay  State = "LeaderDelay"
	Bootstrap    State = "Bootstrap"
	AwaitEtcd    State = "AwaitEtcd"
	FollowerWait State = "FollowerWait"
	Done         State = "Done"
)

// Event names what a handler found out.
type Event string

// Events. A handler returns one of these; the table decides where it leads.
const (
	ControlPlaneDetected Event = "controlplane_detected"
	SecretsMissing       Event = "secrets_missing"
	WorkerDetected       Event = "worker_detected"
	CredentialsReady     Event = "credentials_ready"
	Connected            Event = "connected"
	QuorumReached        Event = "quorum_reached"
	QuorumMissing        Event = "quorum_missing"
	ElectedLeader        Event = "elected_leader"
	ElectedFollower      Event = "elected_follower"
	NotYet               Event = "not_yet"
	ViewChanged          Event = "view_changed"
	DelayElapsed         Event = "delay_elapsed"
	BootstrapRequested   Event = "bootstrap_requested"
	AlreadyBootstrapped  Event = "already_bootstrapped"
	EtcdReady            Event = "etcd_ready"
	ClusterBootstrapped  Event = "cluster_bootstrapped"
	StoodDown            Event = "stood_down"
)

// Transition is one row of the table: Event moves From any of the listed
// states To one state.
type Transition struct {
	Event Event
	From  []State
	To    State
}

// Table is the whole machine. It is the only place that says where an event
// leads; handlers never choose their successor.
var Table = []Transition{
	{ControlPlaneDetected, []State{Detect}, Credentials},
	// /system/secrets/etcd stayed absent for the grace period: the machine
	// config (or, with a talosconfig, the local apid) has the last word.
	{SecretsMissing, []State{Detect}, Credentials},
	// A worker (its config says so, or apid does) has nothing to do: Done,
	// exit 0, and Talos's untilSuccess policy leaves it stopped.
	{WorkerDetected, []State{Credentials, Connect}, Done},
	{CredentialsReady, []State{Credentials}, Connect},
	{Connected, []State{Connect}, Scan},
	{QuorumReached, []State{Scan}, Elect},
	{QuorumMissing, []State{Scan}, Scan},
	{ElectedLeader, []State{Elect}, LeaderDelay},
	// A leader that withdraws, or that finds a cluster, follows, and keeps
	// running the protocol there: the leader it now follows may need its
	// lock (also from Bootstrap, when a cluster or a better leader appeared
	// before anything was sent).
	{ElectedFollower, []State{Elect, LeaderDelay, Bootstrap}, FollowerWait},
	// Nothing to act on yet: keep observing where we are (Elect goes back to
	// scanning, the waiting states poll again).
	{NotYet, []State{Elect}, Scan},
	{NotYet, []State{LeaderDelay}, LeaderDelay},
	{NotYet, []State{FollowerWait}, FollowerWait},
	// The view or our lock changed under us: start over from a fresh scan.
	{ViewChanged, []State{LeaderDelay, FollowerWait}, Scan},
	// Every candidate confirmed our intent; also taken after a restart that
	// finds a bootstrap we had decided on but perhaps not sent, and when the
	// wait for etcd ran out after an answer that left the outcome unknown.
	{DelayElapsed, []State{LeaderDelay, Elect, AwaitEtcd}, Bootstrap},
	// Sent (or may have been sent): only verifying remains, never re-electing.
	{BootstrapRequested, []State{Bootstrap, Elect}, AwaitEtcd},
	{AlreadyBootstrapped, []State{Bootstrap}, AwaitEtcd},
	// Also from Scan: a node of a healthy cluster need not wait for quorum.
	{EtcdReady, []State{AwaitEtcd, Scan}, Done},
	{ClusterBootstrapped, []State{FollowerWait}, Done},
	// Another bootstrapper founds this cluster (Omni): Talos shows it on
	// this machine (Connect), or any protocol round reads a peer's status
	// that stood down. Exit 0: no Bootstrap from this node, ever.
	{StoodDown, []State{Connect, Elect, LeaderDelay, Bootstrap, AwaitEtcd, FollowerWait}, Done},
}

// Initial is where every run starts.
const Initial = Detect

// events converts the table for looplab/fsm.
func events() lfsm.Events {
	out := make(lfsm.Events, 0, len(Table))

	for _, t := range Table {
		src := make([]string, len(t.From))
		for i, s := range t.From {
			src[i] = string(s)
		}

		out = append(out, lfsm.EventDesc{Name: string(t.Event), Src: src, Dst: string(t.To)})
	}

	return out
}

// New builds a looplab machine from the table, positioned at Initial.
func New() *lfsm.FSM {
	return lfsm.NewFSM(string(Initial), events(), nil)
}

// Mermaid renders the table as a Mermaid state diagram; the README embeds it
// and a test keeps the two equal.
func Mermaid() string {
	out, err := lfsm.VisualizeForMermaidWithGraphType(New(), lfsm.StateDiagram)
	if err != nil {
		panic(err) // StateDiagram is a known type: cannot happen
	}

	return out
}
