package daemon

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
)

type interfaces []discovery.Interface

func (l interfaces) Interfaces() ([]discovery.Interface, error) { return l, nil }

// A node whose default route is on one network and whose cluster is on
// another must be known by its cluster address: that is where peers dial it
// and what they compare with its status file.
func TestAddressPeersReach(t *testing.T) {
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "net"), 0o700); err != nil {
		t.Fatal(err)
	}

	// Default route via 192.168.1.1 on eth0.
	route := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"eth1\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
	if err := os.WriteFile(filepath.Join(proc, "net", "route"), []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}

	up := net.FlagUp | net.FlagRunning
	host := interfaces{
		{Name: "lo", Flags: up | net.FlagLoopback, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
		{Name: "eth0", Flags: up, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.1.5/24")}},
		{Name: "eth1", Flags: up, Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/24")}},
	}

	cases := []struct {
		name    string
		cidr    string
		peers   []string
		want    string
		invalid bool
	}{
		{name: "no override: the default-route address", want: "192.168.1.5"},
		{name: "SCAN_CIDR on the second interface", cidr: "10.0.0.0/24", want: "10.0.0.5"},
		{name: "PEERS on the second interface's subnet", peers: []string{"10.0.0.6", "10.0.0.7"}, want: "10.0.0.5"},
		{name: "PEERS elsewhere (routed): keep the default", peers: []string{"172.16.0.6"}, want: "192.168.1.5"},
		{name: "SCAN_CIDR with no local address", cidr: "172.16.0.0/24", invalid: true},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.ProcDir = proc

			if tc.cidr != "" {
				cfg.ScanCIDR = netip.MustParsePrefix(tc.cidr)
			}

			for _, p := range tc.peers {
				cfg.Peers = append(cfg.Peers, netip.MustParseAddr(p))
			}

			got, err := networkFinder{cfg: cfg, interfaces: host}.Find(t.Context())
			if tc.invalid {
				if !config.IsInvalid(err) {
					t.Fatalf("err = %v, want a configuration error", err)
				}

				return
			}

			if err != nil {
				t.Fatal(err)
			}

			if got.LocalIP.String() != tc.want {
				t.Fatalf("local address %s, want %s", got.LocalIP, tc.want)
			}
		})
	}
}

// A network too large to sweep (an IPv6 /64, a /8) is a configuration
// error only when the sweep is the only source; next to members it is
// skipped and the range description leaves it out.
func TestTooLargeRangeFatalOnlyAlone(t *testing.T) {
	up := net.FlagUp | net.FlagRunning
	host := interfaces{{Name: "eth0", Flags: up, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00:10::5/64")}}}

	for _, tc := range []struct {
		sources []discovery.SourceName
		invalid bool
		want    string
	}{
		{sources: []discovery.SourceName{discovery.SourceScan}, invalid: true},
		{sources: []discovery.SourceName{discovery.SourceMembers, discovery.SourceScan}, want: "members"},
	} {
		cfg := config.Defaults()
		cfg.ProcDir = t.TempDir() // no route files: the first interface with a global address
		cfg.Discovery = tc.sources

		got, err := networkFinder{cfg: cfg, interfaces: host}.Find(t.Context())
		if tc.invalid {
			if !config.IsInvalid(err) || !strings.Contains(err.Error(), "MAX_SCAN_HOSTS") || !strings.Contains(err.Error(), "members") {
				t.Errorf("%v: err %v, want an InvalidError naming MAX_SCAN_HOSTS and the alternatives", tc.sources, err)
			}

			continue
		}

		if err != nil || got.Range != tc.want || got.LocalIP != netip.MustParseAddr("fd00:10::5") {
			t.Errorf("%v: %+v, %v; want range %q at fd00:10::5", tc.sources, got, err, tc.want)
		}
	}
}
