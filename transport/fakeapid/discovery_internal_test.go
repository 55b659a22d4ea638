package fakeapid

import (
	"net/netip"
	"slices"
	"testing"
)

// Default discovery addresses are computed from the served addresses, which
// a test cannot bind beyond loopback; check the rule itself.
func TestDefaultDiscoveryAddrs(t *testing.T) {
	t.Parallel()

	served := []netip.AddrPort{
		netip.MustParseAddrPort("198.18.0.5:50000"),
		netip.MustParseAddrPort("127.0.0.1:50000"),
		netip.MustParseAddrPort("[fd00:198:18::5]:50000"),
		netip.MustParseAddrPort("[::1]:50000"),
		netip.MustParseAddrPort("[::]:50000"),
		netip.MustParseAddrPort("[::ffff:10.0.0.1]:50000"),
	}

	got := discoveryAddrs(Node{IP: netip.MustParseAddr("198.18.0.5")}, served)

	want := []netip.Addr{netip.MustParseAddr("198.18.0.5"), netip.MustParseAddr("fd00:198:18::5"), netip.MustParseAddr("10.0.0.1")}
	if !slices.Equal(got, want) {
		t.Errorf("default = %v, want %v", got, want)
	}

	explicit := []netip.Addr{netip.MustParseAddr("fd00:198:18::5"), netip.MustParseAddr("fd00:198:18::5"), netip.MustParseAddr("127.0.0.1")}
	if got := discoveryAddrs(Node{IP: netip.MustParseAddr("198.18.0.5"), DiscoveryAddrs: explicit}, served); !slices.Equal(got, explicit[1:]) {
		t.Errorf("explicit = %v, want %v deduplicated", got, explicit)
	}
}
