package simulation

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// scanner models discovery.Combined over a discovery.Scanner sweeping the
// simulated /24, which the sweep's pace covers whole:
//
//   - a probe outlives its round: it ends with its answer or at
//     SCAN_TIMEOUT, and its outcome is folded into the round in progress
//     then, or into the next one; an address never has two probes in
//     flight;
//   - every round re-probes every known peer whose probe is not in flight,
//     and waits for the probes of the known peers; a scan round also
//     sweeps the range at most once per pace window
//     (discovery.PaceWindows × SCAN_TIMEOUT) and waits for those probes;
//   - a scan round ends as soon as the peers that answered since the last
//     round show a quorum (self included), a refresh once all its probes
//     ended;
//   - a known peer stays listed until discovery.DefaultMissThreshold of its
//     probes in a row failed; a peer counts only when its apid certificate
//     chains to the cluster CA; its boot id, boot time and machine type
//     come from its own apid; this node's own boot id is never a peer,
//     whatever address answers with it.
//
// Addresses where nothing answers are not modelled one by one: the range
// always has some, so a pass always uses its pace window.
type scanner struct {
	w     *world
	d     *daemonRun
	clock *nodeClock
	nodes map[netip.Addr]*apiNode
	known map[netip.Addr]*knownPeer
	// flight: the addresses with a probe in flight; done: the probes that
	// ended and are not folded yet; round: the round in progress.
	flight map[netip.Addr]bool
	done   []probeOutcome
	round  *simRound
	// opened: the node's wall clock when the current pace window began
	// (zero: none); swept: the window's pass has run.
	opened time.Time
	swept  bool
	scans  int
}

type knownPeer struct {
	peer   probeAnswer
	misses int
}

type probeAnswer struct {
	ok, cp, foreign bool
	bootID          string
	bootTime        time.Time
}

// probeOutcome is one probe that ended: answer.ok false when it failed.
type probeOutcome struct {
	addr   netip.Addr
	known  bool // a re-probe of a known peer
	answer probeAnswer
}

// simRound is what a round waits for, as discovery.Scanner's roundState.
type simRound struct {
	c         *call
	streaming bool                // a scan: ends once a quorum answered
	waiting   map[netip.Addr]bool // probes the round waits for
	fresh     map[netip.Addr]bool // answered since the last round
	probed    int
	foreign   int
}

var _ states.Scanner = (*scanner)(nil)

func newScanner(w *world, d *daemonRun, clock *nodeClock) *scanner {
	return &scanner{w: w, d: d, clock: clock, nodes: map[netip.Addr]*apiNode{}, known: map[netip.Addr]*knownPeer{}, flight: map[netip.Addr]bool{}}
}

// NextDelay is discovery.Combined.NextDelay: below quorum and in the fast
// phase, the pause lasts until the pace's next window opens.
func (s *scanner) NextDelay(known, attempt int) time.Duration {
	cfg := s.d.cfg

	d := discovery.NextScanDelay(known, cfg.Quorum, attempt, cfg.ScanTimeout, cfg.ScanInterval)
	if known >= cfg.Quorum || d >= cfg.ScanInterval {
		return d
	}

	now := s.clock.Now()

	s.w.mu.Lock()
	until := s.untilNextWindow(now)
	s.w.mu.Unlock()

	return max(discovery.FirstRescanDelay, min(until, s.window()))
}

func (s *scanner) window() time.Duration { return discovery.PaceWindows * s.d.cfg.ScanTimeout }

// untilNextWindow: discovery.Combined.UntilNextWindow (mu held).
func (s *scanner) untilNextWindow(now time.Time) time.Duration {
	if s.opened.IsZero() {
		return 0
	}

	return max(0, s.window()-now.Sub(s.opened))
}

// Pause sleeps: the simulated network has no discovery members to watch.
func (s *scanner) Pause(ctx context.Context, d time.Duration) error {
	return states.Sleep(ctx, s.clock, d)
}

func (s *scanner) Close() error { return nil }

// CheckAddress: the model moves a node's address only across reboots.
func (s *scanner) CheckAddress() error { return nil }

func (s *scanner) Scan(ctx context.Context) (discovery.Round, error) {
	return s.run(ctx, "scan")
}

// Refresh re-probes the known peers only, as discovery.Scanner.Scan with no
// targets does: it ends when their probes all ended.
func (s *scanner) Refresh(ctx context.Context) (discovery.Round, error) {
	return s.run(ctx, "refresh")
}

// run is one round (see scanner).
func (s *scanner) run(ctx context.Context, kind string) (discovery.Round, error) {
	w := s.w

	w.mu.Lock()
	s.scans++
	key := requestKey(s.d.keyPrefix, kind+"|", uint64(s.scans), 6, "")
	w.mu.Unlock()

	v, err := w.park(ctx, s.d, key, func(c *call) {
		rs := &simRound{c: c, streaming: kind == "scan", waiting: map[netip.Addr]bool{}, fresh: map[netip.Addr]bool{}}
		s.round = rs
		s.fold()

		for _, addr := range slices.SortedFunc(maps.Keys(s.known), netip.Addr.Compare) {
			rs.waiting[addr] = true
			if !s.flight[addr] {
				s.probe(addr, true)
			}
		}

		if kind == "scan" && s.sweep() {
			// The range's silent addresses: their probes time out.
			rs.waiting[silent] = true
			w.at(s.d.cfg.ScanTimeout, func() {
				s.done = append(s.done, probeOutcome{addr: silent})
				s.check()
			})
		}

		s.check()
	})
	if err != nil {
		return discovery.Round{}, err
	}

	return s.result(v.(discovery.Round)), nil
}

// silent stands for the addresses of the range where nothing answers.
var silent netip.Addr

// sweep probes the range when the pace lets this round sweep: the pass of
// a new window; addresses known or in flight are skipped, as
// discovery.Combined.sweepPart skips them (scheduler side, mu held).
func (s *scanner) sweep() bool {
	now := s.d.node.wall(s.w.now)
	if s.opened.IsZero() || now.Sub(s.opened) >= s.window() {
		s.opened, s.swept = now, false
	}

	if s.swept {
		return false
	}

	s.swept = true

	for _, addr := range s.w.rangeAddrs() {
		if addr != s.d.node.ip && s.known[addr] == nil && !s.flight[addr] {
			s.round.waiting[addr] = true
			s.probe(addr, false)
		}
	}

	return true
}

// probe starts one probe of addr: it ends with the peer's answer, or fails
// at SCAN_TIMEOUT (scheduler side, mu held).
func (s *scanner) probe(addr netip.Addr, known bool) {
	w := s.w
	self := s.d.node
	s.flight[addr] = true

	ended := false
	end := func(a probeAnswer) {
		if ended {
			return
		}

		ended = true
		delete(s.flight, addr)
		s.done = append(s.done, probeOutcome{addr: addr, known: known, answer: a})
		s.check()
	}

	w.at(s.d.cfg.ScanTimeout, func() { end(probeAnswer{}) })

	m := w.nodeAt(addr)
	if m == nil || w.lost() {
		return
	}

	w.at(w.delay(self, m), func() {
		if !w.reachable(self, m) || !m.apidUp {
			return
		}

		a := probeAnswer{ok: true, foreign: m.foreign, cp: m.cp, bootID: m.bootID, bootTime: time.Unix(m.bootTimeUnix(), 0)}

		w.at(w.delay(m, self), func() {
			if w.reachable(self, m) {
				end(a)
			}
		})
	})
}

// check folds the ended probes into the round in progress and ends it
// when it has what it waits for (scheduler side, mu held).
func (s *scanner) check() {
	rs := s.round
	if rs == nil || rs.c.answered {
		return
	}

	s.fold()

	if len(rs.waiting) > 0 && (!rs.streaming || !s.enough(rs)) {
		return
	}

	s.round = nil
	s.w.answer(rs.c, s.report(rs), nil)
}

// fold folds the ended probes into the known peers, as
// discovery.Scanner.update does (scheduler side, mu held).
func (s *scanner) fold() {
	rs := s.round
	done := s.done
	s.done = nil

	for _, o := range done {
		delete(rs.waiting, o.addr)

		if o.addr == silent {
			continue
		}

		rs.probed++

		a := o.answer
		k := s.known[o.addr]

		if a.ok && a.foreign {
			rs.foreign++
		}

		switch {
		case a.ok && !a.foreign:
			rs.fresh[o.addr] = true
			s.known[o.addr] = &knownPeer{peer: a}
		case k != nil && o.known:
			k.misses++
			if k.misses >= discovery.DefaultMissThreshold {
				delete(s.known, o.addr)
			}
		}
	}
}

// self: the answer is this node's own boot, at another address.
func (s *scanner) self(a probeAnswer) bool { return a.bootID == s.d.node.bootID }

// enough: the control-plane peers that answered since the last round,
// one per boot id, make a quorum with self, as the daemon's quorum
// function asks of discovery.Scanner.ScanUntil (mu held).
func (s *scanner) enough(rs *simRound) bool {
	boots := map[string]bool{}

	for addr := range rs.fresh {
		if k := s.known[addr]; k != nil && k.peer.cp && !s.self(k.peer) {
			boots[k.peer.bootID] = true
		}
	}

	return 1+len(boots) >= s.d.cfg.Quorum
}

// report lists the known peers at the end of round rs (mu held): the
// addresses are sorted, as discovery.Scanner reports them.
func (s *scanner) report(rs *simRound) discovery.Round {
	res := discovery.Round{Result: discovery.Result{Probed: rs.probed, Foreign: rs.foreign}}

	for _, addr := range slices.SortedFunc(maps.Keys(s.known), netip.Addr.Compare) {
		k := s.known[addr]
		if s.self(k.peer) {
			continue
		}

		peer := discovery.Peer{
			Addr: addr, BootTime: k.peer.bootTime, BootID: k.peer.bootID,
			MachineType: transport.MachineTypeControlPlane, Misses: k.misses,
		}

		if !k.peer.cp {
			peer.MachineType = transport.MachineTypeWorker
			res.Workers = append(res.Workers, peer)

			continue
		}

		res.ControlPlane = append(res.ControlPlane, peer)
	}

	return res
}

// result gives the reported peers their simulated apid connections
// (daemon goroutine).
func (s *scanner) result(res discovery.Round) discovery.Round {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()

	for i, p := range res.ControlPlane {
		node, ok := s.nodes[p.Addr]
		if !ok {
			node = &apiNode{w: w, d: s.d, addr: p.Addr}
			s.nodes[p.Addr] = node
		}

		res.ControlPlane[i].Node = node
	}

	return res
}

// rangeAddrs is every address that answers in the segment (mu held).
func (w *world) rangeAddrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(w.nodes)+len(w.aliases))

	for _, n := range w.nodes {
		out = append(out, n.ip)
	}

	for a := range w.aliases {
		out = append(out, a)
	}

	slices.SortFunc(out, netip.Addr.Compare)

	return out
}
