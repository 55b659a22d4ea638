package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// Defaults of ScannerOptions.
const (
	// DefaultScanConcurrency: see the package documentation for the
	// measurements behind it.
	DefaultScanConcurrency = 256
	DefaultScanTimeout     = 2 * time.Second
	DefaultMissThreshold   = 3
)

// ScannerOptions configure a Scanner.
type ScannerOptions struct {
	// Identity is presented and trusted in the TLS handshake of every probe.
	Identity transport.Identity
	// Dialer opens the apid connection of a peer that passed the handshake.
	Dialer transport.Dialer
	// Port is apid's port; transport.APIDPort when 0.
	Port uint16
	// Timeout bounds the probe of one address (TCP, TLS and the RPCs);
	// DefaultScanTimeout when 0.
	Timeout time.Duration
	// Concurrency is the number of probes in flight; DefaultScanConcurrency
	// when 0. Memory grows with it, not with the size of the range.
	Concurrency int
	// MissThreshold is the number of consecutive failed re-probes after
	// which a known peer is dropped; DefaultMissThreshold when 0.
	MissThreshold int
	// Exclude lists addresses never swept: the node's own. ProbeSelf adds
	// its address, and results always leave out self's boot ID, so a
	// second address of this node in the range is not a peer either.
	Exclude []netip.Addr
	Logger  zerolog.Logger
}

// Result is one scan round.
type Result struct {
	// ControlPlane and Workers are the peers of this cluster, sorted by
	// address, self excluded. Known peers stay listed while their misses
	// are under the threshold (see Peer.Misses).
	ControlPlane []Peer
	Workers      []Peer
	Probed       int // addresses probed this round, re-probes included
	Silent       int // nothing accepted a connection
	Foreign      int // certificate does not chain to the cluster CA
	Failed       int // answered, but the handshake or the RPCs failed
	Duration     time.Duration
}

// Scanner finds the nodes of this cluster and keeps the connections to the
// ones it knows between scans. Scan and ProbeSelf must not be called
// concurrently with each other or with Close.
//
// A probe outlives the round that started it: a round may end before its
// probes (ScanUntil, once the caller has what it waits for), and the probes
// still running go on; their answers are folded into the next round. No
// address has two probes in flight, and at most Concurrency probes run at
// once, whatever the rounds.
type Scanner struct {
	prober
	concurrency int
	threshold   int
	log         zerolog.Logger

	sem  chan struct{}
	life context.Context //nolint:containedctx // the probes' lifetime: until Close
	stop context.CancelFunc
	wg   sync.WaitGroup
	wake chan struct{} // a probe finished, or a round's launches ended

	mu      sync.Mutex
	exclude map[netip.Addr]bool
	known   map[netip.Addr]*Peer
	self    *Peer
	busy    map[netip.Addr]bool // a probe of the address is in flight
	done    []outcome           // finished probes not folded yet
	round   *roundState         // the round in progress, if any
}

// roundState is what a round waits for (mu held).
type roundState struct {
	waiting  map[netip.Addr]bool // launched or in flight, not folded yet
	fresh    map[netip.Addr]bool // answered (and folded) during the round
	known    map[netip.Addr]bool // known at the start: re-probed, not swept
	launched bool                // every target of the round has been started
}

// NewScanner checks the options and returns an idle Scanner.
func NewScanner(opts ScannerOptions) (*Scanner, error) {
	if opts.Identity == nil {
		return nil, errors.New("new scanner: no identity")
	}
	if opts.Dialer == nil {
		return nil, errors.New("new scanner: no dialer")
	}
	if opts.Timeout < 0 || opts.Concurrency < 0 || opts.MissThreshold < 0 {
		return nil, fmt.Errorf("new scanner: negative timeout (%v), concurrency (%d) or miss threshold (%d)",
			opts.Timeout, opts.Concurrency, opts.MissThreshold)
	}
	life, stop := context.WithCancel(context.Background())
	s := &Scanner{
		prober: prober{
			tls:     transport.TLSConfig(opts.Identity),
			dial:    (&net.Dialer{}).DialContext,
			dialer:  opts.Dialer,
			port:    cmp.Or(opts.Port, transport.APIDPort),
			timeout: cmp.Or(opts.Timeout, DefaultScanTimeout),
		},
		concurrency: cmp.Or(opts.Concurrency, DefaultScanConcurrency),
		threshold:   cmp.Or(opts.MissThreshold, DefaultMissThreshold),
		exclude:     make(map[netip.Addr]bool, len(opts.Exclude)),
		log:         opts.Logger,
		known:       make(map[netip.Addr]*Peer),
		busy:        make(map[netip.Addr]bool),
		life:        life,
		stop:        stop,
		wake:        make(chan struct{}, 1),
	}
	s.sem = make(chan struct{}, s.concurrency)
	for _, a := range opts.Exclude {
		s.exclude[a.Unmap()] = true
	}
	return s, nil
}

// ProbeSelf describes the local node through the same probe as any peer,
// so that its boot time is the same SystemStat number the others compare.
// addr is an address of the local apid (LocalIP). The connection is kept
// for the next call, and the address and boot ID are excluded from scan
// results from then on.
func (s *Scanner) ProbeSelf(ctx context.Context, addr netip.Addr) (Peer, error) {
	addr = addr.Unmap()
	s.mu.Lock()
	s.exclude[addr] = true
	self := s.self
	s.mu.Unlock()
	var (
		p   Peer
		err error
	)
	if self != nil && self.Addr == addr {
		p, err = s.reprobe(ctx, self.Node)
	} else {
		if self != nil {
			self.Node.Close() //nolint:errcheck // replaced
			s.mu.Lock()
			s.self = nil
			s.mu.Unlock()
		}
		p, err = s.probe(ctx, addr)
	}
	if err != nil {
		return Peer{}, fmt.Errorf("probe self: %w", err)
	}
	s.mu.Lock()
	s.self = &p
	s.mu.Unlock()
	return p, nil
}

type outcome struct {
	addr  netip.Addr
	known bool
	peer  Peer
	err   error
}

// Scan re-probes the known peers and sweeps targets, at most Concurrency
// probes at a time, and returns once every probe it started has ended;
// addresses already known or excluded are not swept again. On cancellation
// it returns what it has with ctx's error; the probes it started go on and
// count in the next round.
func (s *Scanner) Scan(ctx context.Context, targets iter.Seq[netip.Addr]) (Result, error) {
	return s.ScanUntil(ctx, targets, nil)
}

// ScanUntil is Scan that returns as soon as enough holds for the peers
// that answered during this round (control-plane and workers; answers that
// arrived since the last round count): the round then proceeds on them,
// and the probes still running, the silent addresses' among them, go on.
// Their answers are folded into the next round. enough nil waits for every
// probe, as Scan does. The Result lists every known peer, as Scan's.
func (s *Scanner) ScanUntil(ctx context.Context, targets iter.Seq[netip.Addr], enough func(Result) bool) (Result, error) {
	start := time.Now()
	var res Result
	rs := &roundState{waiting: map[netip.Addr]bool{}, fresh: map[netip.Addr]bool{}, known: map[netip.Addr]bool{}}

	s.mu.Lock()
	s.round = rs
	s.foldLocked(&res)
	var reprobes []*Peer
	for _, addr := range slices.SortedFunc(maps.Keys(s.known), netip.Addr.Compare) {
		rs.waiting[addr], rs.known[addr] = true, true
		if !s.busy[addr] {
			s.busy[addr] = true
			reprobes = append(reprobes, s.known[addr])
		}
	}
	s.mu.Unlock()

	s.wg.Go(func() { s.launch(ctx, rs, reprobes, targets) })

	defer func() {
		s.mu.Lock()
		s.round = nil
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		s.foldLocked(&res)
		finished := rs.launched && len(rs.waiting) == 0
		proceed := enough != nil && enough(s.freshLocked(rs))
		if finished || proceed || ctx.Err() != nil {
			s.reportLocked(&res)
			s.mu.Unlock()
			res.Duration = time.Since(start)
			return res, ctx.Err()
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
		}
	}
}

// launch starts a round's probes: the known peers' re-probes, then the
// targets not known, excluded or in flight already. It stops starting new
// ones when ctx ends; the ones started run to their own timeout.
func (s *Scanner) launch(ctx context.Context, rs *roundState, reprobes []*Peer, targets iter.Seq[netip.Addr]) {
	defer func() {
		s.mu.Lock()
		rs.launched = true
		for _, p := range reprobes { // not started: cancelled
			delete(s.busy, p.Addr)
			delete(rs.waiting, p.Addr)
		}
		s.mu.Unlock()
		s.signal()
	}()
	acquire := func() bool {
		if ctx.Err() != nil {
			return false
		}
		select {
		case s.sem <- struct{}{}:
			return true
		case <-ctx.Done():
		case <-s.life.Done():
		}
		return false
	}
	for len(reprobes) > 0 {
		if !acquire() {
			return
		}
		addr, node := reprobes[0].Addr, reprobes[0].Node
		reprobes = reprobes[1:]
		s.wg.Go(func() {
			p, err := s.reprobe(s.life, node)
			s.finish(outcome{addr: addr, known: true, peer: p, err: err})
		})
	}
	if targets == nil {
		return
	}
	for addr := range targets {
		addr = addr.Unmap()
		s.mu.Lock()
		if s.busy[addr] {
			rs.waiting[addr] = true // an earlier round's probe: its answer counts
		}
		// A peer dropped during this round is swept again only by the next.
		skip := s.exclude[addr] || s.known[addr] != nil || s.busy[addr] || rs.known[addr]
		s.mu.Unlock()
		if skip {
			continue
		}
		if !acquire() {
			return
		}
		s.mu.Lock()
		s.busy[addr] = true
		rs.waiting[addr] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			p, err := s.probe(s.life, addr)
			s.finish(outcome{addr: addr, peer: p, err: err})
		})
	}
}

// finish hands a probe's outcome to the round in progress, or to the next.
func (s *Scanner) finish(o outcome) {
	<-s.sem
	s.mu.Lock()
	delete(s.busy, o.addr)
	s.done = append(s.done, o)
	s.mu.Unlock()
	s.signal()
}

func (s *Scanner) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// skips reports whether a sweep of addr would start no probe (mu not held).
func (s *Scanner) skips(addr netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exclude[addr] || s.known[addr] != nil || s.busy[addr]
}

// freshLocked lists the peers that answered during the round rs.
func (s *Scanner) freshLocked(rs *roundState) Result {
	var r Result
	s.reportLocked(&r)
	keep := func(ps []Peer) []Peer {
		return slices.DeleteFunc(ps, func(p Peer) bool {
			if rs.fresh[p.Addr] {
				return false
			}
			return !slices.ContainsFunc(p.Aliases, func(a netip.Addr) bool { return rs.fresh[a] })
		})
	}
	r.ControlPlane, r.Workers = keep(r.ControlPlane), keep(r.Workers)
	return r
}

// foldLocked folds the finished probes into the known peers and the
// round's counts.
func (s *Scanner) foldLocked(res *Result) {
	done := s.done
	s.done = nil
	var found []outcome
	for _, o := range done {
		if s.round != nil {
			delete(s.round.waiting, o.addr)
			if o.err == nil {
				s.round.fresh[o.addr] = true
			}
		}
		res.Probed++
		switch {
		case o.err == nil || o.known:
			found = append(found, o)
		case errors.Is(o.err, ErrSilent):
			res.Silent++
		case errors.Is(o.err, ErrForeign):
			res.Foreign++
			s.log.Debug().Err(o.err).Stringer("addr", o.addr).Msg("foreign node on the apid port")
		default:
			res.Failed++
			s.log.Debug().Err(o.err).Stringer("addr", o.addr).Msg("probe failed")
		}
	}
	s.update(found)
}

// update folds a round's outcomes into the known peers (mu held).
func (s *Scanner) update(outcomes []outcome) {
	for _, o := range outcomes {
		if !o.known {
			p := o.peer
			if old := s.known[o.addr]; old != nil {
				old.Node.Close() //nolint:errcheck // replaced by the newer probe
			}
			s.known[o.addr] = &p
			s.log.Debug().Stringer("addr", o.addr).Str("machineType", string(p.MachineType)).
				Time("bootTime", p.BootTime).Msg("peer found")
			continue
		}
		k := s.known[o.addr]
		if k == nil {
			if o.err == nil {
				o.peer.Node.Close() //nolint:errcheck // dropped meanwhile
			}
			continue
		}
		if o.err == nil {
			if k.BootID != o.peer.BootID {
				s.log.Info().Stringer("addr", o.addr).Str("oldBootID", k.BootID).
					Str("bootID", o.peer.BootID).Msg("peer rebooted")
			}
			*k = o.peer
			continue
		}
		if s.life.Err() != nil {
			continue // closing, not the peer's failure
		}
		k.Misses++
		if k.Misses < s.threshold {
			s.log.Debug().Err(o.err).Stringer("addr", o.addr).Int("misses", k.Misses).Msg("known peer did not answer")
			continue
		}
		s.log.Info().Err(o.err).Stringer("addr", o.addr).Int("misses", k.Misses).Msg("peer lost")
		k.Node.Close() //nolint:errcheck // the peer is gone
		delete(s.known, o.addr)
	}
}

// report lists the known peers: self excluded, one address per boot ID (a
// node with two addresses must count once towards quorum; the lowest
// address names it, IPv4 before IPv6, so every observer picks the same
// one, and the others are its Aliases).
func (s *Scanner) reportLocked(res *Result) {
	var selfID string
	if s.self != nil {
		selfID = s.self.BootID
	}
	type slot struct {
		workers bool
		i       int
	}
	seen := make(map[string]slot, len(s.known))
	for _, addr := range slices.SortedFunc(maps.Keys(s.known), netip.Addr.Compare) {
		p := *s.known[addr]
		if s.exclude[addr] || p.BootID == selfID {
			continue
		}
		if at, ok := seen[p.BootID]; ok {
			list := res.ControlPlane
			if at.workers {
				list = res.Workers
			}
			list[at.i].Aliases = append(list[at.i].Aliases, addr)
			continue
		}
		p.Aliases = nil
		if p.MachineType.IsControlPlane() {
			seen[p.BootID] = slot{i: len(res.ControlPlane)}
			res.ControlPlane = append(res.ControlPlane, p)
		} else {
			seen[p.BootID] = slot{workers: true, i: len(res.Workers)}
			res.Workers = append(res.Workers, p)
		}
	}
}

// Close stops the probes in flight, waits for them, and closes every
// connection the scanner holds.
func (s *Scanner) Close() error {
	s.stop()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, o := range s.done {
		if o.err == nil && !o.known {
			o.peer.Node.Close() //nolint:errcheck // never folded
		}
	}
	s.done = nil
	for addr, p := range s.known {
		if err := p.Node.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", addr, err))
		}
		delete(s.known, addr)
	}
	if s.self != nil {
		if err := s.self.Node.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close self: %w", err))
		}
		s.self = nil
	}
	return errors.Join(errs...)
}
