package transport

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

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
	msgUnattendedInstall = "bootstrap is not allowed during unattended install"      // Unknown, v1.14 BootstrapEtcd, before etcd stops
)

// ClassifyBootstrap maps the Bootstrap RPC error to an outcome, matching
// Talos's messages as well as codes: FailedPrecondition means "retry" or
// "never" depending on the message. Anything not recognised is Unknown,
// because it may have happened.
func ClassifyBootstrap(err error) election.BootstrapOutcome {
	if err == nil {
		return election.Accepted
	}

	st, ok := status.FromError(err)
	if !ok {
		// Not a gRPC status: a context or connection error; the request may
		// have reached machined.
		return election.Unknown
	}

	msg := st.Message()

	switch st.Code() {
	case codes.AlreadyExists:
		return election.AlreadyExists
	case codes.FailedPrecondition:
		switch {
		case strings.Contains(msg, msgNotAvailable), strings.Contains(msg, msgTimeNotSynced):
			return election.RetryLater
		case strings.Contains(msg, msgNotCPOld):
			return election.NotControlPlane
		}
	case codes.Unimplemented:
		switch {
		case strings.Contains(msg, msgNotCPNew):
			return election.NotControlPlane
		case strings.Contains(msg, msgMachineTypeUnset):
			return election.RetryLater
		}
	case codes.InvalidArgument:
		if strings.Contains(msg, msgEtcdNotConfigured) {
			return election.NotControlPlane
		}
	case codes.Unknown:
		switch {
		case strings.Contains(msg, msgDataDirNotEmpty):
			return election.AlreadyExists
		case strings.Contains(msg, msgUnattendedInstall):
			// Refused before etcd is touched: nothing is under way.
			return election.RetryLater
		}
	case codes.PermissionDenied, codes.Unauthenticated:
		return election.Rejected
	}

	// DeadlineExceeded, Unavailable, Canceled, Internal, unknown messages.
	return election.Unknown
}

// cosiTypeUnsupported: the apid serves no such COSI resource: no COSI at
// all (Unimplemented), or a type or namespace its access policy does not
// know. Talos answers the latter PermissionDenied "resource type %q is not
// supported" (internal/app/resources/access.go), before any role check;
// another apid, or a Talos that predates the type, may answer so. Taken as
// a refusal, it would stop every round for good.
func cosiTypeUnsupported(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}

	switch st.Code() {
	case codes.Unimplemented:
		return true
	case codes.PermissionDenied:
		return strings.HasSuffix(st.Message(), "is not supported")
	default:
		return false
	}
}
