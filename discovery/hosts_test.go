package discovery

import (
	"errors"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func collect(t *testing.T, p string, max int) []netip.Addr {
	t.Helper()
	seq, err := Hosts(mustPrefix(p), max)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Collect(seq)
}

func TestHostsSmallRanges(t *testing.T) {
	cases := []struct {
		prefix string
		want   []netip.Addr
	}{
		{"198.18.0.5/32", nil},
		{"198.18.0.4/31", addrs("198.18.0.4", "198.18.0.5")},
		{"198.18.0.4/30", addrs("198.18.0.5", "198.18.0.6")},
		{"198.18.0.9/29", addrs("198.18.0.9", "198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14")},
		// Host bits are ignored: the network of the address is swept.
		{"198.18.0.77/30", addrs("198.18.0.77", "198.18.0.78")},
	}
	for _, c := range cases {
		got := collect(t, c.prefix, 0)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.prefix, got, c.want)
		}
		if n := UsableHosts(mustPrefix(c.prefix)); n != uint64(len(c.want)) {
			t.Errorf("%s: UsableHosts %d, want %d", c.prefix, n, len(c.want))
		}
	}
}

func TestHosts16(t *testing.T) {
	seq, err := Hosts(mustPrefix("198.18.0.0/16"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var first, last, prev netip.Addr
	for a := range seq {
		if n == 0 {
			first = a
		} else if a != prev.Next() {
			t.Fatalf("%s follows %s", a, prev)
		}
		prev, last = a, a
		n++
	}
	if n != 65534 || first != mustAddr("198.18.0.1") || last != mustAddr("198.18.255.254") {
		t.Fatalf("%d hosts from %s to %s", n, first, last)
	}
	// Stopping early stops the iterator.
	var taken []netip.Addr
	for a := range seq {
		if taken = append(taken, a); len(taken) == 3 {
			break
		}
	}
	if len(taken) != 3 || taken[2] != mustAddr("198.18.0.3") {
		t.Fatalf("early stop: %v", taken)
	}
	// The top of the address space does not overflow.
	if got := collect(t, "255.255.255.252/30", 0); !slices.Equal(got, []netip.Addr{mustAddr("255.255.255.253"), mustAddr("255.255.255.254")}) {
		t.Fatalf("top /30: %v", got)
	}
}

func TestHostsRefused(t *testing.T) {
	_, err := Hosts(mustPrefix("10.0.0.0/15"), 0)
	if !errors.Is(err, ErrRangeTooLarge) {
		t.Fatalf("/15 at the default limit: %v", err)
	}
	for _, v := range []string{tooLargeAdvice, "TALOS_AUTO_BOOTSTRAP_DISCOVERY", "TALOS_AUTO_BOOTSTRAP_SCAN_CIDR", "TALOS_AUTO_BOOTSTRAP_PEERS",
		"TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS=65536", "raise TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS", "10.0.0.0/15", "131070"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error %q does not name %s", err, v)
		}
	}
	if _, err := Hosts(mustPrefix("10.0.0.0/8"), 1<<24); err != nil {
		t.Fatalf("/8 with a raised limit: %v", err)
	}
	if _, err := Hosts(mustPrefix("198.18.0.0/24"), 253); !errors.Is(err, ErrRangeTooLarge) {
		t.Fatalf("/24 over a limit of 253: %v", err)
	}
	if _, err := Hosts(netip.Prefix{}, 0); err == nil {
		t.Fatal("invalid prefix accepted")
	}
}

func TestParsePeers(t *testing.T) {
	got, err := ParsePeers(" 198.18.0.6, 198.18.0.5\t198.18.0.6,,::ffff:198.18.0.7 fd00::1\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{mustAddr("198.18.0.6"), mustAddr("198.18.0.5"), mustAddr("198.18.0.7"), mustAddr("fd00::1")}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got, err := ParsePeers(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, c := range []struct{ bad, why string }{
		{"198.18.0.300", "not an IP address"},
		{"node-1", "not an IP address"},
		{"198.18.0.5:50000", "not an IP address"},
		{"224.0.0.1", "not a unicast host address"},
		{"0.0.0.0", "not a unicast host address"},
		{"ff02::1", "not a unicast host address"},
		{"::", "not a unicast host address"},
		{"fe80::1", "is link-local"},
		{"169.254.0.7", "is link-local"},
		{"fe80::1%eth0", "has a zone"},
		{"fd00::1%eth0", "has a zone"},
	} {
		_, err := ParsePeers("198.18.0.1,fd00::1," + c.bad)
		if err == nil || !strings.Contains(err.Error(), "TALOS_AUTO_BOOTSTRAP_PEERS") || !strings.Contains(err.Error(), c.bad) ||
			!strings.Contains(err.Error(), c.why) {
			t.Errorf("%q: %v, want %q", c.bad, err, c.why)
		}
	}
}

func TestNewTargets(t *testing.T) {
	n := Network{Interface: "eth0", LocalIP: mustAddr("198.18.0.5"), Prefix: mustPrefix("198.18.0.0/30")}

	tg, err := NewTargets(n, TargetOptions{})
	if err != nil || tg.Count != 2 || tg.Range != n.Prefix || !slices.Equal(slices.Collect(tg.Addrs), []netip.Addr{mustAddr("198.18.0.1"), mustAddr("198.18.0.2")}) {
		t.Fatalf("detected network: %+v %v", tg, err)
	}
	tg, err = NewTargets(n, TargetOptions{ScanCIDR: mustPrefix("198.19.0.0/31")})
	if err != nil || tg.Count != 2 || tg.Range != mustPrefix("198.19.0.0/31") {
		t.Fatalf("SCAN_CIDR: %+v %v", tg, err)
	}
	peers := []netip.Addr{mustAddr("198.19.0.9"), mustAddr("198.19.0.3")}
	tg, err = NewTargets(Network{}, TargetOptions{Peers: peers, ScanCIDR: mustPrefix("10.0.0.0/8")})
	if err != nil || tg.Count != 2 || tg.Range.IsValid() || !slices.Equal(slices.Collect(tg.Addrs), peers) {
		t.Fatalf("PEERS: %+v %v", tg, err)
	}
	tg, err = NewTargets(Network{Prefix: mustPrefix("198.18.0.5/32")}, TargetOptions{})
	if err != nil || tg.Count != 0 || len(slices.Collect(tg.Addrs)) != 0 {
		t.Fatalf("/32: %+v %v", tg, err)
	}
	if _, err := NewTargets(Network{}, TargetOptions{}); err == nil || !strings.Contains(err.Error(), "TALOS_AUTO_BOOTSTRAP_SCAN_CIDR") {
		t.Fatalf("nothing to scan: %v", err)
	}
	if _, err := NewTargets(n, TargetOptions{ScanCIDR: mustPrefix("10.0.0.0/8")}); !errors.Is(err, ErrRangeTooLarge) {
		t.Fatalf("oversized SCAN_CIDR: %v", err)
	}
}

func TestHostsIPv6(t *testing.T) {
	cases := []struct {
		prefix string
		want   []netip.Addr
	}{
		{"fd00::5/128", nil},
		// RFC 6164: both ends of a point-to-point /127.
		{"fd00::4/127", addrs("fd00::4", "fd00::5")},
		// The all-zeros Subnet-Router anycast address is left out.
		{"fd00::4/126", addrs("fd00::5", "fd00::6", "fd00::7")},
		// Host bits are ignored: the network of the address is swept.
		{"2001:db8::7/126", addrs("2001:db8::5", "2001:db8::6", "2001:db8::7")},
		// The top of the address space does not overflow.
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126", addrs("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd",
			"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
	}
	for _, c := range cases {
		got := collect(t, c.prefix, 0)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.prefix, got, c.want)
		}
		if n := UsableHosts(mustPrefix(c.prefix)); n != uint64(len(c.want)) {
			t.Errorf("%s: UsableHosts %d, want %d", c.prefix, n, len(c.want))
		}
	}

	// A /120 as SCAN_CIDR: 255 hosts, in order, lazily.
	got := collect(t, "fd00:1::/120", 0)
	if len(got) != 255 || got[0] != mustAddr("fd00:1::1") || got[254] != mustAddr("fd00:1::ff") || UsableHosts(mustPrefix("fd00:1::/120")) != 255 {
		t.Fatalf("/120: %d hosts from %v to %v", len(got), got[0], got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1].Next() {
			t.Fatalf("%s follows %s", got[i], got[i-1])
		}
	}
	seq, _ := Hosts(mustPrefix("fd00:1::/120"), 0)
	var taken []netip.Addr
	for a := range seq {
		if taken = append(taken, a); len(taken) == 2 {
			break
		}
	}
	if !slices.Equal(taken, addrs("fd00:1::1", "fd00:1::2")) {
		t.Fatalf("early stop: %v", taken)
	}
	// A /112 is 65535 hosts: within the default limit.
	if _, err := Hosts(mustPrefix("fd00::/112"), 0); err != nil {
		t.Fatalf("/112: %v", err)
	}
}

func TestUsableHostsIPv6Counts(t *testing.T) {
	cases := []struct {
		prefix string
		want   uint64
	}{
		{"fd00::/128", 0},
		{"fd00::/127", 2},
		{"fd00::/126", 3},
		{"fd00::/120", 255},
		{"fd00::/112", 65535},
		{"fd00::/65", 1<<63 - 1},
		{"fd00::/64", math.MaxUint64}, // exactly 2^64-1
		{"fd00::/63", math.MaxUint64}, // saturated
		{"::/0", math.MaxUint64},
		{"198.18.0.0/16", 65534},
		{"0.0.0.0/0", 1<<32 - 2},
	}
	for _, c := range cases {
		if n := UsableHosts(mustPrefix(c.prefix)); n != c.want {
			t.Errorf("%s: %d, want %d", c.prefix, n, c.want)
		}
	}
	if n := UsableHosts(netip.Prefix{}); n != 0 {
		t.Errorf("invalid prefix: %d", n)
	}
}

func TestHostsIPv6Refused(t *testing.T) {
	cases := []struct {
		prefix   string
		maxHosts int
		want     []string
	}{
		{"fd00::/64", 0, []string{"fd00::/64 has 2^64-1 hosts", "TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS=65536"}},
		// No limit lets a /64 through.
		{"2001:db8::/64", math.MaxInt, []string{"2001:db8::/64 has 2^64-1 hosts"}},
		{"2001:db8::/48", math.MaxInt, []string{"2^80-1 hosts"}},
		{"fd00::/111", 0, []string{"fd00::/111 has 131071 hosts"}},
		{"fd00::/120", 254, []string{"fd00::/120 has 255 hosts", "TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS=254"}},
	}
	for _, c := range cases {
		_, err := Hosts(mustPrefix(c.prefix), c.maxHosts)
		if !errors.Is(err, ErrRangeTooLarge) {
			t.Errorf("%s at %d: %v", c.prefix, c.maxHosts, err)
			continue
		}
		for _, w := range append(c.want, tooLargeAdvice) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.prefix, err, w)
			}
		}
		// Raising the limit is no way out for IPv6.
		if strings.Contains(err.Error(), "raise") {
			t.Errorf("%s: error %q advises raising the limit", c.prefix, err)
		}
	}
	if _, err := Hosts(mustPrefix("fd00::/111"), 1<<17); err != nil {
		t.Fatalf("/111 with a raised limit: %v", err)
	}
}

func TestNewTargetsIPv6(t *testing.T) {
	n := Network{Interface: "eth0", LocalIP: mustAddr("fd00::2"), Prefix: mustPrefix("fd00::/64"), Gateway: mustAddr("fe80::1")}
	if _, err := NewTargets(n, TargetOptions{}); !errors.Is(err, ErrRangeTooLarge) || !strings.Contains(err.Error(), "TALOS_AUTO_BOOTSTRAP_DISCOVERY") {
		t.Fatalf("detected /64: %v", err)
	}
	tg, err := NewTargets(n, TargetOptions{ScanCIDR: mustPrefix("fd00::/120")})
	if err != nil || tg.Count != 255 || tg.Range != mustPrefix("fd00::/120") || len(slices.Collect(tg.Addrs)) != 255 {
		t.Fatalf("SCAN_CIDR /120: %+v %v", tg, err)
	}
	tg, err = NewTargets(Network{Prefix: mustPrefix("fd00::7/127")}, TargetOptions{})
	if err != nil || tg.Count != 2 || tg.Range != mustPrefix("fd00::6/127") ||
		!slices.Equal(slices.Collect(tg.Addrs), []netip.Addr{mustAddr("fd00::6"), mustAddr("fd00::7")}) {
		t.Fatalf("/127: %+v %v", tg, err)
	}
	tg, err = NewTargets(Network{Prefix: mustPrefix("fd00::2/128")}, TargetOptions{})
	if err != nil || tg.Count != 0 || len(slices.Collect(tg.Addrs)) != 0 {
		t.Fatalf("/128: %+v %v", tg, err)
	}
	peers := []netip.Addr{mustAddr("fd00::9"), mustAddr("198.18.0.3")}
	tg, err = NewTargets(n, TargetOptions{Peers: peers})
	if err != nil || tg.Count != 2 || !slices.Equal(slices.Collect(tg.Addrs), peers) {
		t.Fatalf("PEERS: %+v %v", tg, err)
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, mustAddr(s))
	}
	return out
}
