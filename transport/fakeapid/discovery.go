package fakeapid

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/cluster"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// Cluster discovery as Talos serves it before the bootstrap
// (internal/app/machined/pkg/controllers/cluster): LocalAffiliateController
// publishes the node's own Affiliate, the discovery service brings in the
// Affiliates of every other node of the cluster, and MemberController turns
// each Affiliate with a nodename into a Member named after it. Here the
// Registry stands for the discovery service, and a cluster is a CA.

const (
	// apiServerPort is APIServerConfig's LocalPort default, which
	// LocalAffiliateController publishes for control-plane nodes.
	apiServerPort = 6443
	// discoveryServiceEndpoint is ConfigController's rendering of the
	// default endpoint https://discovery.talos.dev/.
	discoveryServiceEndpoint = "discovery.talos.dev:443"
)

// derivedNodeID stands for Talos's random node identity (base62 of 32
// random bytes, adapters/cluster/identity.go): random-looking, but the same
// in every process that knows the node's CA and IP.
func derivedNodeID(ca string, ip netip.Addr) string {
	sum := sha256.Sum256([]byte("fakeapid node id\x00" + ca + "\x00" + ip.String()))

	return new(big.Int).SetBytes(sum[:]).Text(62)
}

// discoveryAddrs is node.DiscoveryAddrs, by default IP plus every served
// address that another node could reach (not loopback, not a wildcard),
// deduplicated in order.
func discoveryAddrs(node Node, served []netip.AddrPort) []netip.Addr {
	addrs := node.DiscoveryAddrs
	if len(addrs) == 0 {
		addrs = []netip.Addr{node.IP}

		for _, ap := range served {
			if a := ap.Addr(); !a.IsLoopback() && !a.IsUnspecified() {
				addrs = append(addrs, a)
			}
		}
	}

	out := make([]netip.Addr, 0, len(addrs))

	for _, a := range addrs {
		// a listener on a dual-stack socket reports IPv4 as ::ffff:a.b.c.d;
		// Talos publishes the IPv4 address
		if a = a.Unmap(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}

	return out
}

// nodename is the Kubernetes node name Talos derives from the hostname
// (controllers/k8s/internal/nodename.FromHostname, for the hostnames a fake
// node gets): lowercase, '_' turned into '-'.
func nodename(hostname string) string {
	return strings.Trim(strings.ReplaceAll(strings.ToLower(hostname), "_", "-"), "-.")
}

// affiliateOf is the Affiliate node n publishes, as LocalAffiliateController
// builds it (without KubeSpan).
func affiliateOf(n nodeRecord) (*cluster.Affiliate, error) {
	// records written before discovery fields existed
	mt := n.MachineType
	if mt == "" {
		mt = string(transport.MachineTypeWorker)
		if n.ControlPlane {
			mt = string(transport.MachineTypeControlPlane)
		}
	}

	typ, err := machinetype.ParseType(mt)
	if err != nil {
		return nil, fmt.Errorf("affiliate of %s: %w", n.IP, err)
	}

	addrs := slices.Clone(n.Addrs)
	if len(addrs) == 0 || n.NodeID == "" {
		ip, err := netip.ParseAddr(n.IP)
		if err != nil {
			return nil, fmt.Errorf("affiliate of %s: %w", n.IP, err)
		}

		if len(addrs) == 0 {
			addrs = []netip.Addr{ip}
		}

		if n.NodeID == "" {
			n.NodeID = derivedNodeID(n.CA, ip)
		}
	}

	version := n.TalosVersion
	if version == "" {
		version = DefaultTalosVersion
	}

	a := cluster.NewAffiliate(cluster.NamespaceName, n.NodeID)
	spec := a.TypedSpec()
	spec.NodeID = n.NodeID
	spec.Addresses = addrs
	spec.Hostname = n.Name
	spec.Nodename = nodename(n.Name)
	spec.OperatingSystem = fmt.Sprintf("Talos (%s)", version) // version.Name (version.Tag)
	spec.MachineType = typ

	if typ.IsControlPlane() {
		spec.ControlPlane = &cluster.ControlPlane{APIServerPort: apiServerPort}
	}

	return a, nil
}

// membersOf are MemberController's Members: one per affiliate with a
// nodename, named after it; affiliates come sorted by ID and a later one
// sharing a nodename overwrites the earlier, as the controller's Modify
// does.
func membersOf(affiliates []*cluster.Affiliate) []*cluster.Member {
	byName := map[string]*cluster.Member{}

	var order []string

	for _, a := range affiliates {
		as := a.TypedSpec()
		if as.Nodename == "" {
			continue // not a cluster member
		}

		m := cluster.NewMember(cluster.NamespaceName, as.Nodename)
		ms := m.TypedSpec()
		ms.NodeID = as.NodeID
		ms.Addresses = slices.Clone(as.Addresses)
		ms.Hostname = as.Hostname
		ms.MachineType = as.MachineType
		ms.OperatingSystem = as.OperatingSystem
		ms.ControlPlane = as.ControlPlane

		if _, seen := byName[as.Nodename]; !seen {
			order = append(order, as.Nodename)
		}

		byName[as.Nodename] = m
	}

	out := make([]*cluster.Member, 0, len(order))
	for _, name := range order {
		out = append(out, byName[name])
	}

	return out
}

// discoveryConfig is ConfigController's DiscoveryConfigs for a machine
// config with the default discovery settings of Talos v1.13 (service
// registry on, Kubernetes registry off), or with discovery disabled. The
// cluster secret and ID, which the discovery service uses, derive from the CA.
func discoveryConfig(node Node, ca string) *cluster.Config {
	c := cluster.NewConfig(configres.NamespaceName, cluster.ConfigID)

	if node.DiscoveryDisabled {
		return c
	}

	secret := sha256.Sum256([]byte("fakeapid cluster secret\x00" + ca))
	id := sha256.Sum256([]byte("fakeapid cluster id\x00" + ca))

	spec := c.TypedSpec()
	spec.DiscoveryEnabled = node.DiscoveryConfigAs != "v1.14"
	spec.RegistryServiceEnabled = true
	spec.ServiceEndpoint = discoveryServiceEndpoint
	spec.ServiceEncryptionKey = secret[:]
	spec.ServiceClusterID = base64.URLEncoding.EncodeToString(id[:])

	return c
}
