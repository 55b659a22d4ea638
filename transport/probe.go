package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// StatusLimit caps a node's status file: a node answering a huge file is
// garbage, not a status.
const StatusLimit = 256 << 10

// memberListTimeout is the upstream README's "short timeout on bootstrap
// status checks".
const memberListTimeout = 5 * time.Second

var errMembersNotAsked = errors.New("not asked: etcd does not run and has no data")

// ProbeEtcdSigns asks a node for signs of an existing etcd cluster and
// returns them with its etcd service entry. Errors are classified by
// EtcdSigns: only Talos's known "no etcd here yet" answers count as "no";
// anything else is "unknown", never "not bootstrapped".
func ProbeEtcdSigns(ctx context.Context, node Node) (election.Signs, ServiceState) {
	svc, svcErr := node.EtcdService(ctx)
	empty, dataErr := node.EtcdDataDirEmpty(ctx)
	straddled := false

	signs := EtcdSigns(svc, svcErr, empty, dataErr, nil, errMembersNotAsked)
	if signs.EtcdRunning == election.No && signs.DataDirNonEmpty == election.No {
		// The service state read before the listing shows that the
		// volumes were mounted (Talos starts etcd after every mount); one
		// read after it must show that they still were: a reboot or an
		// upgrade stops etcd (Finished) before it unmounts the ETCD volume
		// and /var, and apid answers on. An empty listing is believed only
		// between two reads that both saw etcd before it ever ran.
		after, afterErr := node.EtcdService(ctx)
		if EtcdSigns(after, afterErr, empty, dataErr, nil, errMembersNotAsked).EtcdRunning == election.No {
			// Before bootstrap Talos's EtcdMemberList only retries
			// localhost:2379 until the deadline: with etcd not running and
			// the data directory empty, the answer carries nothing and
			// would cost a full deadline every round.
			return signs, svc
		}

		// Etcd stopped, started or went unknown around the listing: the
		// later state speaks for etcd, and the listing proves nothing.
		svc, svcErr, straddled = after, afterErr, true
	}

	mctx, cancel := context.WithTimeout(ctx, memberListTimeout)
	defer cancel()

	members, membersErr := node.EtcdMembers(mctx)

	signs = EtcdSigns(svc, svcErr, empty, dataErr, members, membersErr)
	if straddled && signs.DataDirNonEmpty == election.No {
		signs.DataDirUnproven = true
	}

	return signs, svc
}

// ReadStatus reads the status file at path on a node whose current boot id
// is bootID and says how that went: StatusMissing (NotFound: the node does
// not run the extension, yet), StatusStale (written in an earlier boot: a
// status speaks only for the incarnation that wrote it), StatusUnreadable
// with the error, or StatusOK with the parsed status.
func ReadStatus(ctx context.Context, node Node, path, bootID string) (*election.Status, election.StatusState, error) {
	data, err := node.ReadFile(ctx, path, StatusLimit)

	switch {
	case errors.Is(err, ErrNotFound):
		return nil, election.StatusMissing, nil
	case err != nil:
		return nil, election.StatusUnreadable, err
	}

	st, err := election.ParseStatus(data)
	if err != nil {
		return nil, election.StatusUnreadable, fmt.Errorf("%s on %s: %w", path, node.Addr(), err)
	}

	if st.Incarnation.BootID != bootID {
		return nil, election.StatusStale, nil
	}

	return st, election.StatusOK, nil
}
