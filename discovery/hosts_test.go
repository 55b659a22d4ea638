package discovery

import (
	"errors"
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
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, mustAddr(s))
		}
		return out
	}
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
	for _, v := range []string{"TALOS_AUTO_BOOTSTRAP_SCAN_CIDR", "TALOS_AUTO_BOOTSTRAP_PEERS", "TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS=65536", "10.0.0.0/15", "131070"} {
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
	if _, err := Hosts(mustPrefix("fd00::/120"), 0); err == nil || !strings.Contains(err.Error(), "TALOS_AUTO_BOOTSTRAP_PEERS") {
		t.Fatalf("IPv6: %v", err)
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
	for _, bad := range []string{"198.18.0.300", "node-1", "198.18.0.5:50000", "224.0.0.1", "0.0.0.0", "fe80::1%eth0"} {
		_, err := ParsePeers("198.18.0.1," + bad)
		if err == nil || !strings.Contains(err.Error(), "TALOS_AUTO_BOOTSTRAP_PEERS") || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
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
