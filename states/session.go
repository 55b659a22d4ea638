// Package states holds one handler per state of the daemon's machine (see
// fsm.Table). A handler does its phase's work through the interfaces below
// and returns an event; it never calls another handler. The protocol's
// decisions are not made here but in the pure election package, which the
// simulator drives too: handlers gather facts, call election.Step, persist
// what it returns, and only then act.
package states

import (
	"context"
	"net/netip"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// ControlPlaneMarker tells whether /system/secrets/etcd exists: Present
// looks once, Wait re-checks a missing directory for a grace period.
type ControlPlaneMarker interface {
	Present() (bool, error)
	Wait(ctx context.Context) (bool, error)
}

// CredentialSource yields this node's machine type (MachineTypeUnknown when
// the source cannot tell) and the identity used towards every apid.
type CredentialSource interface {
	Describe() string
	Load(ctx context.Context) (transport.MachineType, transport.Identity, error)
}

// NetworkFinder inspects the host's interfaces and routes; the network's
// Range names what discovery will cover.
type NetworkFinder interface {
	Find(ctx context.Context) (discovery.Network, error)
}

// Scanner discovers peers. It keeps connections to known peers between
// rounds and forgets a peer only after several failed probes. A round's
// BySource is nil when the scanner does not tell (the simulator's).
type Scanner interface {
	Scan(ctx context.Context) (discovery.Round, error)
	// Refresh re-probes only the known peers: fresh boot ids and boot
	// times within a round trip, without waiting out the silent addresses
	// of a sweep.
	Refresh(ctx context.Context) (discovery.Round, error)
	// NextDelay is how long to wait before the next round while quorum is
	// missing (fast at first, backing off to SCAN_INTERVAL).
	NextDelay(knownControlPlane, attempt int) time.Duration
	// Pause waits up to d before the next round. It may end early, when
	// discovery learns of an address not probed yet (a new member of
	// Talos cluster discovery).
	Pause(ctx context.Context, d time.Duration) error
	// CheckAddress fails permanently once this node's address has left
	// the host (a DHCP change within the boot): every protocol round asks,
	// so that no state retries for ever against the old address.
	CheckAddress() error
	Close() error
}

// StatusStore keeps the daemon's status durably (it survives restarts and
// reboots, and peers read it).
type StatusStore interface {
	Load() (*election.Status, error)
	Save(election.Status) error
}

// Settings are the protocol's timings and limits.
type Settings struct {
	Quorum                int
	LeaderOrder           election.LeaderOrder
	PreBootstrapDelay     time.Duration
	FollowerCheckInterval time.Duration
	// EtcdWait bounds one AwaitEtcd wait; when it runs out the state fails
	// and is retried in place (never re-elected).
	EtcdWait time.Duration
	// MinRound keeps a waiting node from polling its peers in a hot loop
	// (MinRoundFor gives the daemon's value).
	MinRound  time.Duration
	BreakLock *election.IntentRef
	// StatusPath is where peers' status files are read through apid.
	StatusPath string
}

// Deps are the daemon's collaborators.
type Deps struct {
	Log         zerolog.Logger
	Clock       clockwork.Clock
	Settings    Settings
	Marker      ControlPlaneMarker
	Credentials CredentialSource
	// SourceIsTalosconfig: the operator's talosconfig, not the machine CA,
	// provides the identity (only the log lines differ).
	SourceIsTalosconfig bool
	Network             NetworkFinder
	// Dialer opens apid connections with the identity Credentials produced.
	Dialer func(id transport.Identity) transport.Dialer
	// APIDPort is 50000 on Talos.
	APIDPort int
	// NewScanner builds discovery for the local network.
	NewScanner func(id transport.Identity, dialer transport.Dialer, network discovery.Network) (Scanner, error)
	Store      StatusStore
	// KernelCmdline reads the host's kernel command line (/proc/cmdline),
	// where siderolink.api= connects the machine to Omni; nil: not read
	// (the simulator).
	KernelCmdline func() (string, error)
	// Adopted, when set, observes every status the session adopts as the
	// one it acts on (the simulator checks it against what peers read);
	// nil in the daemon.
	Adopted func(election.Status)
}

// Session is one run of the daemon: the facts one state hands to the next.
type Session struct {
	Deps

	secretsPresent bool
	machineType    transport.MachineType
	identity       transport.Identity
	dialer         transport.Dialer
	network        discovery.Network
	local          transport.Node
	scanner        Scanner
	peers          []discovery.Peer // control-plane peers of the last scan
	initMembers    [][]netip.Addr   // init nodes discovery named in the last scan (each one's addresses)
	scanAttempt    int
	scanKnown      int // control-plane nodes known at the last scan round
	tracker        election.ViewTracker
	status         election.Status
	// durable: status is what the last save that returned nil wrote.
	durable      bool
	state        fsm.State
	announcedLog bool
	// stableAt is when the leader's view, as last seen, will have been
	// stable for PRE_BOOTSTRAP_DELAY.
	stableAt       time.Time
	etcdWaitLogged bool
}

// NewSession prepares a run.
func NewSession(deps Deps) *Session {
	return &Session{Deps: deps}
}

// Handlers maps every state to its handler.
func (s *Session) Handlers() map[fsm.State]fsm.Handler {
	return map[fsm.State]fsm.Handler{
		fsm.Detect:       fsm.HandlerFunc(s.detect),
		fsm.Credentials:  fsm.HandlerFunc(s.credentials),
		fsm.Connect:      s.endsOnStandDown(s.connect),
		fsm.Scan:         s.endsOnStandDown(s.scan),
		fsm.Elect:        s.endsOnStandDown(s.elect),
		fsm.LeaderDelay:  s.endsOnStandDown(s.leaderDelay),
		fsm.Bootstrap:    s.endsOnStandDown(s.bootstrap),
		fsm.AwaitEtcd:    s.endsOnStandDown(s.awaitEtcd),
		fsm.FollowerWait: s.endsOnStandDown(s.followerWait),
	}
}

// Entered records the current state; it is published in the status file so
// that an operator sees what the node waits for.
func (s *Session) Entered(state fsm.State) {
	s.state = state
}

// Close releases connections.
func (s *Session) Close() {
	if s.scanner != nil {
		_ = s.scanner.Close()
	}

	if s.local != nil {
		_ = s.local.Close()
	}
}

// sleep waits d on the session clock, or until ctx ends.
func (s *Session) sleep(ctx context.Context, d time.Duration) error {
	return Sleep(ctx, s.Clock, d)
}

// Sleep waits d on clock, or until ctx ends.
func Sleep(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}

	t := clock.NewTimer(d)
	defer t.Stop()

	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
		return nil
	}
}

// MinRoundFor is the shortest round of the waiting states for a follower
// check interval: a second, or the interval when it is shorter.
func MinRoundFor(followerCheckInterval time.Duration) time.Duration {
	return min(time.Second, followerCheckInterval)
}

// DefaultEtcdWait bounds one wait for etcd after a bootstrap; when it runs
// out the wait is retried in place with backoff (etcd's image may still be
// pulling), and an own Bootstrap that may have been lost is sent again only
// after it (see election.Observation.ResendAfter).
const DefaultEtcdWait = 5 * time.Minute
