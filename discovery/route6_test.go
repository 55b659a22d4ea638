package discovery

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// ipv6RouteULA is /proc/net/ipv6_route of a Linux container with a ULA
// address and a default route through a ULA next hop, as the kernel prints
// it (device names right-aligned in 8 columns). It lists the local table
// too, and the unreachable default the kernel parks on lo.
const ipv6RouteULA = `fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001     eth0
fe8000000000000000fc00fffe000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001     eth0
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
`

// ipv6RouteRA is the shape a router advertisement leaves: a /64 from
// RTF_ADDRCONF and a default route through the router's link-local
// address (RTF_UP|RTF_GATEWAY|RTF_DEFAULT|RTF_ADDRCONF|RTF_EXPIRES).
const ipv6RouteRA = `20010db8000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00040001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
`

func TestParseRoutes6(t *testing.T) {
	cases := []struct {
		name, text string
		want       []Route6
		defaults   []int // indexes of the routes IsDefault accepts
	}{
		{"ula container", ipv6RouteULA, []Route6{
			{"eth0", mustPrefix("fd00::/64"), mustPrefix("::/0"), mustAddr("::"), 0x1, 0x100},
			{"eth0", mustPrefix("fe80::/64"), mustPrefix("::/0"), mustAddr("::"), 0x1, 0x100},
			{"eth0", mustPrefix("::/0"), mustPrefix("::/0"), mustAddr("fd00::1"), 0x3, 0x400},
			{"lo", mustPrefix("::1/128"), mustPrefix("::/0"), mustAddr("::"), 0x80200001, 0},
			{"eth0", mustPrefix("fd00::2/128"), mustPrefix("::/0"), mustAddr("::"), 0x80200001, 0},
			{"eth0", mustPrefix("fe80::fc:ff:fe00:1/128"), mustPrefix("::/0"), mustAddr("::"), 0x80200001, 0},
			{"eth0", mustPrefix("ff00::/8"), mustPrefix("::/0"), mustAddr("::"), 0x1, 0x100},
			{"lo", mustPrefix("::/0"), mustPrefix("::/0"), mustAddr("::"), 0x00200200, 0xffffffff},
		}, []int{2}},
		{"router advertisement", ipv6RouteRA, []Route6{
			{"eth0", mustPrefix("2001:db8:1::/64"), mustPrefix("::/0"), mustAddr("::"), 0x40001, 0x100},
			{"eth0", mustPrefix("fe80::/64"), mustPrefix("::/0"), mustAddr("::"), 0x1, 0x100},
			{"eth0", mustPrefix("::/0"), mustPrefix("::/0"), mustAddr("fe80::1"), 0x450003, 0x400},
			{"lo", mustPrefix("::/0"), mustPrefix("::/0"), mustAddr("::"), 0x00200200, 0xffffffff},
		}, []int{2}},
		{"one line, blank lines, no trailing newline",
			"\n00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\n  \n" +
				"20010db8000000000000000000000000 20 20010db8000000000000000000000000 30 00000000000000000000000000000000 00000000 00000000 00000000 00000001 eth1",
			[]Route6{
				{"eth0", mustPrefix("::/0"), mustPrefix("::/0"), mustAddr("fe80::1"), 0x3, 0x400},
				{"eth1", mustPrefix("2001:db8::/32"), mustPrefix("2001:db8::/48"), mustAddr("::"), 0x1, 0},
			}, []int{0}},
		{"empty", "", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseRoutes6(strings.NewReader(c.text))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("routes:\n got %v\nwant %v", got, c.want)
			}
			var defaults []int
			for i, r := range got {
				if r.IsDefault() {
					defaults = append(defaults, i)
				}
			}
			if !slices.Equal(defaults, c.defaults) {
				t.Fatalf("defaults %v, want %v", defaults, c.defaults)
			}
		})
	}
}

func TestParseRoutes6Rejects(t *testing.T) {
	const good = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"
	line := func(f ...string) string { return good + strings.Join(f, " ") + "\n" }
	const z = "00000000000000000000000000000000"
	cases := map[string]struct{ text, want string }{
		"ipv4 table":    {"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n", "line 1 \"Iface"},
		"short line":    {line(z, "00", z, "00", z, "00000400"), "line 2"},
		"columns":       {line(z, "00", z, "00", z, "00000400"), "6 columns, want 10"},
		"extra column":  {line(z, "00", z, "00", z, "00000400", "00000001", "00000000", "00000003", "eth0", "x"), "11 columns"},
		"bad dest hex":  {line("0000000000000000000000000000000g", "00", z, "00", z, "00000400", "00000001", "00000000", "00000003", "eth0"), "destination"},
		"short dest":    {line("0000", "00", z, "00", z, "00000400", "00000001", "00000000", "00000003", "eth0"), "not 32 hex digits"},
		"dest length":   {line(z, "81", z, "00", z, "00000400", "00000001", "00000000", "00000003", "eth0"), "prefix length \"81\""},
		"length digits": {line(z, "0", z, "00", z, "00000400", "00000001", "00000000", "00000003", "eth0"), "not 2 hex digits"},
		"host bits":     {line("fd000000000000000000000000000001", "40", z, "00", z, "00000400", "00000001", "00000000", "00000003", "eth0"), "host bits outside /64"},
		"bad source":    {line(z, "00", z, "zz", z, "00000400", "00000001", "00000000", "00000003", "eth0"), "source"},
		"bad next hop":  {line(z, "00", z, "00", "fe80", "00000400", "00000001", "00000000", "00000003", "eth0"), "next hop"},
		"bad metric":    {line(z, "00", z, "00", z, "-0000400", "00000001", "00000000", "00000003", "eth0"), "metric"},
		"bad refcount":  {line(z, "00", z, "00", z, "00000400", "1", "00000000", "00000003", "eth0"), "refcount"},
		"bad use":       {line(z, "00", z, "00", z, "00000400", "00000001", "0000000x", "00000003", "eth0"), "use"},
		"wide flags":    {line(z, "00", z, "00", z, "00000400", "00000001", "00000000", "100000003", "eth0"), "flags"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseRoutes6(strings.NewReader(c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestReadRoutes6(t *testing.T) {
	// IPv6 disabled in the kernel: no file, no routes, no error.
	routes, err := ReadRoutes6(t.TempDir())
	if err != nil || routes != nil {
		t.Fatalf("missing file: %v %v", routes, err)
	}
	routes, err = ReadRoutes6(procDirText(t, map[string]string{"ipv6_route": ipv6RouteRA}))
	if err != nil || len(routes) != 4 {
		t.Fatalf("RA table: %v %v", routes, err)
	}
	_, err = ReadRoutes6(procDirText(t, map[string]string{"ipv6_route": "garbage\n"}))
	if err == nil || !strings.Contains(err.Error(), filepath.Join("net", "ipv6_route")) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("garbage: %v", err)
	}
	// Any other failure to read is an error.
	dir := procDirText(t, nil)
	if err := os.Mkdir(filepath.Join(dir, "net", "ipv6_route"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRoutes6(dir); err == nil {
		t.Fatal("a directory read as ipv6_route: no error")
	}
}

// procDirText lays out <dir>/net/<name> files with the given text.
func procDirText(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, "net", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// formatRoutes6 writes routes back the way the kernel prints them.
func formatRoutes6(routes []Route6) string {
	var b strings.Builder
	for _, r := range routes {
		d, s, g := r.Destination.Addr().As16(), r.Source.Addr().As16(), r.Gateway.As16()
		fmt.Fprintf(&b, "%x %02x %x %02x %x %08x %08x %08x %08x %8s\n",
			d, r.Destination.Bits(), s, r.Source.Bits(), g, r.Metric, 1, 0, r.Flags, r.Interface)
	}
	return b.String()
}

func FuzzParseRoutes6(f *testing.F) {
	f.Add([]byte(ipv6RouteULA))
	f.Add([]byte(ipv6RouteRA))
	f.Fuzz(func(t *testing.T, data []byte) {
		routes, err := ParseRoutes6(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever parses survives a round trip through the kernel's format.
		again, err := ParseRoutes6(strings.NewReader(formatRoutes6(routes)))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !slices.Equal(routes, again) {
			t.Fatalf("round trip:\n %v\n %v", routes, again)
		}
		for _, r := range routes {
			if r.Destination.Masked() != r.Destination || r.Source.Masked() != r.Source || !r.Gateway.Is6() || r.Interface == "" {
				t.Fatalf("bad route %+v", r)
			}
		}
	})
}
