package fakeapid

import (
	"context"
	"fmt"
	"slices"
	"strings"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/meta"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"github.com/cosi-project/runtime/pkg/state/protobuf/server"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/cluster"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/siderolink"
	timeres "github.com/siderolabs/talos/pkg/machinery/resources/time"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// cosiState serves COSI State Get and List as machined does
// (internal/server/v1alpha1/v1alpha1_server.go Register): the cosi-project
// runtime's own protobuf server (pkg/state/protobuf/server) over the node's
// resources, behind Talos's access policy. Each call loads the requested
// type as the node sees it now into an in-memory state, so that not-found
// texts, ordering (by ID), ID and label queries, and List streaming one
// resource per ListResponse are the runtime's own.
type cosiState struct {
	cosiv1alpha1.UnimplementedStateServer

	s *Server
}

func (c *cosiState) Get(ctx context.Context, req *cosiv1alpha1.GetRequest) (*cosiv1alpha1.GetResponse, error) {
	st, err := c.snapshot(ctx, req.GetType())
	if err != nil {
		return nil, err
	}

	return server.NewState(st).Get(ctx, req)
}

func (c *cosiState) List(req *cosiv1alpha1.ListRequest, srv cosiv1alpha1.State_ListServer) error {
	st, err := c.snapshot(srv.Context(), req.GetType())
	if err != nil {
		return err
	}

	return server.NewState(st).List(req, srv)
}

// snapshot is an in-memory state holding the node's resources of type typ,
// filtered by accessPolicy like machined's.
func (c *cosiState) snapshot(ctx context.Context, typ resource.Type) (state.CoreState, error) { //nolint:ireturn
	rs, err := c.resources(typ)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}

	mem := namespaced.NewState(inmem.Build)

	for _, r := range rs {
		if err := mem.Create(ctx, r); err != nil {
			return nil, status.Errorf(codes.Internal, "load %s into the COSI snapshot: %v", r.Metadata(), err)
		}
	}

	return state.Filter(mem, func(ctx context.Context, access state.Access) error {
		if slices.ContainsFunc(c.s.node.COSIUnregistered, func(t resource.Type) bool { return strings.EqualFold(t, access.ResourceType) }) {
			return status.Error(codes.PermissionDenied, fmt.Sprintf("resource type %q is not supported", access.ResourceType))
		}

		return accessPolicy(ctx, access)
	}), nil
}

// resources are the node's resources of type typ (an exact type: the
// in-memory state keeps a differently spelt type apart, as machined's does).
func (c *cosiState) resources(typ resource.Type) ([]resource.Resource, error) {
	switch typ {
	case configres.MachineTypeType:
		mt, err := machinetype.ParseType(string(c.s.node.MachineType))
		if err != nil {
			return nil, fmt.Errorf("machine type: %w", err)
		}

		r := configres.NewMachineType()
		r.SetMachineType(mt)

		return []resource.Resource{r}, nil
	case timeres.StatusType:
		if c.s.node.NoTimeStatus {
			return nil, nil
		}

		r := timeres.NewStatus()
		r.TypedSpec().Synced = c.s.timeSynced()

		return []resource.Resource{r}, nil
	case cluster.ConfigType:
		if c.s.node.DiscoveryConfigAs == "absent" {
			return nil, nil
		}

		return []resource.Resource{discoveryConfig(c.s.node, c.s.pki.Fingerprint())}, nil
	case siderolink.ConfigType:
		if c.s.node.SideroLinkAPI == "" {
			return nil, nil
		}

		// Talos's siderolink.ConfigController writes it from the
		// SideroLinkConfig document or the siderolink.api kernel argument.
		r := siderolink.NewConfig(configres.NamespaceName, siderolink.ConfigID)
		r.TypedSpec().APIEndpoint = c.s.node.SideroLinkAPI

		return []resource.Resource{r}, nil
	case cluster.AffiliateType:
		affiliates, err := c.s.affiliates()

		return toResources(affiliates), err
	case cluster.MemberType:
		affiliates, err := c.s.affiliates()

		return toResources(membersOf(affiliates)), err
	default:
		return nil, nil
	}
}

func toResources[R resource.Resource](rs []R) []resource.Resource {
	out := make([]resource.Resource, len(rs))
	for i, r := range rs {
		out[i] = r
	}

	return out
}

// affiliates are the Affiliates the node lists, sorted by ID: itself and
// every other discoverable node of its CA in the registry.
//
// With discovery disabled the list is empty: LocalAffiliateController
// writes the local Affiliate only while DiscoveryEnabled (and removes it
// otherwise) and no registry is pulled, so a client sees what it sees when
// the discovery controllers never ran.
func (s *Server) affiliates() ([]*cluster.Affiliate, error) {
	if s.node.DiscoveryDisabled {
		return nil, nil
	}

	self := s.record()

	var recs []nodeRecord

	if err := s.registry.view(func(st *registryState) error {
		recs = st.discoverable(self.CA, s.registry.now(), s.node.DiscoveryTTL)

		return nil
	}); err != nil {
		return nil, fmt.Errorf("list affiliates of %s: %w", s.node.IP, err)
	}

	// the node itself, even if a restart elsewhere replaced its record
	if !slices.ContainsFunc(recs, func(n nodeRecord) bool { return n.NodeID == self.NodeID }) {
		recs = append(recs, self)
	}

	byID := map[string]*cluster.Affiliate{}

	for _, n := range recs {
		a, err := affiliateOf(n)
		if err != nil {
			return nil, err
		}

		if prev, ok := byID[a.Metadata().ID()]; ok {
			// AffiliateMergeController merges sources of one node
			prev.TypedSpec().Merge(a.TypedSpec())

			continue
		}

		byID[a.Metadata().ID()] = a
	}

	out := make([]*cluster.Affiliate, 0, len(byID))
	for _, a := range byID {
		out = append(out, a)
	}

	slices.SortFunc(out, func(a, b *cluster.Affiliate) int { return strings.Compare(a.Metadata().ID(), b.Metadata().ID()) })

	return out, nil
}

// servedDefinitions are the ResourceDefinitions of the types served here,
// by definition ID (the lowercased type, as machined's registry keys them).
var servedDefinitions = definitions(
	configres.NewMachineType(),
	timeres.NewStatus(),
	cluster.NewConfig(configres.NamespaceName, cluster.ConfigID),
	cluster.NewAffiliate(cluster.NamespaceName, ""),
	cluster.NewMember(cluster.NamespaceName, ""),
	siderolink.NewConfig(configres.NamespaceName, siderolink.ConfigID),
)

func definitions(rs ...meta.ResourceDefinitionProvider) map[string]meta.ResourceDefinitionSpec {
	out := make(map[string]meta.ResourceDefinitionSpec, len(rs))
	for _, r := range rs {
		d := r.ResourceDefinition()
		out[strings.ToLower(d.Type)] = d
	}

	return out
}

// talosNamespaces are the namespaces machined registers (Talos v1.13.9
// runtime/v1alpha2/v1alpha2_state.go NewState, plus COSI's own meta).
var talosNamespaces = []resource.Namespace{
	meta.NamespaceName,
	"runtime", "cluster", "cluster-raw", "config", "etcd", "files", "hardware",
	"k8s", "controlplane", "kubespan", "network", "network-config", "cri",
	"secrets", "security", "perf",
}

// accessPolicy is Talos's COSI access policy (internal/app/resources/
// access.go AccessPolicy), checked after the method's role rule: read-only
// verbs, a registered type, os:admin for Sensitive types (DiscoveryConfigs
// carries the discovery encryption key, so os:reader and os:operator get
// "not authorized" for it), a registered namespace.
//
// The fake registers the types it serves and treats every other
// *.talos.dev or *.cosi.dev type as registered but not produced yet (Get
// NotFound, List empty, as on a node whose controller has not run), and as
// non-sensitive; any other type is unregistered and gets Talos's
// PermissionDenied "resource type %q is not supported", on Get and List
// alike.
func accessPolicy(ctx context.Context, access state.Access) error {
	if !access.Verb.Readonly() {
		return status.Error(codes.PermissionDenied, "write access is not allowed")
	}

	typ := strings.ToLower(access.ResourceType)

	def, served := servedDefinitions[typ]
	if !served && !strings.HasSuffix(typ, ".talos.dev") && !strings.HasSuffix(typ, ".cosi.dev") {
		return status.Error(codes.PermissionDenied, fmt.Sprintf("resource type %q is not supported", access.ResourceType))
	}

	if def.Sensitivity == meta.Sensitive {
		if roles, _ := peerRoles(ctx); !roles.Includes(role.Admin) {
			return errNotAuthorized
		}
	}

	if !slices.Contains(talosNamespaces, access.ResourceNamespace) {
		return status.Error(codes.PermissionDenied, fmt.Sprintf("namespace %q is not supported", access.ResourceNamespace))
	}

	return nil
}
