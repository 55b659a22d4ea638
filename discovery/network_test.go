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
		{"ci-container", "", Network{"eth0", mustAddr("192.0.2.2"), mustPrefix("192.0.2.0/24"), mustAddr("192.0.2.1")}},
		{"multi", "", Network{"eth0", mustAddr("198.18.1.10"), mustPrefix("198.18.1.0/24"), mustAddr("198.18.1.1")}},
		{"multi", "eth2", Network{"eth2", mustAddr("198.18.200.10"), mustPrefix("198.18.200.0/22"), netip.Addr{}}},
		// The address lives on the bridge, not on the enslaved NIC.
		{"bridge", "", Network{"br0", mustAddr("198.18.4.20"), mustPrefix("198.18.4.0/23"), mustAddr("198.18.4.1")}},
		// docker0 comes first but has no carrier.
		{"nodefault", "", Network{"eth0", mustAddr("198.18.7.5"), mustPrefix("198.18.7.0/24"), netip.Addr{}}},
		{"secondary-default", "", Network{"eth1", mustAddr("198.19.9.10"), mustPrefix("198.19.9.0/24"), mustAddr("198.19.9.1")}},
		{"secondary-default", "eth0", Network{"eth0", mustAddr("198.18.9.10"), mustPrefix("198.18.9.0/24"), netip.Addr{}}},
		// Lowest metric wins, not the first line.
		{"two-defaults", "", Network{"eth1", mustAddr("198.18.13.10"), mustPrefix("198.18.13.0/24"), mustAddr("198.18.13.1")}},
		// The /32 VIP is not the node's network.
		{"vip", "", Network{"eth0", mustAddr("198.18.10.5"), mustPrefix("198.18.10.0/24"), mustAddr("198.18.10.1")}},
		{"p2p31", "", Network{"eth0", mustAddr("198.18.11.0"), mustPrefix("198.18.11.0/31"), mustAddr("198.18.11.1")}},
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
		"no ipv4 forced": {"peth0", fixtureInterfaces("nodefault"), `"peth0" (TALOS_AUTO_BOOTSTRAP_INTERFACE) has no global IPv4`},
		"lister fails":   {"", failingInterfaces{}, "netlink says no"},
		"nothing usable": {"", staticInterfaces{
			{Name: "lo", Flags: up | net.FlagLoopback, Addrs: []netip.Prefix{mustPrefix("127.0.0.1/8")}},
			{Name: "eth0", Flags: up, Addrs: []netip.Prefix{mustPrefix("169.254.3.4/16"), mustPrefix("fd00::5/64")}},
			{Name: "eth1", Flags: 0, Addrs: []netip.Prefix{mustPrefix("198.18.0.5/24")}},
		}, "set TALOS_AUTO_BOOTSTRAP_INTERFACE"},
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
	got, err := chooseNetwork(nil, ifaces, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.LocalIP != mustAddr("198.18.10.5") || got.Prefix != mustPrefix("198.18.10.0/24") {
		t.Fatalf("got %+v", got)
	}
	// A default route whose interface is down is passed over.
	routes := []Route{{Interface: "eth9", Destination: mustPrefix("0.0.0.0/0"), Gateway: mustAddr("198.18.0.1"), Flags: 3}}
	got, err = chooseNetwork(routes, ifaces, "")
	if err != nil || got.Interface != "eth0" || got.Gateway.IsValid() {
		t.Fatalf("got %+v, %v", got, err)
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
