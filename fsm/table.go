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

// Event names what a handler found out (the setup states) or what the
// election decided (from Elect on).
type Event string

// Events of the setup states: what the handler found out.
const (
	ControlPlaneDetected Event = "controlplane_detected"
	SecretsMissing       Event = "secrets_missing"
	WorkerDetected       Event = "worker_detected"
	CredentialsReady     Event = "credentials_ready"
	Connected            Event = "connected"
	QuorumReached        Event = "quorum_reached"
	QuorumMissing        Event = "quorum_missing"
)

// Events from Elect on: each is one decision of the election (states maps
// every election.DecisionKind to one of them, in one table), and leads to
// the one state that carries that decision out, whichever state's round
// made it. The rules live in election.Step; the machine only follows.
const (
	// Wait: nothing to act on yet; elect again from a fresh scan.
	Wait Event = "wait"
	// Lead: this node announced its intent; it waits for every lock and a
	// stable view.
	Lead Event = "lead"
	// Follow: locked to another leader, or this node's etcd exists; wait
	// to join, still running the protocol (the leader may need the lock).
	Follow Event = "follow"
	// SendBootstrap: every check passed (or a send is due again): send
	// Bootstrap once the known peers are refreshed and the locks confirmed.
	SendBootstrap Event = "send_bootstrap"
	// AwaitingEtcd: Bootstrap was (or may have been) sent: only verifying
	// remains, never electing again.
	AwaitingEtcd Event = "await_etcd"
	// Finish: this node's etcd runs and is healthy.
	Finish Event = "done"
	// StandDown: another bootstrapper founds this cluster (Omni); exit 0,
	// no Bootstrap from this node, ever.
	StandDown Event = "stand_down"
)

// Transition is one row of the table: Event moves From any of the listed
// states To one state.
type Transition struct {
	Event Event
	From  []State
	To    State
}

// rounds are the states that run a protocol round, and so may get any of
// the election's decisions.
var rounds = []State{Elect, LeaderDelay, Bootstrap, AwaitEtcd, FollowerWait}

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

	{Wait, rounds, Scan},
	{Lead, rounds, LeaderDelay},
	{Follow, rounds, FollowerWait},
	{SendBootstrap, rounds, Bootstrap},
	{AwaitingEtcd, rounds, AwaitEtcd},
	// Also from Scan: a node of a healthy cluster need not wait for quorum.
	{Finish, append([]State{Scan}, rounds...), Done},
	// Talos shows Omni on this machine (Connect), or a round reads a peer
	// that stood down.
	{StandDown, append([]State{Connect, Scan}, rounds...), Done},
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

// Mermaid renders the table as a Mermaid state diagram; docs/development.md embeds it
// and a test keeps the two equal.
func Mermaid() string {
	out, err := lfsm.VisualizeForMermaidWithGraphType(New(), lfsm.StateDiagram)
	if err != nil {
		panic(err) // StateDiagram is a known type: cannot happen
	}

	return out
}
