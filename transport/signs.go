package transport

import (
	"errors"
	"io/fs"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// EtcdSigns turns one node's probe answers into signs of an existing
// cluster. Only answers known from the Talos source to mean "no etcd here
// yet" become No; every other error is Unsure, which blocks a bootstrap.
//
//   - ServiceList: service states follow Talos's runner (system/events):
//     Initialized, Waiting, Starting and Preparing come before etcd runs
//     (before bootstrap etcd sits in Preparing); Skipped means never; Running
//     means etcd runs; Stopping and Finished happen when Bootstrap stops the
//     waiting etcd ("Bootstrap requested") or a running etcd stops. Failed
//     and unknown states are Unsure.
//   - /var/lib/etcd: empty or absent is No (Talos's own Bootstrap test).
//     Absent (NotFound, ErrNotFound, fs.ErrNotExist, or Talos's raw lstat
//     error as Unknown "...: no such file or directory") also sets
//     DataDirAbsent.
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
		switch svc.State {
		case "Initialized", "Waiting", "Starting", "Preparing", "Skipped":
			s.EtcdRunning = election.No
		case "Running", "Stopping", "Finished":
			s.EtcdRunning = election.Yes
		default:
			s.EtcdRunning = election.Unsure
			s.Unknown = append(s.Unknown, "etcd service in state "+svc.State)
		}
	}

	switch {
	case dataErr == nil && dataDirEmpty:
		s.DataDirNonEmpty = election.No
	case dataErr == nil:
		s.DataDirNonEmpty = election.Yes
	case isNotFound(dataErr):
		s.DataDirNonEmpty = election.No
		s.DataDirAbsent = true
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
