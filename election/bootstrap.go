package election

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// Messages of machined's Bootstrap handler (siderolabs/talos
// internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go,
// internal/app/internal/machinehelper, and services.BootstrapEtcd).
const (
	msgNotAvailable      = "bootstrap is not available yet"                          // FailedPrecondition, all versions
	msgTimeNotSynced     = "time is not in sync yet"                                 // FailedPrecondition, all versions
	msgNotCPOld          = "bootstrap can only be performed on a control plane node" // FailedPrecondition, v1.6–v1.12
	msgNotCPNew          = "bootstrap is only available on control plane nodes"      // Unimplemented, v1.13
	msgMachineTypeUnset  = "machine type is not set"                                 // Unimplemented, v1.13 (config not loaded yet)
	msgDataDirNotEmpty   = "etcd data directory is not empty"                        // AlreadyExists; Unknown code from BootstrapEtcd's re-check
	msgEtcdNotConfigured = "etcd is not configured, bootstrap is not possible"       // InvalidArgument, after v1.13
)

// ClassifyBootstrap maps the Bootstrap RPC error to an outcome, matching
// Talos's messages as well as codes: FailedPrecondition means "retry" or
// "never" depending on the message. Anything not recognised is Unknown,
// because it may have happened.
func ClassifyBootstrap(err error) BootstrapOutcome {
	if err == nil {
		return Accepted
	}

	st, ok := status.FromError(err)
	if !ok {
		// Not a gRPC status: a context or connection error; the request may
		// have reached machined.
		return Unknown
	}

	msg := st.Message()

	switch st.Code() {
	case codes.AlreadyExists:
		return AlreadyExists
	case codes.FailedPrecondition:
		switch {
		case strings.Contains(msg, msgNotAvailable), strings.Contains(msg, msgTimeNotSynced):
			return RetryLater
		case strings.Contains(msg, msgNotCPOld):
			return NotControlPlane
		}
	case codes.Unimplemented:
		switch {
		case strings.Contains(msg, msgNotCPNew):
			return NotControlPlane
		case strings.Contains(msg, msgMachineTypeUnset):
			return RetryLater
		}
	case codes.InvalidArgument:
		if strings.Contains(msg, msgEtcdNotConfigured) {
			return NotControlPlane
		}
	case codes.Unknown:
		if strings.Contains(msg, msgDataDirNotEmpty) {
			return AlreadyExists
		}
	case codes.PermissionDenied, codes.Unauthenticated:
		return Rejected
	}

	// DeadlineExceeded, Unavailable, Canceled, Internal, unknown messages.
	return Unknown
}

// AfterBootstrap records the outcome of a Bootstrap RPC sent for
// st.Bootstrapping; the daemon persists the result.
func AfterBootstrap(st Status, outcome BootstrapOutcome, now time.Time) (Status, Decision) {
	st = st.Clone()
	st.UpdatedAt = now
	st.BootstrapAt = now // the request may be under way from here...
	self := st.Incarnation
	k := st.Bootstrapping

	var d Decision

	switch outcome {
	case Accepted:
		st.Phase = PhaseBootstrapped
		st.BootstrapSent = true
		d = Decision{Kind: AwaitEtcd, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d accepted: waiting for etcd", k)}
	case AlreadyExists:
		st.Phase = PhaseBootstrapped
		st.BootstrapSent = true
		d = Decision{Kind: AwaitEtcd, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d: etcd data directory not empty: waiting for etcd", k)}
	case RetryLater, Rejected:
		st.BootstrapAt = time.Time{} // ...except when machined refused it before acting
		d = Decision{Kind: Wait, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d refused for now: retrying", k)}
	case NotControlPlane:
		d = Decision{Kind: Halt, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d: Talos says this node is not a control-plane node; intent kept (locks hold): fix the machine config", k)}
	default:
		st.BootstrapSent = true
		d = Decision{Kind: AwaitEtcd, Leader: &self, Reason: fmt.Sprintf("Bootstrap for intent %d: outcome unknown, it may have happened: verifying, resending on this node only", k)}
	}

	st.Reason = d.Reason

	return st, d
}
