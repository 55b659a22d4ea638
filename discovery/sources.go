package discovery

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// SourceName names a discovery source in TALOS_AUTO_BOOTSTRAP_DISCOVERY.
type SourceName string

// The sources. Whatever names an address, the peer behind it counts only
// after the same probe: its apid certificate chains to the cluster CA, and
// its boot id, boot time and role come from its own apid.
const (
	// SourceMembers is Talos cluster discovery (COSI Affiliates and Members
	// read through the local apid): routed subnets and IPv6 included.
	SourceMembers SourceName = "members"
	// SourceScan sweeps the local network or TALOS_AUTO_BOOTSTRAP_SCAN_CIDR.
	SourceScan SourceName = "scan"
	// SourcePeers is the static TALOS_AUTO_BOOTSTRAP_PEERS list.
	SourcePeers SourceName = "peers"
)

// ParseSources parses a comma-separated list of source names (white space
// allowed, duplicates dropped, order kept).
func ParseSources(s string) ([]SourceName, error) {
	var out []SourceName

	for f := range strings.SplitSeq(s, ",") {
		name := SourceName(strings.ToLower(strings.TrimSpace(f)))

		switch name {
		case SourceMembers, SourceScan, SourcePeers:
		case "":
			continue
		default:
			return nil, fmt.Errorf("unknown source %q (want members, scan or peers)", f)
		}

		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}

	if len(out) == 0 {
		return nil, errors.New("no source (want a list of members, scan and peers)")
	}

	return out, nil
}

// Source names the addresses one round probes.
type Source interface {
	Name() SourceName
	// Targets lists this round's addresses. A finite list has a Count and
	// no Range; a sweep has its Range, and is generated lazily.
	Targets(ctx context.Context) (Targets, error)
}

// Fixed is a source whose targets never change: a sweep or PEERS.
type Fixed struct {
	SourceName SourceName
	List       Targets
}

// Name implements Source.
func (f Fixed) Name() SourceName { return f.SourceName }

// Targets implements Source.
func (f Fixed) Targets(context.Context) (Targets, error) { return f.List, nil }

// Members reads Talos cluster discovery through the local apid. Entries of
// a vanished node live on for about 30 minutes: they are only addresses to
// probe, never candidates by themselves.
type Members struct {
	Lister transport.MemberLister
}

// Name implements Source.
func (Members) Name() SourceName { return SourceMembers }

// Targets implements Source.
func (m Members) Targets(ctx context.Context) (Targets, error) {
	list, err := m.Lister.ClusterMembers(ctx)
	if err != nil {
		return Targets{}, fmt.Errorf("read cluster discovery: %w", err)
	}

	addrs := MemberAddrs(list)

	var inits [][]netip.Addr

	for _, m := range list {
		if m.MachineType == transport.MachineTypeInit {
			if a := MemberAddrs([]transport.Member{m}); len(a) > 0 {
				inits = append(inits, a)
			}
		}
	}

	return Targets{Addrs: slices.Values(addrs), Count: uint64(len(addrs)), Init: inits}, nil
}

// MemberAddrs are the addresses of discovery members worth probing: unicast
// host addresses (loopback too, as PEERS accepts it: this node's own are
// excluded like any of its addresses), never link-local (they name no node
// without a zone, and every link has fe80::/10), sorted and deduplicated.
func MemberAddrs(members []transport.Member) []netip.Addr {
	var out []netip.Addr

	for _, m := range members {
		for _, a := range m.Addresses {
			a = a.Unmap().WithZone("")
			if (a.IsGlobalUnicast() || a.IsLoopback()) && !a.IsLinkLocalUnicast() && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}

	slices.SortFunc(out, netip.Addr.Compare)

	return out
}

// Combined runs rounds of one Scanner over several sources: the addresses
// of every source that answers are probed together, so that a node reached
// at several addresses (found by the sweep and by discovery, IPv4 and
// IPv6) is one candidate, named by its boot id. A failing source is
// logged once and skipped, never fatal.
type Combined struct {
	scanner *Scanner
	sources []Source
	log     zerolog.Logger
	clock   clockwork.Clock
	// pollEvery paces Pause's look at the sources that change (members).
	pollEvery time.Duration
	// enough ends a round before its sweeps once the listed addresses
	// already show what the caller waits for (a quorum); nil: always sweep.
	enough func(Result) bool

	failing map[SourceName]string // the failure last logged
	listed  map[netip.Addr]map[SourceName]bool
	ranges  map[SourceName]netip.Prefix
	// inits: the init nodes each source named in its last answer.
	inits map[SourceName][][]netip.Addr

	// The sweep's pass and pace (sweepPart).
	next     func() (netip.Addr, bool)
	stopPass func()
	opened   time.Time // the current pace window began
	used     int       // sweep probes begun in it
	passes   int
}

// NewCombined combines sources for scanner. pollEvery (SCAN_TIMEOUT) is
// how often Pause looks for new discovery members. enough, when set, lets
// a round skip its sweeps when the listed addresses (members, PEERS)
// already satisfy it: a sweep waits a whole SCAN_TIMEOUT for its silent
// addresses, a list only a round trip.
func NewCombined(scanner *Scanner, sources []Source, pollEvery time.Duration, enough func(Result) bool, clock clockwork.Clock, log zerolog.Logger) *Combined {
	return &Combined{
		scanner: scanner, sources: sources, log: log, clock: clock, pollEvery: pollEvery, enough: enough,
		failing: map[SourceName]string{},
		inits:   map[SourceName][][]netip.Addr{},
		listed:  map[netip.Addr]map[SourceName]bool{},
		ranges:  map[SourceName]netip.Prefix{},
	}
}

// Round is one combined scan.
type Round struct {
	Result
	// BySource counts the candidates (control-plane and worker peers) each
	// source named; a peer named by two sources counts for both.
	BySource map[SourceName]int
	// InitMembers are the Talos init nodes the sources named (the last
	// answer of each source), answering or not: each node's addresses.
	InitMembers [][]netip.Addr
}

// Scan probes the known peers and every source's targets. The listed
// addresses (members, PEERS) come first: when their answers already
// satisfy enough, the round ends there, without sweeping. Otherwise the
// round sweeps the next part of the range that the pace allows (see
// Combined.sweepPart), and ends as soon as enough holds for the peers that
// answered: the probes of the silent addresses go on, and their answers
// count in the next round.
func (c *Combined) Scan(ctx context.Context) (Round, error) {
	finite, sweeps := c.targets(ctx)

	var probed, silent, foreign, failed int

	if len(finite) > 0 && len(sweeps) > 0 && c.enough != nil {
		res, err := c.scanner.ScanUntil(ctx, slices.Values(finite), c.enough)
		if err != nil || c.enough(res) {
			return Round{Result: res, BySource: c.attribute(res), InitMembers: c.initMembers()}, err
		}

		// Probed once this round: the peers found there are known now and
		// re-probed anyway, a silent entry is not waited for twice.
		probed, silent, foreign, failed = res.Probed, res.Silent, res.Foreign, res.Failed
		finite = nil
	}

	listed := make(map[netip.Addr]bool, len(finite))

	for _, a := range finite {
		listed[a] = true
	}

	part := c.sweepPart(sweeps, listed)

	res, err := c.scanner.ScanUntil(ctx, slices.Values(slices.Concat(finite, part)), c.enough)
	res.Probed += probed
	res.Silent += silent
	res.Foreign += foreign
	res.Failed += failed

	return Round{Result: res, BySource: c.attribute(res), InitMembers: c.initMembers()}, err
}

// The sweep's pace: at most SCAN_CONCURRENCY sweep probes begin in one
// window of PaceWindows × SCAN_TIMEOUT, whatever the rounds ask; a range
// of up to SCAN_CONCURRENCY hosts (a /24 at the defaults) is swept whole
// in every window, a larger one rolls on from where the last window
// stopped. A new pass over the range begins only with a new window.
const PaceWindows = 2

// sweepPart takes the addresses this round sweeps: up to the pace's budget
// left in the current window, from where the pass stands. Addresses that
// the scanner would skip (known, excluded, in flight) and listed ones cost
// nothing. Memory: at most one budget of addresses.
func (c *Combined) sweepPart(sweeps []iter.Seq[netip.Addr], listed map[netip.Addr]bool) []netip.Addr {
	if len(sweeps) == 0 {
		return nil
	}

	now := c.clock.Now()
	budget := c.scanner.concurrency

	if c.opened.IsZero() || now.Sub(c.opened) >= c.window() {
		c.opened, c.used = now, 0
	}

	if c.next == nil {
		if c.used > 0 {
			return nil // this window's pass is done: the next begins with the next window
		}

		c.next, c.stopPass = iter.Pull(func(yield func(netip.Addr) bool) {
			for _, seq := range sweeps {
				for a := range seq {
					if !yield(a) {
						return
					}
				}
			}
		})
		c.passes++
	}

	var out []netip.Addr

	for c.used < budget {
		a, ok := c.next()
		if !ok {
			c.endPass()

			break
		}

		a = a.Unmap()
		if listed[a] || c.scanner.skips(a) {
			continue
		}

		c.used++
		out = append(out, a)
	}

	if c.used == 0 {
		c.opened = time.Time{} // nothing to sweep: no window was used
	}

	return out
}

func (c *Combined) window() time.Duration { return PaceWindows * c.scanner.timeout }

func (c *Combined) endPass() {
	if c.stopPass != nil {
		c.stopPass()
	}

	c.next, c.stopPass = nil, nil
}

// NextDelay is the Scan state's pause below quorum: NextScanDelay, shortened
// in the fast phase to the opening of the sweep's next pace window (so
// that a range the budget covers is swept every PaceWindows × SCAN_TIMEOUT),
// never under FirstRescanDelay.
func (c *Combined) NextDelay(known, quorum, attempt int, interval time.Duration) time.Duration {
	d := NextScanDelay(known, quorum, attempt, c.scanner.timeout, interval)
	if known >= quorum || d >= interval || len(c.ranges) == 0 {
		return d
	}

	return max(FirstRescanDelay, min(c.UntilNextWindow(), c.window()))
}

// UntilNextWindow is how long until the sweep's pace opens its next window
// (0 when it is open, or nothing is swept): a round then may sweep again.
func (c *Combined) UntilNextWindow() time.Duration {
	if c.opened.IsZero() {
		return 0
	}

	return max(0, c.window()-c.clock.Since(c.opened))
}

// Refresh re-probes the known peers only.
func (c *Combined) Refresh(ctx context.Context) (Round, error) {
	res, err := c.scanner.Scan(ctx, nil)

	return Round{Result: res, BySource: c.attribute(res), InitMembers: c.initMembers()}, err
}

// targets asks every source for this round's addresses.
func (c *Combined) targets(ctx context.Context) ([]netip.Addr, []iter.Seq[netip.Addr]) {
	var (
		finite []netip.Addr
		sweeps []iter.Seq[netip.Addr]
	)

	for _, src := range c.sources {
		t, err := src.Targets(ctx)
		if !c.note(src.Name(), err) {
			continue
		}

		c.inits[src.Name()] = t.Init

		if t.Addrs == nil {
			continue
		}

		if t.Range.IsValid() {
			c.ranges[src.Name()] = t.Range
			sweeps = append(sweeps, t.Addrs)

			continue
		}

		for a := range t.Addrs {
			a = a.Unmap()
			if c.listed[a] == nil {
				c.listed[a] = map[SourceName]bool{}
			}

			c.listed[a][src.Name()] = true

			if !slices.Contains(finite, a) {
				finite = append(finite, a)
			}
		}
	}

	return finite, sweeps
}

// initMembers joins the init nodes every source named last.
func (c *Combined) initMembers() [][]netip.Addr {
	var out [][]netip.Addr

	for _, name := range slices.Sorted(maps.Keys(c.inits)) {
		for _, g := range c.inits[name] {
			if !slices.ContainsFunc(out, func(o []netip.Addr) bool { return slices.Equal(o, g) }) {
				out = append(out, g)
			}
		}
	}

	return out
}

// note logs a source's failure once (and its recovery); it reports whether
// the source answered.
func (c *Combined) note(name SourceName, err error) bool {
	if err == nil {
		if _, was := c.failing[name]; was {
			delete(c.failing, name)
			c.log.Info().Str("source", string(name)).Msg("discovery source answers again")
		}

		return true
	}

	if c.failing[name] != err.Error() {
		c.failing[name] = err.Error()

		ev := c.log.Warn()
		if errors.Is(err, transport.ErrDiscoveryDisabled) {
			ev = c.log.Info() // a choice of the operator, not a fault
		}

		ev.Err(err).Str("source", string(name)).Msg("discovery source unavailable, skipped")
	}

	return false
}

func (c *Combined) attribute(res Result) map[SourceName]int {
	out := map[SourceName]int{}

	for _, p := range slices.Concat(res.ControlPlane, res.Workers) {
		named := map[SourceName]bool{}

		for _, a := range append([]netip.Addr{p.Addr}, p.Aliases...) {
			for name := range c.listed[a] {
				named[name] = true
			}

			for name, r := range c.ranges {
				if r.Contains(a) {
					named[name] = true
				}
			}
		}

		for name := range named {
			out[name]++
		}
	}

	return out
}

// Pause waits d before the next round, or less: it returns as soon as a
// source that changes (discovery members) lists an address not probed yet,
// looking every pollEvery, so that a new member is probed about one
// SCAN_TIMEOUT after it appears instead of a SCAN_INTERVAL later.
func (c *Combined) Pause(ctx context.Context, d time.Duration) error {
	deadline := c.clock.NewTimer(d)
	defer deadline.Stop()

	var changing []Source

	for _, src := range c.sources {
		if _, fixed := src.(Fixed); !fixed {
			changing = append(changing, src)
		}
	}

	var tick <-chan time.Time

	if len(changing) > 0 && c.pollEvery > 0 {
		t := c.clock.NewTicker(c.pollEvery)
		defer t.Stop()

		tick = t.Chan()
	}

	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pause between scans: %w", ctx.Err())
		case <-deadline.Chan():
			return nil
		case <-tick:
			if c.somethingNew(ctx, changing) {
				return nil
			}
		}
	}
}

func (c *Combined) somethingNew(ctx context.Context, sources []Source) bool {
	for _, src := range sources {
		ctx, cancel := context.WithTimeout(ctx, c.pollEvery)
		t, err := src.Targets(ctx)

		cancel()

		if err != nil || t.Addrs == nil {
			continue // a failure is logged by the next round
		}

		for a := range t.Addrs {
			if !c.listed[a.Unmap()][src.Name()] {
				c.log.Debug().Stringer("addr", a).Str("source", string(src.Name())).Msg("new address to probe")

				return true
			}
		}
	}

	return false
}

// ProbeSelf describes the local node (see Scanner.ProbeSelf).
func (c *Combined) ProbeSelf(ctx context.Context, addr netip.Addr) (Peer, error) {
	return c.scanner.ProbeSelf(ctx, addr)
}

// Close ends the sweep's pass and closes the scanner's connections.
func (c *Combined) Close() error {
	c.endPass()

	return c.scanner.Close()
}
