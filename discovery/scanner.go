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
type Scanner struct {
	prober
	concurrency int
	threshold   int
	exclude     map[netip.Addr]bool
	log         zerolog.Logger

	known map[netip.Addr]*Peer
	self  *Peer
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
	}
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
	s.exclude[addr] = true
	var (
		p   Peer
		err error
	)
	if s.self != nil && s.self.Addr == addr {
		p, err = s.reprobe(ctx, s.self.Node)
	} else {
		if s.self != nil {
			s.self.Node.Close() //nolint:errcheck // replaced
			s.self = nil
		}
		p, err = s.probe(ctx, addr)
	}
	if err != nil {
		return Peer{}, fmt.Errorf("probe self: %w", err)
	}
	s.self = &p
	return p, nil
}

type outcome struct {
	addr  netip.Addr
	known bool
	peer  Peer
	err   error
}

// Scan re-probes the known peers and sweeps targets, at most Concurrency
// probes at a time; addresses already known or excluded are not swept
// again. On cancellation it returns what it has with ctx's error; the
// probes cut short do not count as misses.
func (s *Scanner) Scan(ctx context.Context, targets iter.Seq[netip.Addr]) (Result, error) {
	start := time.Now()
	var (
		mu       sync.Mutex
		outcomes []outcome // known re-probes, and peers found
		res      Result
	)
	record := func(o outcome) {
		mu.Lock()
		defer mu.Unlock()
		res.Probed++
		switch {
		case o.err == nil || o.known:
			outcomes = append(outcomes, o)
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

	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
	run := func(f func()) bool {
		if ctx.Err() != nil {
			return false
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f()
		})
		return true
	}

	knownAddrs := slices.SortedFunc(maps.Keys(s.known), netip.Addr.Compare)
	for _, addr := range knownAddrs {
		node := s.known[addr].Node
		if !run(func() {
			p, err := s.reprobe(ctx, node)
			record(outcome{addr: addr, known: true, peer: p, err: err})
		}) {
			break
		}
	}
	if ctx.Err() == nil && targets != nil {
		for addr := range targets {
			addr = addr.Unmap()
			if s.exclude[addr] || s.known[addr] != nil {
				continue
			}
			if !run(func() {
				p, err := s.probe(ctx, addr)
				record(outcome{addr: addr, peer: p, err: err})
			}) {
				break
			}
		}
	}
	wg.Wait()

	s.update(ctx, outcomes)
	s.report(&res)
	res.Duration = time.Since(start)
	return res, ctx.Err()
}

// update folds a round's outcomes into the known peers.
func (s *Scanner) update(ctx context.Context, outcomes []outcome) {
	for _, o := range outcomes {
		if !o.known {
			p := o.peer
			s.known[o.addr] = &p
			s.log.Debug().Stringer("addr", o.addr).Str("machineType", string(p.MachineType)).
				Time("bootTime", p.BootTime).Msg("peer found")
			continue
		}
		k := s.known[o.addr]
		if o.err == nil {
			if k.BootID != o.peer.BootID {
				s.log.Info().Stringer("addr", o.addr).Str("oldBootID", k.BootID).
					Str("bootID", o.peer.BootID).Msg("peer rebooted")
			}
			*k = o.peer
			continue
		}
		if ctx.Err() != nil {
			continue // our deadline, not the peer's failure
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
func (s *Scanner) report(res *Result) {
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

// Close closes every connection the scanner holds.
func (s *Scanner) Close() error {
	var errs []error
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
