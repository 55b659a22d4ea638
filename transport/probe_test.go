package transport_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// rebootingNode is a bootstrapped node whose reboot or upgrade begins
// while it is probed: etcd had not run yet in this boot (Preparing), then
// Talos stops it (Finished) and unmounts the ETCD volume and /var before
// the listing arrives, while apid answers on. Only the etcd methods are
// served.
type rebootingNode struct {
	transport.Node
	stopped bool
	members bool
}

func (n *rebootingNode) EtcdService(context.Context) (transport.ServiceState, error) {
	if n.stopped {
		return transport.ServiceState{Found: true, State: "Finished", Message: "Service finished successfully"}, nil
	}

	n.stopped = true // the reboot sequence starts right after this answer

	return transport.ServiceState{Found: true, State: "Preparing"}, nil
}

func (n *rebootingNode) EtcdDataDirEmpty(context.Context) (bool, error) {
	return false, fmt.Errorf("%w: lstat /var/lib/etcd: no such file or directory", transport.ErrNotFound)
}

func (n *rebootingNode) EtcdMembers(context.Context) ([]string, error) {
	n.members = true

	return nil, context.DeadlineExceeded
}

// An empty listing is believed only between two service reads that both
// saw etcd before it ever ran: a listing made after a reboot had stopped
// etcd and unmounted /var would release a lock to a leader holding data.
func TestEmptyListingIsBracketedByEtcdNotYetRun(t *testing.T) {
	t.Parallel()

	n := &rebootingNode{}

	signs, svc := transport.ProbeEtcdSigns(t.Context(), n)
	if signs.EtcdRunning == election.No || svc.State != "Finished" {
		t.Fatalf("etcd stopped around the listing read as %s (state %q), want not No and the later state", signs.EtcdRunning, svc.State)
	}

	if !signs.DataDirUnproven || len(signs.Unknown) == 0 {
		t.Fatalf("the listing made in a reboot sequence: %+v, want it unproven and something unknown", signs)
	}

	if !n.members {
		t.Fatal("EtcdMemberList was skipped although etcd did not stay before its first run")
	}
}
