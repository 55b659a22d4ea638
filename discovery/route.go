package discovery

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Route flags from <linux/route.h>, as printed in the Flags column.
const (
	RouteFlagUp      = 0x0001 // RTF_UP
	RouteFlagGateway = 0x0002 // RTF_GATEWAY
	RouteFlagHost    = 0x0004 // RTF_HOST
)

// Route is one IPv4 route of the kernel's main table as /proc/net/route
// shows it.
type Route struct {
	Interface   string
	Destination netip.Prefix // destination and mask together
	Gateway     netip.Addr   // 0.0.0.0 when the destination is on-link
	Flags       uint16
	Metric      uint32
}

// IsDefault tells whether the route is a usable default route.
func (r Route) IsDefault() bool {
	return r.Flags&RouteFlagUp != 0 && r.Destination.Bits() == 0
}

// routeFields is the number of columns the kernel has printed since 2.2;
// only the first eight are used.
const routeFields = 11

// ReadRoutes reads <procDir>/net/route.
func ReadRoutes(procDir string) ([]Route, error) {
	path := filepath.Join(procDir, "net", "route")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	defer f.Close()
	routes, err := ParseRoutes(f)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return routes, nil
}

// ParseRoutes parses the text of /proc/net/route. The header line is
// required (it is how a file of the wrong kind is told apart); blank lines
// are ignored; any other malformed line is an error naming the line.
func ParseRoutes(r io.Reader) ([]Route, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	var routes []Route
	header := false
	for line := 1; sc.Scan(); line++ {
		text := sc.Bytes()
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		fields := strings.Fields(string(text))
		if !header {
			if fields[0] != "Iface" || len(fields) < 8 || fields[7] != "Mask" {
				return nil, fmt.Errorf("line %d: not a /proc/net/route header: %q", line, clip(text))
			}
			header = true
			continue
		}
		rt, err := parseRouteLine(fields)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", line, clip(text), err)
		}
		routes = append(routes, rt)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scan routes: %w", err)
	}
	if !header {
		return nil, fmt.Errorf("empty route table: no /proc/net/route header")
	}
	return routes, nil
}

func parseRouteLine(fields []string) (Route, error) {
	if len(fields) != routeFields {
		return Route{}, fmt.Errorf("%d columns, want %d", len(fields), routeFields)
	}
	dst, err := parseHexAddr(fields[1])
	if err != nil {
		return Route{}, fmt.Errorf("destination: %w", err)
	}
	gw, err := parseHexAddr(fields[2])
	if err != nil {
		return Route{}, fmt.Errorf("gateway: %w", err)
	}
	flags, err := strconv.ParseUint(fields[3], 16, 16)
	if err != nil {
		return Route{}, fmt.Errorf("flags: %w", err)
	}
	metric, err := strconv.ParseUint(fields[6], 10, 32)
	if err != nil {
		return Route{}, fmt.Errorf("metric: %w", err)
	}
	mask, err := parseHexAddr(fields[7])
	if err != nil {
		return Route{}, fmt.Errorf("mask: %w", err)
	}
	ones, err := maskBits(mask)
	if err != nil {
		return Route{}, err
	}
	prefix := netip.PrefixFrom(dst, ones)
	if prefix.Masked() != prefix {
		return Route{}, fmt.Errorf("destination %s has host bits outside mask /%d", dst, ones)
	}
	return Route{
		Interface:   fields[0],
		Destination: prefix,
		Gateway:     gw,
		Flags:       uint16(flags),
		Metric:      uint32(metric),
	}, nil
}

// parseHexAddr decodes the kernel's %08X rendering of a __be32: the value
// printed is the address bytes read as a host-order integer, so putting it
// back in host order restores the bytes.
func parseHexAddr(s string) (netip.Addr, error) {
	if len(s) != 8 {
		return netip.Addr{}, fmt.Errorf("%q is not 8 hex digits", s)
	}
	var raw [4]byte
	if _, err := hex.Decode(raw[:], []byte(s)); err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not 8 hex digits", s)
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], binary.BigEndian.Uint32(raw[:]))
	return netip.AddrFrom4(b), nil
}

func maskBits(mask netip.Addr) (int, error) {
	b := mask.As4()
	v := binary.BigEndian.Uint32(b[:])
	ones := bits.LeadingZeros32(^v)
	if ones < 32 && v<<ones != 0 {
		return 0, fmt.Errorf("mask %s is not contiguous", mask)
	}
	return ones, nil
}

// clip keeps error messages short when the input is garbage.
func clip(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
