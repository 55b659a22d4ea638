package transport

import (
	"errors"
	"io/fs"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// msgJoinGaveUp is in the Failed event of an etcd that waited to join for
// EtcdJoinTimeout (machined's services/etcd.go, all versions).
const msgJoinGaveUp = "failed to build initial etcd cluster"

// msgBootstrapRequested is the Finished event BootstrapEtcd fakes when it
// stops the waiting etcd to restart it in bootstrap mode. It shows for the
// milliseconds until the new etcd is loaded, or, when the request's context
// ended before that (machined's Unload gives up on it), for the rest of the
// boot with no etcd started.
const msgBootstrapRequested = "Bootstrap requested"

// EtcdSigns turns one node's probe answers into signs of an existing
// cluster. Only answers known from the Talos source to mean "no etcd here
// yet" become No; every other error is Unsure, which blocks a bootstrap.
//
//   - ServiceList: service states follow Talos's runner (system/events):
//     Initialized, Waiting, Starting and Preparing come before etcd runs
//     (before bootstrap etcd sits in Preparing); Skipped means never; Failed
//     with "failed to build initial etcd cluster" is a join that gave up
//     waiting for a cluster (before etcd ran); Running and Stopping mean
//     etcd runs. Finished (a shutdown, which since v1.14 also ends an etcd
//     that never ran, or "Bootstrap requested": Bootstrap stopping the
//     waiting etcd), Failed and unknown states are Unsure.
//   - /var/lib/etcd: empty or absent is No (Talos's own Bootstrap test).
//     Absent (NotFound, ErrNotFound, fs.ErrNotExist, or Talos's raw lstat
//     error as Unknown "...: no such file or directory"), or empty while
//     ServiceList shows no etcd, also sets DataDirUnproven.
//   - EtcdMemberList{QueryLocal}: asks the etcd at localhost:2379. Before
//     bootstrap it only errors (TLS not ready, connection refused, deadline):
//     such an error carries information only when ServiceList says etcd is
//     not running here, and is then No. Unimplemented "machine type is not
//     set" / "only available on control plane nodes" is No.
func EtcdSigns(svc ServiceState, svcErr error, dataDirEmpty bool, dataErr error, members []string, membersErr error) election.Signs {
	var s election.Signs

	switch {
	case svcErr != nil:
		s.EtcdRunning = election.Unsure
		s.Unknown = append(s.Unknown, "ServiceList: "+svcErr.Error())
	case !svc.Found:
		s.EtcdRunning = election.No
	default:
		switch {
		case svc.State == "Initialized", svc.State == "Waiting", svc.State == "Starting", svc.State == "Preparing", svc.State == "Skipped":
			s.EtcdRunning = election.No
		case svc.State == "Running", svc.State == "Stopping":
			s.EtcdRunning = election.Yes
		case svc.State == "Finished" && strings.Contains(svc.Message, msgBootstrapRequested):
			// Bootstrap stopped the waiting etcd. Normally etcd starts
			// again in bootstrap mode within milliseconds; a request whose
			// context ended meanwhile left it stopped, with nothing
			// bootstrapped. Read as a running etcd, that was remembered as
			// a cluster on every peer and ended this node's own election:
			// nothing was ever bootstrapped. Unsure blocks elections while
			// it shows, is never remembered, and leaves this node's resend
			// alive (a resend starts etcd in bootstrap mode).
			s.EtcdRunning = election.Unsure
			s.Unknown = append(s.Unknown, "etcd stopped by a Bootstrap request, not started again yet ("+svc.Message+")")
		case svc.State == "Finished":
			// A shutdown: since v1.14 an etcd stopped while it still waited
			// to join ends Finished too, on a node that never ran etcd, for
			// the seconds before apid stops. Taken as a running etcd, that
			// reboot was remembered as a cluster for ever and the election
			// stalled; data, if any, shows in /var/lib/etcd.
			s.EtcdRunning = election.Unsure
			s.Unknown = append(s.Unknown, "etcd service finished ("+svc.Message+")")
		case svc.State == "Failed" && strings.Contains(svc.Message, msgJoinGaveUp):
			// Waiting to join for EtcdJoinTimeout (30 min) with no cluster
			// to join: the pre stage failed before etcd ever ran, and the
			// service stays Failed until Talos reboots at its boot timeout.
			// Read as Unsure it would block every node meanwhile. Bootstrap
			// stops it and starts etcd in bootstrap mode as from Preparing.
			s.EtcdRunning = election.No
		default:
			s.EtcdRunning = election.Unsure
			s.Unknown = append(s.Unknown, "etcd service in state "+svc.State)
		}
	}

	switch {
	case dataErr == nil && dataDirEmpty:
		s.DataDirNonEmpty = election.No
		// No etcd service yet: Talos has not started its services, which it
		// does after every mount; an unmounted ETCD volume (v1.14) lists as
		// an empty mount point.
		s.DataDirUnproven = svcErr != nil || !svc.Found
	case dataErr == nil:
		s.DataDirNonEmpty = election.Yes
	case isNotFound(dataErr):
		s.DataDirNonEmpty = election.No
		s.DataDirUnproven = true
	default:
		s.DataDirNonEmpty = election.Unsure
		s.Unknown = append(s.Unknown, "list "+EtcdDataDir+": "+dataErr.Error())
	}

	switch {
	case membersErr == nil && len(members) > 0:
		s.HasMembers = election.Yes
	case membersErr == nil:
		s.HasMembers = election.No
	case notControlPlaneYet(membersErr):
		s.HasMembers = election.No
	case s.EtcdRunning == election.No:
		s.HasMembers = election.No
	default:
		s.HasMembers = election.Unsure
		s.Unknown = append(s.Unknown, "EtcdMemberList: "+membersErr.Error())
	}

	return s
}

// isNotFound: the path does not exist, as this package, the OS or Talos
// (isAbsent) reports it.
func isNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, fs.ErrNotExist) || isAbsent(err)
}

// notControlPlaneYet matches machinehelper.CheckControlplane's answers.
func notControlPlaneYet(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unimplemented {
		return false
	}

	return strings.Contains(st.Message(), "machine type is not set") ||
		strings.Contains(st.Message(), "is only available on control plane nodes")
}
