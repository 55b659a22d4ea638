package transport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/resources/cluster"
)

// ErrDiscoveryDisabled is returned by ClusterMembers when the node's config
// turns Talos cluster discovery off: there are no members to read.
var ErrDiscoveryDisabled = errors.New("cluster discovery is disabled in the machine config")

// Member is one node Talos cluster discovery knows of. It is a hint, not a
// peer: its entry may outlive the node by about 30 minutes, so a caller
// probes its addresses and takes identity, boot time and role from the
// node's own apid.
type Member struct {
	ID          string // the affiliate id or member name
	Hostname    string
	MachineType MachineType
	Addresses   []netip.Addr
}

// MemberLister reads Talos cluster discovery through a node's apid.
type MemberLister interface {
	// ClusterMembers lists the COSI Affiliates and Members (namespace
	// cluster) the node has discovered, itself included. It wraps
	// ErrDiscoveryDisabled when the config disables discovery and
	// ErrUnsupported when the apid serves no COSI.
	ClusterMembers(ctx context.Context) ([]Member, error)
}

// ClusterMembers implements MemberLister.
func (n *grpcNode) ClusterMembers(ctx context.Context) ([]Member, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()

	cfg, err := safe.StateGetByID[*cluster.Config](ctx, n.cosi, cluster.ConfigID)

	switch {
	case err == nil && !discoveryEnabled(cfg.TypedSpec()):
		return nil, n.fail("read discovery config", ErrDiscoveryDisabled)
	case err != nil && cosiTypeUnsupported(err):
		return nil, n.fail("read discovery config", fmt.Errorf("%w: %w", ErrUnsupported, err))
	case err != nil && !state.IsNotFoundError(err):
		// NotFound (COSI's own error type, not a gRPC code): an apid
		// without the resource; the lists say.
		return nil, n.fail("read discovery config", err)
	}

	affiliates, err := safe.StateListAll[*cluster.Affiliate](ctx, n.cosi)
	if err != nil {
		return nil, n.fail("list affiliates", unsupported(err))
	}

	members, err := safe.StateListAll[*cluster.Member](ctx, n.cosi)
	if err != nil {
		return nil, n.fail("list members", unsupported(err))
	}

	var out []Member

	for a := range affiliates.All() {
		s := a.TypedSpec()
		out = append(out, Member{ID: a.Metadata().ID(), Hostname: s.Hostname, MachineType: machineTypeOf(s.MachineType.String()), Addresses: slices.Clone(s.Addresses)})
	}

	for m := range members.All() {
		s := m.TypedSpec()
		out = append(out, Member{ID: m.Metadata().ID(), Hostname: s.Hostname, MachineType: machineTypeOf(s.MachineType.String()), Addresses: slices.Clone(s.Addresses)})
	}

	return out, nil
}

// discoveryEnabled reads the config the way each Talos version writes it:
// up to v1.13 DiscoveryEnabled says it; v1.14 no longer sets that field
// (always false) and keeps RegistryServiceEnabled for Omni, true when a
// discovery service is configured.
func discoveryEnabled(spec *cluster.ConfigSpec) bool {
	return spec.DiscoveryEnabled || spec.RegistryServiceEnabled
}

func unsupported(err error) error {
	if cosiTypeUnsupported(err) {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}

	return err
}

// machineTypeOf maps discovery's spelling; an unknown one stays unknown
// (the probe asks the node itself anyway).
func machineTypeOf(s string) MachineType {
	t, err := parseMachineType(s)
	if err != nil {
		return MachineTypeUnknown
	}

	return t
}

var _ MemberLister = (*grpcNode)(nil)
