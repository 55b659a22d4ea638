package states

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// memNode is an in-memory apid with fixed answers.
type memNode struct {
	addr       netip.Addr
	bootID     string
	bootTime   time.Time
	status     []byte
	dataEmpty  bool
	etcd       transport.ServiceState
	bootstraps int
}

func (n *memNode) Addr() netip.Addr                            { return n.addr }
func (n *memNode) BootTime(context.Context) (time.Time, error) { return n.bootTime, nil }
func (n *memNode) BootID(context.Context) (string, error)      { return n.bootID, nil }
func (n *memNode) MachineType(context.Context) (transport.MachineType, error) {
	return transport.MachineTypeControlPlane, nil
}
func (n *memNode) EtcdService(context.Context) (transport.ServiceState, error) { return n.etcd, nil }
func (n *memNode) EtcdMembers(context.Context) ([]string, error)               { return nil, nil }
func (n *memNode) EtcdDataDirEmpty(context.Context) (bool, error)              { return n.dataEmpty, nil }
func (n *memNode) TimeSynced(context.Context) (bool, error)                    { return true, nil }
func (n *memNode) Close() error                                                { return nil }

func (n *memNode) Bootstrap(context.Context) error {
	n.bootstraps++

	return nil
}

func (n *memNode) ReadFile(_ context.Context, path string, _ int64) ([]byte, error) {
	if path != statusfile.Path || n.status == nil {
		return nil, transport.ErrNotFound
	}

	return n.status, nil
}

type memScanner struct{ peers []discovery.Peer }

func (s memScanner) Scan(context.Context) (ScanResult, error) {
	return ScanResult{ControlPlane: s.peers}, nil
}
func (s memScanner) NextDelay(int, int) time.Duration { return time.Second }
func (s memScanner) Close() error                     { return nil }

type memStore struct{ saved []election.Status }

func (m *memStore) Load() (*election.Status, error) { return nil, nil }
func (m *memStore) Save(st election.Status) error {
	m.saved = append(m.saved, st)

	return nil
}

// A leader that decided to bootstrap but finds, on its last fresh scan, a
// cluster on a peer (made by hand or by another tool) sends nothing and
// follows in FollowerWait, where the protocol keeps running: AwaitEtcd
// would wait for its own etcd without ever locking to the new leader.
func TestBootstrapFollowsWhenAClusterAppearedBeforeTheSend(t *testing.T) {
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	self := &memNode{addr: netip.MustParseAddr("198.18.0.1"), bootID: "a1", bootTime: now.Add(-time.Hour), dataEmpty: true,
		etcd: transport.ServiceState{Found: true, State: "Preparing"}}
	peer := &memNode{addr: netip.MustParseAddr("198.18.0.2"), bootID: "b1", bootTime: now.Add(-30 * time.Minute), dataEmpty: false,
		etcd: transport.ServiceState{Found: true, State: "Running", Healthy: true}}

	me := election.Candidate{Incarnation: election.Incarnation{IP: self.addr, BootID: "a1"}, BootTime: self.bootTime}
	decided := election.NewStatus(me)
	decided.Phase, decided.Intent, decided.Bootstrapping, decided.BootstrapBootID = election.PhaseBootstrapping, 1, 1, "a1"
	decided.Lock = &election.IntentRef{Leader: decided.Incarnation, Number: 1}
	decided.Quorum = 2

	store := &memStore{}
	s := NewSession(Deps{
		Log: zerolog.Nop(), Clock: clockwork.NewFakeClockAt(now), Store: store,
		Settings: Settings{Quorum: 2, StatusPath: statusfile.Path, EtcdWait: 5 * time.Minute},
	})
	s.local, s.status = self, decided
	s.network = Network{LocalIP: self.addr}
	s.scanner = memScanner{peers: []discovery.Peer{{Addr: peer.addr, Node: peer, BootID: peer.bootID, BootTime: peer.bootTime}}}

	event, err := s.bootstrap(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	if event != fsm.ElectedFollower {
		t.Fatalf("event %s, want %s", event, fsm.ElectedFollower)
	}

	if self.bootstraps != 0 {
		t.Fatalf("Bootstrap sent %d times although a cluster exists", self.bootstraps)
	}

	last := store.saved[len(store.saved)-1]
	if last.Phase == election.PhaseBootstrapping || last.Cluster == nil {
		t.Fatalf("status after the round: phase %s, cluster %v; want the bootstrap withdrawn and the cluster remembered", last.Phase, last.Cluster)
	}
}
