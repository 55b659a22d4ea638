package discovery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strings"
)

// DefaultMaxScanHosts is the largest sweep accepted without configuration:
// a /16.
const DefaultMaxScanHosts = 65536

// ErrRangeTooLarge is returned (wrapped) for a range with more usable hosts
// than the configured maximum.
var ErrRangeTooLarge = errors.New("scan range too large")

// UsableHosts is the number of addresses Hosts yields for an IPv4 prefix:
// all but the network and broadcast addresses for /30 and wider, both for
// a /31 (RFC 3021 point-to-point), none for a /32.
func UsableHosts(p netip.Prefix) uint64 {
	switch n := 32 - p.Bits(); {
	case n <= 0:
		return 0
	case n == 1:
		return 2
	default:
		return 1<<n - 2
	}
}

// Hosts returns the usable host addresses of an IPv4 prefix, lazily: a /16
// costs no more memory than a /30. maxHosts <= 0 means DefaultMaxScanHosts.
func Hosts(p netip.Prefix, maxHosts int) (iter.Seq[netip.Addr], error) {
	if !p.IsValid() {
		return nil, fmt.Errorf("invalid scan range")
	}
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("scan range %s is not IPv4: sweeping IPv6 is not possible, set TALOS_AUTO_BOOTSTRAP_PEERS", p)
	}
	if maxHosts <= 0 {
		maxHosts = DefaultMaxScanHosts
	}
	p = p.Masked()
	if n := UsableHosts(p); n > uint64(maxHosts) {
		return nil, fmt.Errorf("%w: %s has %d hosts, more than TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS=%d; "+
			"set TALOS_AUTO_BOOTSTRAP_SCAN_CIDR to a smaller range, TALOS_AUTO_BOOTSTRAP_PEERS to the "+
			"control-plane addresses, or raise TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS",
			ErrRangeTooLarge, p, n, maxHosts)
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
		if a.Zone() != "" || !(a.IsGlobalUnicast() || a.IsLoopback()) {
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
}

// NewTargets resolves what to scan: the static peer list, else ScanCIDR,
// else the detected network. Count 0 (a /32 network) means there is no
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
