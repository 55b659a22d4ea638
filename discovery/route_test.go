package discovery

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const routeFixtures = "../testdata/discovery/routes"

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(routeFixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixtureInterfaces turns the `ip -j addr` capture saved next to a route
// fixture into the interface list the detection sees.
type fixtureInterfaces string

func (f fixtureInterfaces) Interfaces() ([]Interface, error) {
	b, err := os.ReadFile(filepath.Join(routeFixtures, string(f)+".addr.json"))
	if err != nil {
		return nil, err
	}
	var links []struct {
		Name     string   `json:"ifname"`
		Flags    []string `json:"flags"`
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(b, &links); err != nil {
		return nil, fmt.Errorf("%s: %w", f, err)
	}
	var out []Interface
	for _, l := range links {
		it := Interface{Name: l.Name}
		for _, fl := range l.Flags {
			switch fl {
			case "UP":
				it.Flags |= net.FlagUp
			case "LOOPBACK":
				it.Flags |= net.FlagLoopback
			case "LOWER_UP":
				it.Flags |= net.FlagRunning
			}
		}
		for _, a := range l.AddrInfo {
			it.Addrs = append(it.Addrs, netip.PrefixFrom(netip.MustParseAddr(a.Local), a.PrefixLen))
		}
		out = append(out, it)
	}
	return out, nil
}

func TestParseRoutesFixtures(t *testing.T) {
	routes, err := ParseRoutes(bytes.NewReader(readFixture(t, "multi.route")))
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{
		{"eth0", netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("198.18.1.1"), 3, 1024},
		{"eth0", netip.MustParsePrefix("198.18.1.0/24"), netip.MustParseAddr("0.0.0.0"), 1, 0},
		{"eth2", netip.MustParsePrefix("198.18.200.0/22"), netip.MustParseAddr("0.0.0.0"), 1, 0},
		{"eth1", netip.MustParsePrefix("198.19.5.0/24"), netip.MustParseAddr("0.0.0.0"), 1, 0},
		{"eth1", netip.MustParsePrefix("198.19.100.0/24"), netip.MustParseAddr("198.19.5.1"), 3, 0},
	}
	if !slices.Equal(routes, want) {
		t.Fatalf("routes:\n got %v\nwant %v", routes, want)
	}
	if !routes[0].IsDefault() || routes[1].IsDefault() {
		t.Fatalf("IsDefault wrong: %v", routes[:2])
	}

	// Every fixture parses, and the /31 mask is understood.
	files, _ := filepath.Glob(filepath.Join(routeFixtures, "*.route"))
	if len(files) < 7 {
		t.Fatalf("only %d fixtures", len(files))
	}
	for _, f := range files {
		if _, err := ReadRoutes(procDirFor(t, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	p2p, _ := ParseRoutes(bytes.NewReader(readFixture(t, "p2p31.route")))
	if p2p[1].Destination != netip.MustParsePrefix("198.18.11.0/31") {
		t.Fatalf("p2p31: %v", p2p)
	}
}

// procDirFor lays a route fixture out as <dir>/net/route.
func procDirFor(t testing.TB, fixture string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "net", "route"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestParseRoutesRejects(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	cases := map[string]struct{ text, want string }{
		"empty":          {"", "no /proc/net/route header"},
		"not routes":     {"Inter-|   Receive\n", "not a /proc/net/route header"},
		"short line":     {header + "eth0\t00000000\t010200C0\t0003\n", "4 columns"},
		"bad hex":        {header + "eth0\t0000000G\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", "destination"},
		"short hex":      {header + "eth0\t000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", "destination"},
		"bad metric":     {header + "eth0\t00000000\t010200C0\t0003\t0\t0\t-1\t00000000\t0\t0\t0\n", "metric"},
		"holey mask":     {header + "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00FF00FF\t0\t0\t0\n", "not contiguous"},
		"host bits":      {header + "eth0\t050200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "host bits"},
		"flags too wide": {header + "eth0\t00000000\t010200C0\t10003\t0\t0\t0\t00000000\t0\t0\t0\n", "flags"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseRoutes(strings.NewReader(c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := ReadRoutes(t.TempDir()); err == nil {
		t.Fatal("missing file: no error")
	}
	routes, err := ParseRoutes(strings.NewReader(header + "\n"))
	if err != nil || len(routes) != 0 {
		t.Fatalf("header only: %v %v", routes, err)
	}
}

// formatRoutes writes routes back the way the kernel prints them.
func formatRoutes(routes []Route) string {
	var b strings.Builder
	b.WriteString("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n")
	hexAddr := func(a netip.Addr) uint32 {
		v := a.As4()
		return binary.NativeEndian.Uint32(v[:])
	}
	for _, r := range routes {
		m := net.CIDRMask(r.Destination.Bits(), 32)
		fmt.Fprintf(&b, "%s\t%08X\t%08X\t%04X\t0\t0\t%d\t%08X\t0\t0\t0\n",
			r.Interface, hexAddr(r.Destination.Addr()), hexAddr(r.Gateway), r.Flags, r.Metric,
			binary.NativeEndian.Uint32(m))
	}
	return b.String()
}

func FuzzParseRoutes(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(routeFixtures, "*.route"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		routes, err := ParseRoutes(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever parses survives a round trip through the kernel's format.
		again, err := ParseRoutes(strings.NewReader(formatRoutes(routes)))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !slices.Equal(routes, again) {
			t.Fatalf("round trip:\n %v\n %v", routes, again)
		}
		for _, r := range routes {
			if r.Destination.Masked() != r.Destination || !r.Gateway.Is4() || r.Interface == "" {
				t.Fatalf("bad route %+v", r)
			}
		}
	})
}
