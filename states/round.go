package states

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// observe gathers the facts of one protocol round: this node's incarnation
// and etcd signs, and for every control-plane peer of the last scan its
// published status and its signs of an existing cluster. It does I/O only;
// the decision is election.Step's.
func (s *Session) observe(ctx context.Context) (election.Observation, error) {
	if err := s.scanner.CheckAddress(); err != nil {
		return election.Observation{}, err
	}

	self, err := s.selfCandidate(ctx)
	if err != nil {
		return election.Observation{}, fmt.Errorf("refresh local node: %w", err)
	}

	if self.BootID != s.status.Incarnation.BootID {
		// The node rebooted under a running daemon: impossible for an
		// extension (a reboot ends it). Exit rather than reason on mixed
		// incarnations, or retry a state that fails the same way for
		// ever: a new run starts from the new boot, as after a reboot.
		return election.Observation{}, backoff.Permanent(fmt.Errorf("local boot id changed from %s to %s: exiting so that the service starts again on the new boot",
			s.status.Incarnation.BootID, self.BootID))
	}

	synced, err := s.local.TimeSynced(ctx)

	switch {
	case err == nil:
	case errors.Is(err, transport.ErrUnsupported):
		// Without COSI (or a time status) sync cannot be seen. That costs no
		// safety: Bootstrap itself refuses while time is not in sync, and
		// boot ids keep identities stable across the clock step.
		s.Log.Debug().Err(err).Msg("time status unavailable, relying on Bootstrap's own time check")

		synced = true
	default:
		// A lost reply is not a synced clock: taken as one, a node that
		// never syncs would announce and hold every lock while its
		// Bootstrap is refused for ever (found by the simulator).
		return election.Observation{}, fmt.Errorf("refresh local node: time status: %w", err)
	}

	selfSigns, selfEtcd := transport.ProbeEtcdSigns(ctx, s.local)

	self.Node = s.status.Incarnation.Node

	obs := election.Observation{
		Now:               s.Clock.Now(),
		Self:              self,
		SelfSigns:         selfSigns,
		SelfEtcdHealthy:   selfEtcd.Running(),
		SelfInit:          s.selfInit(ctx),
		InitMembers:       s.initMembers,
		SelfTimeSynced:    synced,
		Peers:             make([]election.PeerFacts, len(s.peers)),
		Quorum:            s.Settings.Quorum,
		LeaderOrder:       s.Settings.LeaderOrder,
		PreBootstrapDelay: s.Settings.PreBootstrapDelay,
		BreakLock:         s.Settings.BreakLock,
		ResendAfter:       s.Settings.EtcdWait,
	}

	var wg sync.WaitGroup

	for i, peer := range s.peers {
		wg.Add(1)

		go func() {
			defer wg.Done()

			obs.Peers[i] = s.peerFacts(ctx, peer)
		}()
	}

	wg.Wait()

	// The view Step ranks: an alias of a peer or of this node coming and
	// going is no change of the candidates.
	obs.ViewStableSince = s.tracker.Observe(obs.Now, election.NormalizedView(obs))

	return obs, ctx.Err()
}

func (s *Session) peerFacts(ctx context.Context, peer discovery.Peer) election.PeerFacts {
	facts := election.PeerFacts{
		Candidate: election.Candidate{
			Incarnation: election.Incarnation{IP: peer.Node.Addr(), BootID: peer.BootID},
			BootTime:    peer.BootTime,
			Init:        peer.MachineType == transport.MachineTypeInit,
		},
	}

	// A peer that missed its last probe is likely gone (a node that moved
	// away): reading it would wait out every call's timeout in each round.
	// Its facts are unknown, which is what a failed read gives anyway.
	if peer.Misses > 0 {
		why := fmt.Sprintf("did not answer its last %d probe(s)", peer.Misses)
		facts.Signs = election.Signs{Unknown: []string{peer.Node.Addr().String() + ": " + why}}
		facts.StatusState, facts.StatusErr = election.StatusUnreadable, why

		return facts
	}

	// The status file first, then the etcd signs: the status, which names
	// the machine and lets a lock to it go, must not vouch for a listing
	// made before it. Read after the listing, a status of the current boot
	// proved only that /var was mounted by then: a round whose reads
	// straddled the mount (a lost request, EtcdMemberList waiting out its
	// deadline) took the listing of the bare root filesystem for the
	// leader's data, released its lock and bootstrapped a second cluster.
	// (The listing itself is proved by etcd's service entry, read before
	// and after it: ProbeEtcdSigns, normalize.)
	st, state, err := transport.ReadStatus(ctx, peer.Node, s.Settings.StatusPath, peer.BootID)
	facts.Status, facts.StatusState = st, state

	if err != nil {
		facts.StatusErr = err.Error()
	}

	facts.Signs, _ = transport.ProbeEtcdSigns(ctx, peer.Node)

	// The facts must all be of the boot the scan saw: a peer that rebooted
	// meanwhile shows the status file its last boot wrote (proof that /var
	// was mounted then) beside the data directory of its new boot, whose
	// ETCD volume may not be mounted yet and lists empty. Mixed, they
	// released a lock whose leader held etcd data.
	if now, err := peer.Node.BootID(ctx); err != nil || now != peer.BootID {
		why := fmt.Sprintf("boot id changed from %s while it was read", peer.BootID)
		if err != nil {
			why = "boot id not read again: " + err.Error()
		}

		facts.Signs = election.Signs{Unknown: []string{peer.Node.Addr().String() + ": " + why}}
		facts.Status, facts.StatusState, facts.StatusErr = nil, election.StatusUnreadable, why
	}

	return facts
}

// selfInit: this node's machine type is init, by its machine config or by
// COSI (read every round: the config may not tell, with talosconfig
// credentials). A failed read leaves the config's word.
func (s *Session) selfInit(ctx context.Context) bool {
	if s.machineType == transport.MachineTypeInit {
		return true
	}

	mt, err := s.local.MachineType(ctx)

	return err == nil && mt == transport.MachineTypeInit
}

// decide runs one round: observe, Step, persist the new status BEFORE any
// action, so that a crash never loses a lock or an intent.
func (s *Session) decide(ctx context.Context) (election.Observation, election.Decision, error) {
	obs, err := s.observe(ctx)
	if err != nil {
		return obs, election.Decision{}, err
	}

	next, decision := election.Step(s.status, obs)
	next.Reason = decision.Reason

	if err := s.persist(next); err != nil {
		return obs, decision, err
	}

	s.Log.Debug().
		Str("decision", decision.Kind.String()).
		Str("reason", decision.Reason).
		Str("phase", string(next.Phase)).
		Msg("protocol round")

	if decision.Kind == election.StandDown {
		return obs, decision, errStoodDown // whatever state asked (standdown.go)
	}

	return obs, decision, nil
}

// rescanAndDecide is the round of every state after Elect: the view is
// scanned again (late joiners, lost peers, and peers that rebooted, whose
// new boot ids a stale view would never match) before the protocol runs.
func (s *Session) rescanAndDecide(ctx context.Context) (election.Observation, election.Decision, error) {
	result, err := s.scanner.Scan(ctx)
	if err != nil {
		return election.Observation{}, election.Decision{}, fmt.Errorf("rescan: %w", err)
	}

	s.peers, s.initMembers = result.ControlPlane, result.InitMembers

	return s.decide(ctx)
}

// machinesWith counts the machines of a quorum among this node and peers.
func (s *Session) machinesWith(peers []discovery.Peer) int {
	return MachinesWith(s.status.Incarnation, peers)
}

// MachinesWith counts the machines of a quorum among self and peers
// (election.Machines): one per boot id, so that an address forwarding to a
// peer (a VIP) or to self is not another node.
func MachinesWith(self election.Incarnation, peers []discovery.Peer) int {
	view := make([]election.Candidate, 0, 1+len(peers))
	view = append(view, election.Candidate{Incarnation: self})

	for _, p := range peers {
		view = append(view, election.Candidate{Incarnation: election.Incarnation{IP: p.Addr, BootID: p.BootID}})
	}

	return election.Machines(view)
}

// refreshAndDecide is the round of the states that act on a decided
// bootstrap (Bootstrap, and the resend in AwaitEtcd): the known peers are
// probed again, so that a peer that rebooted is seen with its new boot id
// and its resumed lock counts; no sweep, which would wait out every silent
// address for SCAN_TIMEOUT just before the send.
//
// A peer that discovery dropped (it was down for several probes, or came
// back at another address) is found only by a sweep: when the refresh
// knows fewer peers than the last round, or too few for a quorum, the round
// sweeps after all, or a retried Bootstrap would wait for that peer's lock
// for ever.
func (s *Session) refreshAndDecide(ctx context.Context) (election.Observation, election.Decision, error) {
	result, err := s.scanner.Refresh(ctx)
	if err != nil {
		return election.Observation{}, election.Decision{}, fmt.Errorf("refresh peers: %w", err)
	}

	if len(result.ControlPlane) < len(s.peers) || s.machinesWith(result.ControlPlane) < s.Settings.Quorum {
		return s.rescanAndDecide(ctx)
	}

	s.peers, s.initMembers = result.ControlPlane, result.InitMembers

	return s.decide(ctx)
}

// persist saves a status (stamped with the current state and time) and
// adopts it once it is durable, or once peers can read it: a lock that a
// failed save still published may be counted by its leader, so this node
// must hold it too (the state fails and retries from the adopted status).
//
// A status that says what the last durable save said (its time apart) is
// not written again: a waiting node runs a round every few seconds, and
// rewriting an unchanged file each time only wears the disk (and made the
// status file's bytes new each round, so that no peer's decoding memo
// could hit). Only a save that returned nil counts as durable: after a
// failed one, published or not, the next round writes again.
func (s *Session) persist(st election.Status) error {
	st.FSMState = string(s.state)
	st.UpdatedAt = s.Clock.Now()

	if s.durable && sameApartFromTime(st, s.status) {
		return nil
	}

	s.durable = false

	if err := s.Store.Save(st); err != nil {
		if errors.Is(err, statusfile.ErrPublished) {
			s.adopt(st)
		}

		return fmt.Errorf("save status file: %w", err)
	}

	s.adopt(st)
	s.durable = true

	return nil
}

// sameApartFromTime: a and b differ at most in UpdatedAt. DeepEqual errs on
// the safe side: two equal instants with different monotonic readings
// compare unequal, which costs one write.
func sameApartFromTime(a, b election.Status) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}

	return reflect.DeepEqual(a, b)
}

// adopt makes st the status this session acts on.
func (s *Session) adopt(st election.Status) {
	s.status = st

	if s.Adopted != nil {
		s.Adopted(st)
	}
}
