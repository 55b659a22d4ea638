package discovery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultMaxScanHosts is the largest sweep accepted without configuration:
// a /16.
const DefaultMaxScanHosts = 65536

// ErrRangeTooLarge is returned (wrapped) for a range with more usable hosts
// than the configured maximum.
var ErrRangeTooLarge = errors.New("scan range too large")

// UsableHosts is the number of addresses Hosts yields for a prefix. IPv4:
// all but the network and broadcast addresses for /30 and wider, both for
// a /31 (RFC 3021 point-to-point), none for a /32. IPv6 has no broadcast:
// all but the all-zeros Subnet-Router anycast address (RFC 4291 2.6.1) for
// /126 and wider, both for a /127 (RFC 6164 point-to-point), none for a
// /128. A count that does not fit is math.MaxUint64, more than any limit;
// that is exact for a /64 (2^64-1 hosts) and saturated for shorter ones.
func UsableHosts(p netip.Prefix) uint64 {
	if !p.IsValid() {
		return 0
	}
	if p.Addr().Is4() {
		switch n := 32 - p.Bits(); {
		case n <= 0:
			return 0
		case n == 1:
			return 2
		default:
			return 1<<n - 2
		}
	}
	switch n := 128 - p.Bits(); {
	case n <= 0:
		return 0
	case n == 1:
		return 2
	case n >= 64:
		return math.MaxUint64
	default:
		return 1<<n - 1
	}
}

// Hosts returns the usable host addresses of a prefix, lazily: a /16 costs
// no more memory than a /30. maxHosts <= 0 means DefaultMaxScanHosts. Only
// small IPv6 ranges (a /112 holds 65535 hosts) pass the limit: a /64 is
// refused, whatever the limit.
func Hosts(p netip.Prefix, maxHosts int) (iter.Seq[netip.Addr], error) {
	if !p.IsValid() {
		return nil, fmt.Errorf("invalid scan range")
	}
	if maxHosts <= 0 {
		maxHosts = DefaultMaxScanHosts
	}
	p = p.Masked()
	if err := checkRange(p, maxHosts); err != nil {
		return nil, err
	}
	if !p.Addr().Is4() {
		return hosts6(p), nil
	}
	b := p.Addr().As4()
	first := uint64(binary.BigEndian.Uint32(b[:]))
	last := first + 1<<(32-p.Bits()) - 1
	if p.Bits() <= 30 {
		first, last = first+1, last-1
	} else if p.Bits() == 32 {
		return func(func(netip.Addr) bool) {}, nil
	}
	return func(yield func(netip.Addr) bool) {
		for v := first; v <= last; v++ {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], uint32(v))
			if !yield(netip.AddrFrom4(a)) {
				return
			}
		}
	}, nil
}

// tooLargeAdvice names what replaces a sweep that is too large.
const tooLargeAdvice = "set TALOS_AUTO_BOOTSTRAP_DISCOVERY to include members (Talos cluster discovery), " +
	"TALOS_AUTO_BOOTSTRAP_PEERS to the control-plane addresses, or TALOS_AUTO_BOOTSTRAP_SCAN_CIDR to a smaller range"

// checkRange refuses a masked prefix with more hosts than maxHosts.
func checkRange(p netip.Prefix, maxHosts int) error {
	n := UsableHosts(p)
	if n <= uint64(maxHosts) {
		return nil
	}
	if p.Addr().Is4() {
		return fmt.Errorf("%w: %s has %d hosts, more than TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS=%d; %s; "+
			"or raise TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS", ErrRangeTooLarge, p, n, maxHosts, tooLargeAdvice)
	}
	// Raising the limit is no advice for IPv6: at 256 probes in flight and a
	// 2 s timeout, a /96 (2^32 hosts) would take about a year.
	count := strconv.FormatUint(n, 10)
	if hostBits := 128 - p.Bits(); hostBits >= 64 {
		count = fmt.Sprintf("2^%d-1", hostBits)
	}
	return fmt.Errorf("%w: %s has %s hosts, more than TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS=%d; %s",
		ErrRangeTooLarge, p, count, maxHosts, tooLargeAdvice)
}

// hosts6 yields the usable hosts of a masked IPv6 prefix that passed
// checkRange, so that their count fits in a uint64.
func hosts6(p netip.Prefix) iter.Seq[netip.Addr] {
	n := UsableHosts(p)
	first := p.Addr()
	if p.Bits() < 127 {
		first = first.Next() // past the Subnet-Router anycast address
	}
	return func(yield func(netip.Addr) bool) {
		a := first
		for i := uint64(0); i < n; i++ {
			if !yield(a) {
				return
			}
			a = a.Next()
		}
	}
}

// ParsePeers parses TALOS_AUTO_BOOTSTRAP_PEERS: addresses separated by
// commas or white space. Duplicates are dropped, order is kept; an empty
// value is an empty list.
func ParsePeers(s string) ([]netip.Addr, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	out := make([]netip.Addr, 0, len(fields))
	for _, f := range fields {
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("TALOS_AUTO_BOOTSTRAP_PEERS: %q is not an IP address: %w", f, err)
		}
		a = a.Unmap()
		switch {
		case a.Zone() != "":
			// A zone names one of this node's interfaces: meaningless in a
			// list every node is given.
			return nil, fmt.Errorf("TALOS_AUTO_BOOTSTRAP_PEERS: %q has a zone: list the peer's global or ULA address", f)
		case a.IsLinkLocalUnicast():
			// Dialling one needs a zone, and the node's own address is
			// never chosen from link-local ones, so it could not match.
			return nil, fmt.Errorf("TALOS_AUTO_BOOTSTRAP_PEERS: %q is link-local: list an address the peer is reachable at "+
				"without a zone (global, private IPv4 or ULA)", f)
		case !(a.IsGlobalUnicast() || a.IsLoopback()):
			return nil, fmt.Errorf("TALOS_AUTO_BOOTSTRAP_PEERS: %q is not a unicast host address", f)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// TargetOptions select what a scan covers.
type TargetOptions struct {
	// Peers is a static list (TALOS_AUTO_BOOTSTRAP_PEERS); no sweep when set.
	Peers []netip.Addr
	// ScanCIDR replaces the detected network (TALOS_AUTO_BOOTSTRAP_SCAN_CIDR).
	ScanCIDR netip.Prefix
	// MaxScanHosts bounds the sweep; DefaultMaxScanHosts when <= 0.
	MaxScanHosts int
}

// Targets is the set of addresses one scan probes.
type Targets struct {
	Addrs iter.Seq[netip.Addr]
	Count uint64
	// Range is the swept prefix; invalid for a static peer list.
	Range netip.Prefix
	// Init are the nodes the source knows as Talos init nodes (discovery
	// members say so), whether they answer or not: the addresses of each,
	// one group per node, since one node often has several (IPv4 and IPv6,
	// KubeSpan) and must not count as several init nodes.
	Init [][]netip.Addr
}

// NewTargets resolves what to scan: the static peer list, else ScanCIDR,
// else the detected network. Count 0 (a /32 or /128 network) means there is no
// neighbour to find; the caller should advise setting
// TALOS_AUTO_BOOTSTRAP_PEERS or TALOS_AUTO_BOOTSTRAP_SCAN_CIDR.
func NewTargets(n Network, opts TargetOptions) (Targets, error) {
	if len(opts.Peers) > 0 {
		peers := slices.Clone(opts.Peers)
		return Targets{Addrs: slices.Values(peers), Count: uint64(len(peers))}, nil
	}
	p := opts.ScanCIDR
	if !p.IsValid() {
		p = n.Prefix
	}
	if !p.IsValid() {
		return Targets{}, fmt.Errorf("no network to scan: set TALOS_AUTO_BOOTSTRAP_SCAN_CIDR or TALOS_AUTO_BOOTSTRAP_PEERS")
	}
	seq, err := Hosts(p, opts.MaxScanHosts)
	if err != nil {
		return Targets{}, err
	}
	return Targets{Addrs: seq, Count: UsableHosts(p.Masked()), Range: p.Masked()}, nil
}
