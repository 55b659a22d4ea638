package discovery

import (
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
)

func TestDetectNetworkFixtures(t *testing.T) {
	cases := []struct {
		fixture, forced string
		want            Network
	}{
		{"ci-container", "", Network{Interface: "eth0", LocalIP: mustAddr("192.0.2.2"), Prefix: mustPrefix("192.0.2.0/24"), Gateway: mustAddr("192.0.2.1")}},
		{"multi", "", Network{Interface: "eth0", LocalIP: mustAddr("198.18.1.10"), Prefix: mustPrefix("198.18.1.0/24"), Gateway: mustAddr("198.18.1.1")}},
		{"multi", "eth2", Network{Interface: "eth2", LocalIP: mustAddr("198.18.200.10"), Prefix: mustPrefix("198.18.200.0/22"), Gateway: netip.Addr{}}},
		// The address lives on the bridge, not on the enslaved NIC.
		{"bridge", "", Network{Interface: "br0", LocalIP: mustAddr("198.18.4.20"), Prefix: mustPrefix("198.18.4.0/23"), Gateway: mustAddr("198.18.4.1")}},
		// docker0 comes first but has no carrier.
		{"nodefault", "", Network{Interface: "eth0", LocalIP: mustAddr("198.18.7.5"), Prefix: mustPrefix("198.18.7.0/24"), Gateway: netip.Addr{}}},
		{"secondary-default", "", Network{Interface: "eth1", LocalIP: mustAddr("198.19.9.10"), Prefix: mustPrefix("198.19.9.0/24"), Gateway: mustAddr("198.19.9.1")}},
		{"secondary-default", "eth0", Network{Interface: "eth0", LocalIP: mustAddr("198.18.9.10"), Prefix: mustPrefix("198.18.9.0/24"), Gateway: netip.Addr{}}},
		// Lowest metric wins, not the first line.
		{"two-defaults", "", Network{Interface: "eth1", LocalIP: mustAddr("198.18.13.10"), Prefix: mustPrefix("198.18.13.0/24"), Gateway: mustAddr("198.18.13.1")}},
		// The /32 VIP is not the node's network.
		{"vip", "", Network{Interface: "eth0", LocalIP: mustAddr("198.18.10.5"), Prefix: mustPrefix("198.18.10.0/24"), Gateway: mustAddr("198.18.10.1")}},
		{"p2p31", "", Network{Interface: "eth0", LocalIP: mustAddr("198.18.11.0"), Prefix: mustPrefix("198.18.11.0/31"), Gateway: mustAddr("198.18.11.1")}},
	}
	for _, c := range cases {
		t.Run(c.fixture+"/"+c.forced, func(t *testing.T) {
			got, err := DetectNetwork(NetworkOptions{
				ProcDir:    procDirFor(t, filepath.Join(routeFixtures, c.fixture+".route")),
				Interface:  c.forced,
				Interfaces: fixtureInterfaces(c.fixture),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

type staticInterfaces []Interface

func (s staticInterfaces) Interfaces() ([]Interface, error) { return s, nil }

type failingInterfaces struct{}

func (failingInterfaces) Interfaces() ([]Interface, error) { return nil, errors.New("netlink says no") }

func TestDetectNetworkErrors(t *testing.T) {
	procDir := procDirFor(t, filepath.Join(routeFixtures, "nodefault.route"))
	up := net.FlagUp | net.FlagRunning
	cases := map[string]struct {
		forced string
		ifaces InterfaceLister
		want   string
	}{
		"missing forced": {"eth9", fixtureInterfaces("nodefault"), `interface "eth9" (TALOS_AUTO_BOOTSTRAP_INTERFACE) does not exist`},
		"down forced":    {"vethd0", fixtureInterfaces("nodefault"), `"vethd0" (TALOS_AUTO_BOOTSTRAP_INTERFACE) is down`},
		// peth0 has only a link-local IPv6 address.
		"no address forced": {"peth0", fixtureInterfaces("nodefault"), `"peth0" (TALOS_AUTO_BOOTSTRAP_INTERFACE) has no global IPv4 or IPv6 address`},
		"lister fails":      {"", failingInterfaces{}, "netlink says no"},
		"nothing usable": {"", staticInterfaces{
			{Name: "lo", Flags: up | net.FlagLoopback, Addrs: []netip.Prefix{mustPrefix("127.0.0.1/8")}},
			{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("169.254.3.4/16"), mustPrefix("fe80::5/64")}},
			{Name: "eth1", Flags: 0, Addrs: []netip.Prefix{mustPrefix("198.18.0.5/24")}},
		}, "global IPv4 or IPv6 address; set TALOS_AUTO_BOOTSTRAP_INTERFACE"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DetectNetwork(NetworkOptions{ProcDir: procDir, Interface: c.forced, Interfaces: c.ifaces})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
	_, err := DetectNetwork(NetworkOptions{ProcDir: t.TempDir(), Interfaces: fixtureInterfaces("multi")})
	if err == nil || !strings.Contains(err.Error(), "read routes") {
		t.Fatalf("missing route file: %v", err)
	}
}

func TestDetectNetworkNoGatewayPrefersWideSubnet(t *testing.T) {
	// A VIP listed before the real address, no default route.
	ifaces := staticInterfaces{{Name: "eth0", Flags: net.FlagUp | net.FlagRunning, Addrs: []netip.Prefix{
		mustPrefix("198.18.10.100/32"), mustPrefix("fe80::1/64"), mustPrefix("198.18.10.5/24"),
	}}}
	got, err := chooseNetwork(nil, no6, ifaces, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.LocalIP != mustAddr("198.18.10.5") || got.Prefix != mustPrefix("198.18.10.0/24") {
		t.Fatalf("got %+v", got)
	}
	// A default route whose interface is down is passed over.
	routes := []Route{{Interface: "eth9", Destination: mustPrefix("0.0.0.0/0"), Gateway: mustAddr("198.18.0.1"), Flags: 3}}
	got, err = chooseNetwork(routes, no6, ifaces, "")
	if err != nil || got.Interface != "eth0" || got.Gateway.IsValid() {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// no6 is an IPv6 table that is empty, as with IPv6 disabled.
func no6() ([]Route6, error) { return nil, nil }

// route6Line renders one ipv6_route line the way the kernel does.
func route6Line(dst, via string, metric, flags uint32, dev string) string {
	return formatRoutes6([]Route6{{Interface: dev, Destination: mustPrefix(dst), Source: mustPrefix("::/0"),
		Gateway: mustAddr(via), Flags: flags, Metric: metric}})
}

func TestDetectNetworkIPv6(t *testing.T) {
	const (
		header4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
		lo6     = "00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n" +
			"00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
	)
	up := net.FlagUp | net.FlagRunning
	lo := Interface{Name: "lo", Flags: up | net.FlagLoopback, Addrs: []netip.Prefix{mustPrefix("127.0.0.1/8"), mustPrefix("::1/128")}}
	default4 := formatRoutes([]Route{
		{"eth0", mustPrefix("0.0.0.0/0"), mustAddr("198.18.1.1"), 3, 0},
		{"eth0", mustPrefix("198.18.1.0/24"), mustAddr("0.0.0.0"), 1, 0},
	})
	cases := []struct {
		name   string
		files  map[string]string // net/<name>; nil text leaves the file out
		ifaces staticInterfaces
		forced string
		want   Network
	}{
		{
			name:  "ipv6-only, RA default through a link-local router",
			files: map[string]string{"route": header4, "ipv6_route": ipv6RouteRA},
			ifaces: staticInterfaces{lo, {Name: "eth0", Flags: up, Addrs: []netip.Prefix{
				mustPrefix("fe80::d45c:1eff:fef1:bdd6/64"), mustPrefix("2001:db8:1::10/64"),
			}}},
			want: Network{Interface: "eth0", LocalIP: mustAddr("2001:db8:1::10"), Prefix: mustPrefix("2001:db8:1::/64"), Gateway: mustAddr("fe80::1")},
		},
		{
			name:  "ipv6-only, ULA next hop picks its subnet",
			files: map[string]string{"route": header4, "ipv6_route": ipv6RouteULA},
			ifaces: staticInterfaces{lo, {Name: "eth0", Flags: up, Addrs: []netip.Prefix{
				mustPrefix("2001:db8:7::2/48"), mustPrefix("fd00::2/64"), mustPrefix("fe80::fc:ff:fe00:1/64"),
			}}},
			want: Network{Interface: "eth0", LocalIP: mustAddr("fd00::2"), Prefix: mustPrefix("fd00::/64"), Gateway: mustAddr("fd00::1")},
		},
		{
			name: "ipv6-only, lowest metric wins",
			files: map[string]string{"route": header4, "ipv6_route": route6Line("::/0", "fe80::1", 0x400, 3, "eth0") +
				route6Line("::/0", "fe80::2", 0x100, 3, "eth1") + lo6},
			ifaces: staticInterfaces{lo,
				{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("2001:db8:1::10/64")}},
				{Name: "eth1", Flags: up, Addrs: []netip.Prefix{mustPrefix("2001:db8:2::10/64")}},
			},
			want: Network{Interface: "eth1", LocalIP: mustAddr("2001:db8:2::10"), Prefix: mustPrefix("2001:db8:2::/64"), Gateway: mustAddr("fe80::2")},
		},
		{
			// The /128 VIP is not the node's network.
			name:  "ipv6-only, VIP",
			files: map[string]string{"route": header4, "ipv6_route": ipv6RouteRA},
			ifaces: staticInterfaces{{Name: "eth0", Flags: up, Addrs: []netip.Prefix{
				mustPrefix("2001:db8:1::100/128"), mustPrefix("2001:db8:1::10/64"),
			}}},
			want: Network{Interface: "eth0", LocalIP: mustAddr("2001:db8:1::10"), Prefix: mustPrefix("2001:db8:1::/64"), Gateway: mustAddr("fe80::1")},
		},
		{
			// The default route's interface has only link-local: the next one
			// with carrier and a global address is taken, without gateway.
			name:  "ipv6-only, default route on a link-local-only interface",
			files: map[string]string{"route": header4, "ipv6_route": ipv6RouteRA},
			ifaces: staticInterfaces{lo,
				{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("fe80::10/64")}},
				{Name: "docker0", Flags: net.FlagUp, Addrs: []netip.Prefix{mustPrefix("fd99::1/64")}},
				{Name: "eth1", Flags: up, Addrs: []netip.Prefix{mustPrefix("fe80::11/64"), mustPrefix("fd00:1::5/64")}},
			},
			want: Network{Interface: "eth1", LocalIP: mustAddr("fd00:1::5"), Prefix: mustPrefix("fd00:1::/64"), Gateway: netip.Addr{}},
		},
		{
			name:  "ipv6-only, no default route",
			files: map[string]string{"route": header4, "ipv6_route": lo6},
			ifaces: staticInterfaces{lo,
				{Name: "eth0", Flags: net.FlagUp, Addrs: []netip.Prefix{mustPrefix("fd00:1::5/64")}},
				{Name: "eth1", Flags: net.FlagUp, Addrs: []netip.Prefix{mustPrefix("fd00:2::5/64")}},
			},
			want: Network{Interface: "eth0", LocalIP: mustAddr("fd00:1::5"), Prefix: mustPrefix("fd00:1::/64"), Gateway: netip.Addr{}},
		},
		{
			// Only a host built so; all the same an IPv6 answer.
			name:   "ipv6-only, no /proc/net/route",
			files:  map[string]string{"ipv6_route": ipv6RouteRA},
			ifaces: staticInterfaces{lo, {Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("2001:db8:1::10/64")}}},
			want:   Network{Interface: "eth0", LocalIP: mustAddr("2001:db8:1::10"), Prefix: mustPrefix("2001:db8:1::/64"), Gateway: mustAddr("fe80::1")},
		},
		{
			name:   "ipv6 address, no ipv6_route",
			files:  map[string]string{"route": header4},
			ifaces: staticInterfaces{lo, {Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("fd00::2/64")}}},
			want:   Network{Interface: "eth0", LocalIP: mustAddr("fd00::2"), Prefix: mustPrefix("fd00::/64"), Gateway: netip.Addr{}},
		},
		{
			name:  "dual-stack, IPv4 wins",
			files: map[string]string{"route": default4, "ipv6_route": route6Line("::/0", "fe80::1", 0x100, 3, "eth1")},
			ifaces: staticInterfaces{lo,
				{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("fd00:1::10/64"), mustPrefix("198.18.1.10/24")}},
				{Name: "eth1", Flags: up, Addrs: []netip.Prefix{mustPrefix("2001:db8:2::10/64")}},
			},
			want: Network{Interface: "eth0", LocalIP: mustAddr("198.18.1.10"), Prefix: mustPrefix("198.18.1.0/24"), Gateway: mustAddr("198.18.1.1")},
		},
		{
			// IPv4 without a default route still comes before IPv6 with one.
			name:  "dual-stack, IPv4 without default route wins",
			files: map[string]string{"route": header4, "ipv6_route": route6Line("::/0", "fe80::1", 0x100, 3, "eth1")},
			ifaces: staticInterfaces{lo,
				{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("198.18.7.5/24")}},
				{Name: "eth1", Flags: up, Addrs: []netip.Prefix{mustPrefix("2001:db8:2::10/64")}},
			},
			want: Network{Interface: "eth0", LocalIP: mustAddr("198.18.7.5"), Prefix: mustPrefix("198.18.7.0/24"), Gateway: netip.Addr{}},
		},
		{
			// IPv4 answers, so the IPv6 table is not even read.
			name:   "dual-stack, broken ipv6_route ignored",
			files:  map[string]string{"route": default4, "ipv6_route": "garbage\n"},
			ifaces: staticInterfaces{lo, {Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("198.18.1.10/24"), mustPrefix("fd00::2/64")}}},
			want:   Network{Interface: "eth0", LocalIP: mustAddr("198.18.1.10"), Prefix: mustPrefix("198.18.1.0/24"), Gateway: mustAddr("198.18.1.1")},
		},
		{
			name:  "forced interface with only IPv6",
			files: map[string]string{"route": default4, "ipv6_route": ipv6RouteULA},
			ifaces: staticInterfaces{lo,
				{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("fd00::2/64")}},
				{Name: "eth1", Flags: up, Addrs: []netip.Prefix{mustPrefix("198.18.1.10/24")}},
			},
			forced: "eth0",
			want:   Network{Interface: "eth0", LocalIP: mustAddr("fd00::2"), Prefix: mustPrefix("fd00::/64"), Gateway: mustAddr("fd00::1")},
		},
		{
			name:  "forced dual-stack interface keeps IPv4",
			files: map[string]string{"route": header4, "ipv6_route": ipv6RouteULA},
			ifaces: staticInterfaces{lo,
				{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("fd00::2/64"), mustPrefix("198.18.3.10/24")}},
			},
			forced: "eth0",
			want:   Network{Interface: "eth0", LocalIP: mustAddr("198.18.3.10"), Prefix: mustPrefix("198.18.3.0/24"), Gateway: netip.Addr{}},
		},
		{
			name:  "forced IPv6 interface without default route",
			files: map[string]string{"route": header4, "ipv6_route": ipv6RouteRA},
			ifaces: staticInterfaces{lo,
				{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("2001:db8:1::10/64")}},
				{Name: "eth1", Flags: up, Addrs: []netip.Prefix{mustPrefix("fe80::2/64"), mustPrefix("fd00:2::10/64")}},
			},
			forced: "eth1",
			want:   Network{Interface: "eth1", LocalIP: mustAddr("fd00:2::10"), Prefix: mustPrefix("fd00:2::/64"), Gateway: netip.Addr{}},
		},
		{
			name:   "forced IPv6 interface, no /proc/net/route",
			files:  map[string]string{"ipv6_route": ipv6RouteRA},
			ifaces: staticInterfaces{lo, {Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("2001:db8:1::10/64")}}},
			forced: "eth0",
			want:   Network{Interface: "eth0", LocalIP: mustAddr("2001:db8:1::10"), Prefix: mustPrefix("2001:db8:1::/64"), Gateway: mustAddr("fe80::1")},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DetectNetwork(NetworkOptions{ProcDir: procDirText(t, c.files), Interface: c.forced, Interfaces: c.ifaces})
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestDetectNetworkIPv6Errors(t *testing.T) {
	const header4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	up := net.FlagUp | net.FlagRunning
	linkLocalOnly := staticInterfaces{
		{Name: "lo", Flags: up | net.FlagLoopback, Addrs: []netip.Prefix{mustPrefix("127.0.0.1/8"), mustPrefix("::1/128")}},
		{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("fe80::d45c:1eff:fef1:bdd6/64")}},
	}
	ipv6Only := staticInterfaces{{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("2001:db8:1::10/64")}}}
	dualStack := staticInterfaces{{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("2001:db8:1::10/64"), mustPrefix("198.18.1.10/24")}}}
	cases := []struct {
		name   string
		files  map[string]string
		ifaces staticInterfaces
		forced string
		want   []string
	}{
		{"link-local only", map[string]string{"route": header4, "ipv6_route": ipv6RouteRA}, linkLocalOnly, "",
			[]string{"global IPv4 or IPv6 address", "set TALOS_AUTO_BOOTSTRAP_INTERFACE"}},
		{"forced link-local only", map[string]string{"route": header4, "ipv6_route": ipv6RouteRA}, linkLocalOnly, "eth0",
			[]string{`interface "eth0" (TALOS_AUTO_BOOTSTRAP_INTERFACE) has no global IPv4 or IPv6 address`}},
		{"broken ipv6_route, ipv6-only", map[string]string{"route": header4, "ipv6_route": ipv6RouteRA + "garbage\n"}, ipv6Only, "",
			[]string{"no usable IPv4 network", "ipv6_route", "line 5", "1 columns"}},
		{"broken ipv6_route, forced ipv6-only", map[string]string{"route": header4, "ipv6_route": "garbage\n"}, ipv6Only, "eth0",
			[]string{`"eth0" (TALOS_AUTO_BOOTSTRAP_INTERFACE) has only IPv6`, "ipv6_route"}},
		// With an IPv4 address to choose the IPv4 table is required, as before.
		{"no /proc/net/route, dual-stack", map[string]string{"ipv6_route": ipv6RouteRA}, dualStack, "",
			[]string{"detect network: read routes"}},
		{"no /proc/net/route, nothing usable", map[string]string{"ipv6_route": ipv6RouteRA}, linkLocalOnly, "",
			[]string{"detect network: read routes", "global IPv4 or IPv6 address"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DetectNetwork(NetworkOptions{ProcDir: procDirText(t, c.files), Interface: c.forced, Interfaces: c.ifaces})
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("error %v, want one containing %q", err, w)
				}
			}
		})
	}
}

// The IPv6 table is read only when IPv4 has no answer.
func TestDetectNetworkReadsIPv6Lazily(t *testing.T) {
	ifaces := staticInterfaces{{Name: "eth0", Flags: net.FlagUp, Addrs: []netip.Prefix{mustPrefix("198.18.0.5/24"), mustPrefix("fd00::5/64")}}}
	called := false
	spy := func() ([]Route6, error) { called = true; return nil, errors.New("unreadable") }
	if _, err := chooseNetwork(nil, spy, ifaces, ""); err != nil || called {
		t.Fatalf("IPv4 answer: %v, IPv6 table read: %v", err, called)
	}
	if _, err := chooseNetwork(nil, spy, ifaces, "eth0"); err != nil || called {
		t.Fatalf("forced IPv4 answer: %v, IPv6 table read: %v", err, called)
	}
	ifaces[0].Addrs = ifaces[0].Addrs[1:]
	if _, err := chooseNetwork(nil, spy, ifaces, ""); err == nil || !called || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("IPv6 needed: %v, IPv6 table read: %v", err, called)
	}
}

// SystemInterfaces must at least see loopback wherever the tests run.
func TestSystemInterfaces(t *testing.T) {
	ifaces, err := SystemInterfaces{}.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range ifaces {
		if it.Flags&net.FlagLoopback != 0 {
			for _, a := range it.Addrs {
				if a == mustPrefix("127.0.0.1/8") {
					return
				}
			}
		}
	}
	t.Fatalf("no 127.0.0.1/8 on a loopback interface in %+v", ifaces)
}

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
