package discovery

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RouteFlagReject is RTF_REJECT: the kernel parks an unreachable IPv6
// default route on lo (flags 00200200) when there is no real one.
const RouteFlagReject = 0x0200

// Route6 is one IPv6 route as /proc/net/ipv6_route shows it. Unlike
// /proc/net/route that file lists every table, the local one included, and
// its flags are 32 bits wide (RTF_ADDRCONF, RTF_LOCAL and others live above
// bit 15), hence a type of its own.
type Route6 struct {
	Interface   string
	Destination netip.Prefix
	Source      netip.Prefix // ::/0 unless the route is source-specific
	Gateway     netip.Addr   // :: when the destination is on-link; often link-local
	Flags       uint32
	Metric      uint32
}

// IsDefault tells whether the route is a usable default route.
func (r Route6) IsDefault() bool {
	return r.Flags&RouteFlagUp != 0 && r.Flags&RouteFlagReject == 0 && r.Destination.Bits() == 0
}

// route6Fields is the number of columns of every kernel since 2.2.
const route6Fields = 10

// ReadRoutes6 reads <procDir>/net/ipv6_route. The file is absent when IPv6
// is disabled in the kernel (ipv6.disable=1): that is no IPv6 routes, not
// an error.
func ReadRoutes6(procDir string) ([]Route6, error) {
	path := filepath.Join(procDir, "net", "ipv6_route")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read IPv6 routes: %w", err)
	}
	defer f.Close()
	routes, err := ParseRoutes6(f)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return routes, nil
}

// ParseRoutes6 parses the text of /proc/net/ipv6_route. The file has no
// header, so an empty text is an empty table; blank lines are ignored; any
// other malformed line is an error naming the line.
func ParseRoutes6(r io.Reader) ([]Route6, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	var routes []Route6
	for line := 1; sc.Scan(); line++ {
		text := sc.Bytes()
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		rt, err := parseRoute6Line(strings.Fields(string(text)))
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", line, clip(text), err)
		}
		routes = append(routes, rt)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scan IPv6 routes: %w", err)
	}
	return routes, nil
}

func parseRoute6Line(fields []string) (Route6, error) {
	if len(fields) != route6Fields {
		if fields[0] == "Iface" {
			// The likeliest mix-up, worth saying so.
			return Route6{}, fmt.Errorf("a /proc/net/route header, not /proc/net/ipv6_route")
		}
		return Route6{}, fmt.Errorf("%d columns, want %d", len(fields), route6Fields)
	}
	dst, err := parseHexPrefix6(fields[0], fields[1])
	if err != nil {
		return Route6{}, fmt.Errorf("destination: %w", err)
	}
	src, err := parseHexPrefix6(fields[2], fields[3])
	if err != nil {
		return Route6{}, fmt.Errorf("source: %w", err)
	}
	gw, err := parseHexAddr6(fields[4])
	if err != nil {
		return Route6{}, fmt.Errorf("next hop: %w", err)
	}
	var nums [4]uint32 // metric, refcount, use, flags
	for i, name := range []string{"metric", "refcount", "use", "flags"} {
		v, err := parseHex32(fields[5+i])
		if err != nil {
			return Route6{}, fmt.Errorf("%s: %w", name, err)
		}
		nums[i] = v
	}
	return Route6{
		Interface:   fields[9],
		Destination: dst,
		Source:      src,
		Gateway:     gw,
		Flags:       nums[3],
		Metric:      nums[0],
	}, nil
}

// parseHexPrefix6 decodes an address column and its %02x prefix length.
func parseHexPrefix6(addr, length string) (netip.Prefix, error) {
	a, err := parseHexAddr6(addr)
	if err != nil {
		return netip.Prefix{}, err
	}
	if len(length) != 2 {
		return netip.Prefix{}, fmt.Errorf("prefix length %q is not 2 hex digits", length)
	}
	bits, err := strconv.ParseUint(length, 16, 8)
	if err != nil || bits > 128 {
		return netip.Prefix{}, fmt.Errorf("prefix length %q is not 00 to 80 (0 to 128)", length)
	}
	p := netip.PrefixFrom(a, int(bits))
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits outside /%d", a, bits)
	}
	return p, nil
}

// parseHexAddr6 decodes the kernel's %pi6 rendering: the 16 address bytes
// in network order, so unlike IPv4 there is no byte order to undo.
func parseHexAddr6(s string) (netip.Addr, error) {
	var b [16]byte
	if len(s) != 32 {
		return netip.Addr{}, fmt.Errorf("%q is not 32 hex digits", s)
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not 32 hex digits", s)
	}
	return netip.AddrFrom16(b), nil
}

func parseHex32(s string) (uint32, error) {
	if len(s) != 8 {
		return 0, fmt.Errorf("%q is not 8 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not 8 hex digits", s)
	}
	return uint32(v), nil
}
