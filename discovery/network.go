package discovery

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// DefaultProcDir is where the extension sees the host's /proc.
const DefaultProcDir = "/host/proc"

// Network is the node's local network; NewTargets sweeps its Prefix unless
// SCAN_CIDR or PEERS say otherwise.
type Network struct {
	Interface string
	LocalIP   netip.Addr
	Prefix    netip.Prefix // the interface's network, masked (e.g. 10.0.0.0/24)
	Gateway   netip.Addr   // invalid when the interface has no default route
	// Range says what discovery covers, for the logs ("members+10.0.0.0/24",
	// "peers 10.0.0.5,…"): the daemon's network finder sets it from the
	// configured sources; DetectNetwork leaves it empty.
	Range string
}

// Interface is what detection needs to know about a network interface.
type Interface struct {
	Name  string
	Flags net.Flags
	// Addrs are the interface's addresses with their prefix lengths
	// (10.0.0.5/24, not masked).
	Addrs []netip.Prefix
}

// InterfaceLister lists the host's interfaces; SystemInterfaces in
// production, a fixed list in tests.
type InterfaceLister interface {
	Interfaces() ([]Interface, error)
}

// SystemInterfaces lists interfaces with net.Interfaces. The extension runs
// in the host network namespace, so these are the host's interfaces.
type SystemInterfaces struct{}

// Interfaces implements InterfaceLister.
func (SystemInterfaces) Interfaces() ([]Interface, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make([]Interface, 0, len(ifaces))
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", ifc.Name, err)
		}
		it := Interface{Name: ifc.Name, Flags: ifc.Flags}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			it.Addrs = append(it.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
		}
		out = append(out, it)
	}
	return out, nil
}

// NetworkOptions are the detection inputs. Zero values mean "detect".
type NetworkOptions struct {
	// ProcDir holds net/route and net/ipv6_route; DefaultProcDir when
	// empty.
	ProcDir string
	// Interface forces the interface (TALOS_AUTO_BOOTSTRAP_INTERFACE).
	Interface string
	// Interfaces lists interfaces; SystemInterfaces when nil.
	Interfaces InterfaceLister
}

// DetectNetwork finds the interface the node talks to its peers on. IPv4
// comes first, exactly as before IPv6 was known here: the interface
// carrying the default route (lowest metric first), else the first up,
// non-loopback interface with a global IPv4 address. Only when that gives
// nothing does IPv6 get the same two chances, from <proc>/net/ipv6_route
// and global (ULA included, link-local never) IPv6 addresses.
// opts.Interface overrides the choice of interface, not of family.
func DetectNetwork(opts NetworkOptions) (Network, error) {
	procDir := cmp.Or(opts.ProcDir, DefaultProcDir)
	lister := opts.Interfaces
	if lister == nil {
		lister = SystemInterfaces{}
	}
	ifaces, err := lister.Interfaces()
	if err != nil {
		return Network{}, fmt.Errorf("detect network: %w", err)
	}
	routes, routesErr := ReadRoutes(procDir)
	if routesErr != nil && hasAddr(ifaces, opts.Interface, usable4) {
		// Without the IPv4 table an IPv4 default route cannot be told from
		// a side network, and guessing could change the choice; only a node
		// with no IPv4 address to choose can do without it.
		return Network{}, fmt.Errorf("detect network: %w", routesErr)
	}
	n, err := chooseNetwork(routes, func() ([]Route6, error) { return ReadRoutes6(procDir) }, ifaces, opts.Interface)
	if err != nil && routesErr != nil {
		// The missing IPv4 table is likely the cause (a wrong ProcDir).
		return Network{}, fmt.Errorf("detect network: %w; %w", routesErr, err)
	}
	return n, err
}

// hasAddr tells whether the forced interface, or any interface when none is
// forced, has an address that usable accepts.
func hasAddr(ifaces []Interface, forced string, usable func(netip.Addr) bool) bool {
	for _, it := range ifaces {
		if forced != "" && it.Name != forced {
			continue
		}
		for _, p := range it.Addrs {
			if usable(p.Addr().Unmap()) {
				return true
			}
		}
	}
	return false
}

// usable4 and usable6 are the addresses that can name the node to its
// peers. Link-local addresses are left out: they need a zone to be dialled
// and are not what a peer list or a certificate carries. IsGlobalUnicast
// counts private IPv4 and ULA (fc00::/7) as global, as it should here.
func usable4(a netip.Addr) bool { return a.Is4() && a.IsGlobalUnicast() }

func usable6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() && a.IsGlobalUnicast() }

// defaultRoute is what the choice needs of a default route of either
// family.
type defaultRoute struct {
	iface   string
	gateway netip.Addr // invalid when the route has no RTF_GATEWAY
	metric  uint32
}

// sortDefaults orders default routes as the kernel prefers them: lowest
// metric first, the table's order among equals.
func sortDefaults(d []defaultRoute) []defaultRoute {
	slices.SortStableFunc(d, func(a, b defaultRoute) int { return cmp.Compare(a.metric, b.metric) })
	return d
}

// asDefault is the route as a default route, if it is one.
func (r Route) asDefault() (defaultRoute, bool) {
	return defaultRoute{iface: r.Interface, gateway: gatewayIf(r.Flags&RouteFlagGateway != 0, r.Gateway), metric: r.Metric}, r.IsDefault()
}

func (r Route6) asDefault() (defaultRoute, bool) {
	return defaultRoute{iface: r.Interface, gateway: gatewayIf(r.Flags&RouteFlagGateway != 0, r.Gateway), metric: r.Metric}, r.IsDefault()
}

func gatewayIf(flagged bool, gw netip.Addr) netip.Addr {
	if !flagged {
		return netip.Addr{}
	}
	return gw
}

// defaults are the default routes of one family, in the kernel's order.
func defaults[R interface{ asDefault() (defaultRoute, bool) }](routes []R) []defaultRoute {
	var d []defaultRoute
	for _, r := range routes {
		if dr, ok := r.asDefault(); ok {
			d = append(d, dr)
		}
	}
	return sortDefaults(d)
}

// gatewayOf is the next hop of the preferred default route through the
// interface, invalid when there is none.
func gatewayOf(defaults []defaultRoute, name string) netip.Addr {
	for _, r := range defaults {
		if r.iface == name && r.gateway.IsValid() {
			return r.gateway
		}
	}
	return netip.Addr{}
}

// chooseNetwork makes the choice DetectNetwork describes. routes6 is called
// only once IPv4 has no answer, so that on a node with IPv4 the IPv6 table,
// whatever it holds, cannot change the result or fail it.
func chooseNetwork(routes []Route, routes6 func() ([]Route6, error), ifaces []Interface, forced string) (Network, error) {
	byName := make(map[string]Interface, len(ifaces))
	for _, it := range ifaces {
		byName[it.Name] = it
	}
	v4 := defaults(routes)

	if forced != "" {
		it, ok := byName[forced]
		if !ok {
			return Network{}, fmt.Errorf("interface %q (TALOS_AUTO_BOOTSTRAP_INTERFACE) does not exist", forced)
		}
		if it.Flags&net.FlagUp == 0 {
			return Network{}, fmt.Errorf("interface %q (TALOS_AUTO_BOOTSTRAP_INTERFACE) is down", forced)
		}
		gw := gatewayOf(v4, forced)
		if addr, ok := pickAddr(it, gw, usable4); ok {
			return newNetwork(forced, addr, gw), nil
		}
		if !hasAddr([]Interface{it}, "", usable6) {
			return Network{}, fmt.Errorf("interface %q (TALOS_AUTO_BOOTSTRAP_INTERFACE) has no global IPv4 or IPv6 address", forced)
		}
		r6, err := routes6()
		if err != nil {
			return Network{}, fmt.Errorf("interface %q (TALOS_AUTO_BOOTSTRAP_INTERFACE) has only IPv6: %w", forced, err)
		}
		gw = gatewayOf(defaults(r6), forced)
		addr, _ := pickAddr(it, gw, usable6)
		return newNetwork(forced, addr, gw), nil
	}

	if n, ok := chooseFamily(v4, ifaces, byName, usable4); ok {
		return n, nil
	}
	r6, err := routes6()
	if err != nil {
		return Network{}, fmt.Errorf("no usable IPv4 network, so IPv6 is needed: %w", err)
	}
	if n, ok := chooseFamily(defaults(r6), ifaces, byName, usable6); ok {
		return n, nil
	}
	return Network{}, fmt.Errorf("no default route and no up, non-loopback interface with a global IPv4 or IPv6 address; set TALOS_AUTO_BOOTSTRAP_INTERFACE")
}

// chooseFamily is the choice within one address family: the default-route
// interface, else the first up, non-loopback interface with an address.
func chooseFamily(defaults []defaultRoute, ifaces []Interface, byName map[string]Interface, usable func(netip.Addr) bool) (Network, bool) {
	for _, r := range defaults {
		// lo's unreachable IPv6 default lacks RTF_UP: IsDefault left it out.
		it, ok := byName[r.iface]
		if !ok || it.Flags&net.FlagUp == 0 {
			continue
		}
		gw := gatewayOf(defaults, r.iface)
		if addr, ok := pickAddr(it, gw, usable); ok {
			return newNetwork(it.Name, addr, gw), true
		}
	}

	// No usable default route: prefer an interface with carrier, so that a
	// bridge with nothing attached (docker0) does not win over the NIC.
	for _, needRunning := range []bool{true, false} {
		for _, it := range ifaces {
			if it.Flags&net.FlagUp == 0 || it.Flags&net.FlagLoopback != 0 {
				continue
			}
			if needRunning && it.Flags&net.FlagRunning == 0 {
				continue
			}
			if addr, ok := pickAddr(it, netip.Addr{}, usable); ok {
				return newNetwork(it.Name, addr, netip.Addr{}), true
			}
		}
	}
	return Network{}, false
}

func newNetwork(name string, addr netip.Prefix, gw netip.Addr) Network {
	return Network{Interface: name, LocalIP: addr.Addr(), Prefix: addr.Masked(), Gateway: gw}
}

// pickAddr chooses the interface address, among those usable accepts, that
// names the node on its network: the one whose subnet holds the gateway,
// else the widest subnet. Width matters because Talos adds a control-plane
// VIP to the same interface as a /32 (a /128 for IPv6), and such a prefix
// has no neighbours to scan. An IPv6 gateway is usually link-local and so
// in no subnet: width decides.
func pickAddr(it Interface, gw netip.Addr, usable func(netip.Addr) bool) (netip.Prefix, bool) {
	var best netip.Prefix
	found := false
	for _, p := range it.Addrs {
		a := p.Addr().Unmap()
		if !usable(a) {
			continue
		}
		p = netip.PrefixFrom(a.WithZone(""), p.Bits())
		switch {
		case !found:
			best, found = p, true
		case gw.IsValid() && p.Contains(gw) && !best.Contains(gw):
			best = p
		case gw.IsValid() && best.Contains(gw) && !p.Contains(gw):
		case p.Bits() < best.Bits():
			best = p
		}
	}
	return best, found
}
