package election

import (
	"fmt"
	"time"
)

// BootstrapOutcome classifies the answer to a Bootstrap RPC.
type BootstrapOutcome int

// Outcomes.
const (
	// Accepted: Talos restarted etcd in bootstrap mode (data fills later).
	Accepted BootstrapOutcome = iota
	// AlreadyExists: /var/lib/etcd is not empty on that node. Not a success
	// by itself: wait for etcd health.
	AlreadyExists
	// RetryLater: Talos refused before doing anything (not ready, time not
	// synced yet, machine type not known yet, credentials refused).
	RetryLater
	// NotControlPlane: Talos says the node cannot bootstrap at all.
	NotControlPlane
	// Rejected: apid refused the call (PermissionDenied, Unauthenticated)
	// before machined saw it: nothing happened.
	Rejected
	// Unknown: the request may have taken effect (deadline, dropped
	// connection, unexpected error): never withdraw, verify, resend on this
	// node only.
	Unknown
)

// String names the outcome as the logs and the status file show it.
func (o BootstrapOutcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case AlreadyExists:
		return "already-exists"
	case RetryLater:
		return "retry-later"
	case NotControlPlane:
		return "not-control-plane"
	case Rejected:
		return "rejected"
	case Unknown:
		return "unknown"
	}

	return fmt.Sprintf("BootstrapOutcome(%d)", int(o))
}

// AfterBootstrap records the outcome of a Bootstrap RPC sent for
// st.Bootstrapping; the daemon persists the result.
func AfterBootstrap(st Status, outcome BootstrapOutcome, now time.Time) (Status, Decision) {
	st = st.Clone()
	st.UpdatedAt = now
	st.Send = st.Send.answered(outcome, now)
	self := st.Incarnation
	k := st.Bootstrapping

	var d Decision

	switch outcome {
	case Accepted:
		st.Phase = PhaseBootstrapped
		d = Decision{Kind: AwaitEtcd, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d accepted: waiting for etcd", k)}
	case AlreadyExists:
		st.Phase = PhaseBootstrapped
		d = Decision{Kind: AwaitEtcd, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d: etcd data directory not empty: waiting for etcd", k)}
	case RetryLater, Rejected:
		d = Decision{Kind: Wait, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d refused for now: retrying", k)}
	case NotControlPlane:
		d = Decision{Kind: Halt, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d: Talos says this node is not a control-plane node; intent kept (locks hold): fix the machine config", k)}
	default:
		d = Decision{Kind: AwaitEtcd, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d: outcome unknown, it may have happened: verifying, resending on this node only", k)}
	}

	st.Reason = d.Reason

	return st, d
}
