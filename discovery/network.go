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
	// ProcDir holds net/route; DefaultProcDir when empty.
	ProcDir string
	// Interface forces the interface (TALOS_AUTO_BOOTSTRAP_INTERFACE).
	Interface string
	// Interfaces lists interfaces; SystemInterfaces when nil.
	Interfaces InterfaceLister
}

// DetectNetwork finds the interface the node talks to its peers on: the one
// carrying the default route (lowest metric first), else the first up,
// non-loopback interface with a global IPv4 address; opts.Interface
// overrides the choice.
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
	routes, err := ReadRoutes(procDir)
	if err != nil {
		return Network{}, fmt.Errorf("detect network: %w", err)
	}
	return chooseNetwork(routes, ifaces, opts.Interface)
}

func chooseNetwork(routes []Route, ifaces []Interface, forced string) (Network, error) {
	byName := make(map[string]Interface, len(ifaces))
	for _, it := range ifaces {
		byName[it.Name] = it
	}
	defaults := make([]Route, 0, 2)
	for _, r := range routes {
		if r.IsDefault() {
			defaults = append(defaults, r)
		}
	}
	// Lowest metric wins, as in the kernel's own choice.
	slices.SortStableFunc(defaults, func(a, b Route) int { return cmp.Compare(a.Metric, b.Metric) })
	gatewayOf := func(name string) netip.Addr {
		for _, r := range defaults {
			if r.Interface == name && r.Flags&RouteFlagGateway != 0 {
				return r.Gateway
			}
		}
		return netip.Addr{}
	}

	if forced != "" {
		it, ok := byName[forced]
		if !ok {
			return Network{}, fmt.Errorf("interface %q (TALOS_AUTO_BOOTSTRAP_INTERFACE) does not exist", forced)
		}
		if it.Flags&net.FlagUp == 0 {
			return Network{}, fmt.Errorf("interface %q (TALOS_AUTO_BOOTSTRAP_INTERFACE) is down", forced)
		}
		gw := gatewayOf(forced)
		addr, ok := pickAddr(it, gw)
		if !ok {
			return Network{}, fmt.Errorf("interface %q (TALOS_AUTO_BOOTSTRAP_INTERFACE) has no global IPv4 address", forced)
		}
		return newNetwork(forced, addr, gw), nil
	}

	for _, r := range defaults {
		it, ok := byName[r.Interface]
		if !ok || it.Flags&net.FlagUp == 0 {
			continue
		}
		gw := gatewayOf(r.Interface)
		if addr, ok := pickAddr(it, gw); ok {
			return newNetwork(it.Name, addr, gw), nil
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
			if addr, ok := pickAddr(it, netip.Addr{}); ok {
				return newNetwork(it.Name, addr, netip.Addr{}), nil
			}
		}
	}
	return Network{}, fmt.Errorf("no default route and no up, non-loopback interface with a global IPv4 address; set TALOS_AUTO_BOOTSTRAP_INTERFACE")
}

func newNetwork(name string, addr netip.Prefix, gw netip.Addr) Network {
	return Network{Interface: name, LocalIP: addr.Addr(), Prefix: addr.Masked(), Gateway: gw}
}

// pickAddr chooses the interface address that names the node on its
// network: the one whose subnet holds the gateway, else the widest subnet.
// Width matters because Talos adds a control-plane VIP to the same
// interface as a /32, and a /32 has no neighbours to scan.
func pickAddr(it Interface, gw netip.Addr) (netip.Prefix, bool) {
	var best netip.Prefix
	found := false
	for _, p := range it.Addrs {
		a := p.Addr().Unmap()
		if !a.Is4() || !a.IsGlobalUnicast() {
			continue
		}
		p = netip.PrefixFrom(a, p.Bits())
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
