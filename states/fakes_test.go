package states

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// memNode is an in-memory apid with fixed answers. errs fails a method by
// its name ("BootID", "EtcdService", ...); bootstrapErr is Bootstrap's
// answer. Tests set fields only between handler calls: observe reads peers
// from several goroutines.
type memNode struct {
	addr         netip.Addr
	bootID       string
	bootTime     time.Time
	status       []byte // status.json as published; nil: NotFound
	dataEmpty    bool
	etcd         transport.ServiceState
	unsynced     bool
	errs         map[string]error
	bootstrapErr error
	bootstraps   int
	onBootstrap  func() // runs when Bootstrap is called, before it answers
	sideroLink   string // the SiderolinkConfigs resource's APIEndpoint
}

// newNode is a control-plane node at 198.18.0.host that has not run etcd.
func newNode(host byte, bootID string, bootTime time.Time) *memNode {
	return &memNode{
		addr: netip.AddrFrom4([4]byte{198, 18, 0, host}), bootID: bootID, bootTime: bootTime,
		dataEmpty: true, etcd: transport.ServiceState{Found: true, State: "Preparing"},
	}
}

func (n *memNode) Addr() netip.Addr { return n.addr }

func (n *memNode) BootTime(context.Context) (time.Time, error) {
	return n.bootTime, n.errs["BootTime"]
}

func (n *memNode) BootID(context.Context) (string, error) { return n.bootID, n.errs["BootID"] }

func (n *memNode) MachineType(context.Context) (transport.MachineType, error) {
	return transport.MachineTypeControlPlane, n.errs["MachineType"]
}

func (n *memNode) EtcdService(context.Context) (transport.ServiceState, error) {
	return n.etcd, n.errs["EtcdService"]
}

func (n *memNode) EtcdMembers(context.Context) ([]string, error) { return nil, n.errs["EtcdMembers"] }

func (n *memNode) EtcdDataDirEmpty(context.Context) (bool, error) {
	return n.dataEmpty, n.errs["EtcdDataDirEmpty"]
}

func (n *memNode) TimeSynced(context.Context) (bool, error) {
	return !n.unsynced, n.errs["TimeSynced"]
}

func (n *memNode) Close() error { return nil }

func (n *memNode) SideroLinkEndpoint(context.Context) (string, error) {
	return n.sideroLink, n.errs["SideroLinkEndpoint"]
}

func (n *memNode) Bootstrap(context.Context) error {
	n.bootstraps++

	if n.onBootstrap != nil {
		n.onBootstrap()
	}

	return n.bootstrapErr
}

func (n *memNode) ReadFile(_ context.Context, path string, _ int64) ([]byte, error) {
	if err := n.errs["ReadFile"]; err != nil {
		return nil, err
	}

	if path != statusfile.Path || n.status == nil {
		return nil, transport.ErrNotFound
	}

	return n.status, nil
}

func (n *memNode) candidate() election.Candidate {
	return election.Candidate{Incarnation: election.Incarnation{IP: n.addr, BootID: n.bootID}, BootTime: n.bootTime}
}

// peer is the node as a scan reports it.
func (n *memNode) peer() discovery.Peer {
	return discovery.Peer{Addr: n.addr, Node: n, BootID: n.bootID, BootTime: n.bootTime,
		MachineType: transport.MachineTypeControlPlane}
}

// peersOf is what a scan finding nodes reports.
func peersOf(nodes ...*memNode) []discovery.Peer {
	out := make([]discovery.Peer, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.peer())
	}

	return out
}

// publish makes st the node's status.json, encoded as the daemon writes it.
func (n *memNode) publish(t *testing.T, st election.Status) {
	t.Helper()

	data, err := election.MarshalStatus(st)
	if err != nil {
		t.Fatal(err)
	}

	n.status = data
}

// memScanner reports fixed peers and records the NextDelay questions.
type memScanner struct {
	peers []discovery.Peer
	delay time.Duration
	// took is how long each scan takes, in the bubble's virtual time.
	took  time.Duration
	scans int
	asked [][2]int // (knownControlPlane, attempt) of each NextDelay
	// addressErr: this node's address left the host (CheckAddress).
	addressErr error
}

func (s *memScanner) Scan(context.Context) (discovery.Round, error) {
	s.scans++
	time.Sleep(s.took)

	return discovery.Round{Result: discovery.Result{ControlPlane: append([]discovery.Peer(nil), s.peers...)}}, nil
}

func (s *memScanner) Refresh(ctx context.Context) (discovery.Round, error) { return s.Scan(ctx) }

// Pause sleeps d of the bubble's virtual time.
func (s *memScanner) Pause(ctx context.Context, d time.Duration) error {
	return Sleep(ctx, clockwork.NewRealClock(), d)
}

func (s *memScanner) NextDelay(known, attempt int) time.Duration {
	s.asked = append(s.asked, [2]int{known, attempt})

	return s.delay
}

func (s *memScanner) Close() error { return nil }

// CheckAddress answers addressErr: this node's address left the host.
func (s *memScanner) CheckAddress() error { return s.addressErr }

// memStore keeps every saved status, in order; Load answers loaded, loadErr.
// A saveErr is returned after the status was recorded (published).
type memStore struct {
	saved   []election.Status
	loaded  *election.Status
	loadErr error
	saveErr error
}

func (m *memStore) Load() (*election.Status, error) { return m.loaded, m.loadErr }

func (m *memStore) Save(st election.Status) error {
	m.saved = append(m.saved, st.Clone())

	return m.saveErr
}

// last is the status a restart would find.
func (m *memStore) last(t *testing.T) election.Status {
	t.Helper()

	if len(m.saved) == 0 {
		t.Fatal("no status saved")
	}

	return m.saved[len(m.saved)-1]
}

type memMarker struct {
	present, appears bool // Present's answer; Wait's answer
	err              error
	waits            int
}

func (m *memMarker) Present() (bool, error) { return m.present, m.err }

func (m *memMarker) Wait(context.Context) (bool, error) {
	m.waits++

	return m.appears, m.err
}

type memCredentials struct {
	machineType transport.MachineType
	err         error
}

func (c memCredentials) Describe() string { return "memory" }

func (c memCredentials) Load(context.Context) (transport.MachineType, transport.Identity, error) {
	return c.machineType, nil, c.err
}

type memNetwork struct{ network discovery.Network }

func (n memNetwork) Find(context.Context) (discovery.Network, error) { return n.network, nil }

// memDialer hands out one node and remembers where it was asked to dial.
type memDialer struct {
	node   transport.Node
	dialed []netip.AddrPort
}

func (d *memDialer) Dial(_ context.Context, addr netip.AddrPort) (transport.Node, error) {
	d.dialed = append(d.dialed, addr)

	return d.node, nil
}

// Timings of the test sessions: MinRound is 1 s (a round of Elect's
// not-yet, and of the leader's LeaderDelay), FollowerWait waits 9 s.
const (
	testDelay   = 30 * time.Second
	testFollow  = 9 * time.Second
	testEtcd    = time.Minute
	testMinWait = time.Second
)

// newTestSession is a session that has passed Connect and Scan on self:
// its last scan (and every rescan) found peers, and its status is a fresh
// one. The real clock is virtual time inside a synctest bubble.
func newTestSession(self *memNode, quorum int, peers ...*memNode) (*Session, *memStore, *memScanner) {
	scanner := &memScanner{delay: time.Second, peers: peersOf(peers...)}

	store := &memStore{}
	s := NewSession(Deps{
		Log: zerolog.Nop(), Clock: clockwork.NewRealClock(), Store: store, APIDPort: transport.APIDPort,
		Settings: Settings{
			Quorum: quorum, PreBootstrapDelay: testDelay, FollowerCheckInterval: testFollow,
			EtcdWait: testEtcd, MinRound: testMinWait, StatusPath: statusfile.Path,
		},
	})
	s.secretsPresent, s.machineType = true, transport.MachineTypeControlPlane
	s.local, s.network, s.scanner = self, discovery.Network{LocalIP: self.addr, Range: "198.18.0.0/24"}, scanner
	s.peers = peersOf(peers...)
	s.status = statusOf(self, quorum)

	return s, store, scanner
}

// statusOf is the first status of node n (named by its boot id).
func statusOf(n *memNode, quorum int) election.Status {
	st := election.NewStatus(n.candidate())
	st.Quorum = quorum

	return st
}

// announce makes st the leader of its own intent k, announced at `at`.
func announce(st election.Status, k uint64, at time.Time) election.Status {
	st.Phase, st.Intent, st.AnnouncedAt = election.PhaseAnnounced, k, at
	st.Lock = &election.IntentRef{Leader: st.Incarnation, Number: k}

	return st
}

// lockTo makes st locked to the latest intent of leader.
func lockTo(st, leader election.Status) election.Status {
	st.Phase = election.PhaseLocked
	st.Lock = &election.IntentRef{Leader: leader.Incarnation, Number: leader.Intent}

	return st
}

// decideBootstrap is the leader's status once LeaderDelay decided to send:
// bootstrapping its intent, not sent yet.
func decideBootstrap(st election.Status) election.Status {
	st.Phase = election.PhaseBootstrapping
	st.Send = election.Send{Bootstrapping: st.Intent, BootstrapBootID: st.Incarnation.BootID, SendState: election.SendUnsent}

	return st
}

var etcdHealthy = transport.ServiceState{Found: true, State: "Running", Healthy: true}

// trio is three control-plane nodes, QUORUM_NODES=3: self booted first and
// announced intent 1 just now; b and c published locks to it.
type trio struct {
	self, b, c *memNode
	s          *Session
	store      *memStore
	scanner    *memScanner
}

func newTrio(t *testing.T) *trio {
	t.Helper()

	now := time.Now()
	tr := &trio{
		self: newNode(1, "a1", now.Add(-time.Hour)),
		b:    newNode(2, "b1", now.Add(-30*time.Minute)),
		c:    newNode(3, "c1", now.Add(-20*time.Minute)),
	}
	tr.s, tr.store, tr.scanner = newTestSession(tr.self, 3, tr.b, tr.c)
	tr.s.status = announce(tr.s.status, 1, now)

	for _, p := range []*memNode{tr.b, tr.c} {
		p.publish(t, lockTo(statusOf(p, 3), tr.s.status))
	}

	return tr
}

// bootstraps counts the Bootstrap RPCs all three received.
func (tr *trio) bootstraps() int { return tr.self.bootstraps + tr.b.bootstraps + tr.c.bootstraps }

// expectEvent calls handler once, inside a synctest bubble, and fails
// unless it returns want, or an error wrapping wantErr, after exactly wait
// of virtual time. It returns the error for further checks.
func expectEvent(t *testing.T, handler func(context.Context) (fsm.Event, error), want fsm.Event, wantErr error, wait time.Duration) error {
	t.Helper()

	start := time.Now()
	event, err := handler(t.Context())

	if !errors.Is(err, wantErr) && (wantErr != errAny || err == nil) {
		t.Fatalf("error %v, want %v", err, wantErr)
	}

	if event != want {
		t.Fatalf("event %q, want %q", event, want)
	}

	if waited := time.Since(start); waited != wait {
		t.Fatalf("returned after %s, want %s", waited, wait)
	}

	return err
}

// errAny stands for an error without a sentinel to match.
var errAny = errors.New("any error")

// isPermanent: the supervisor gives up instead of retrying.
func isPermanent(err error) bool {
	perr := new(backoff.PermanentError)

	return errors.As(err, &perr)
}
