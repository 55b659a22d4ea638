package fakeapid_test

import (
	"errors"
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	protobufclient "github.com/cosi-project/runtime/pkg/state/protobuf/client"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/cluster"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// startOn runs node of pki's cluster on reg; node.IP picks its address.
func startOn(t *testing.T, pki *fakeapid.PKI, reg *fakeapid.Registry, node fakeapid.Node) *fakeapid.Server {
	t.Helper()

	srv, err := fakeapid.Start(fakeapid.Config{PKI: pki, Registry: reg}, node)
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { srv.Close() }) //nolint:errcheck

	return srv
}

// cosiConn dials srv with a client certificate of pki carrying roles.
func cosiConn(t *testing.T, pki *fakeapid.PKI, srv *fakeapid.Server, roles role.Set) *grpc.ClientConn {
	t.Helper()

	id, err := pki.RoleIdentity(time.Now().Add(-time.Minute), time.Hour, roles)
	if err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient("passthrough:///"+srv.Addr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(transport.TLSConfig(id))))
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { conn.Close() }) //nolint:errcheck

	return conn
}

// cosiState is the machinery client as transport builds it.
func cosiState(t *testing.T, pki *fakeapid.PKI, srv *fakeapid.Server, roles role.Set) state.State {
	t.Helper()

	return state.WrapCore(protobufclient.NewAdapter(cosiv1alpha1.NewStateClient(cosiConn(t, pki, srv, roles))))
}

// discovered lists Affiliates and Members through st and checks that both
// describe the same nodes; it returns the affiliates by node ID.
func discovered(t *testing.T, st state.State) map[string]*cluster.AffiliateSpec {
	t.Helper()

	affiliates, err := safe.StateListAll[*cluster.Affiliate](ctx(t), st)
	if err != nil {
		t.Fatalf("list affiliates: %v", err)
	}

	members, err := safe.StateListAll[*cluster.Member](ctx(t), st)
	if err != nil {
		t.Fatalf("list members: %v", err)
	}

	out := map[string]*cluster.AffiliateSpec{}

	for a := range affiliates.All() {
		if a.Metadata().Namespace() != cluster.NamespaceName || a.Metadata().ID() != a.TypedSpec().NodeID {
			t.Errorf("affiliate %s: want namespace cluster and ID = NodeID %q", a.Metadata(), a.TypedSpec().NodeID)
		}

		out[a.Metadata().ID()] = a.TypedSpec()
	}

	if members.Len() != len(out) {
		t.Errorf("%d members for %d affiliates", members.Len(), len(out))
	}

	for m := range members.All() {
		ms := m.TypedSpec()

		as, ok := out[ms.NodeID]
		if !ok || m.Metadata().ID() != as.Hostname || ms.Hostname != as.Hostname || ms.MachineType != as.MachineType ||
			!slices.Equal(ms.Addresses, as.Addresses) || (ms.ControlPlane == nil) != (as.ControlPlane == nil) {
			t.Errorf("member %s %+v does not match its affiliate %+v", m.Metadata().ID(), ms, as)
		}
	}

	return out
}

func ids(m map[string]*cluster.AffiliateSpec) []string {
	out := make([]string, 0, len(m))
	for id := range m {
		out = append(out, id)
	}

	slices.Sort(out)

	return out
}

func nodeIDs(srvs ...*fakeapid.Server) []string {
	out := make([]string, 0, len(srvs))
	for _, s := range srvs {
		out = append(out, s.Node().NodeID)
	}

	slices.Sort(out)

	return out
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}

	return out
}

func TestDiscoveryListsNodesOfTheSameCA(t *testing.T) {
	t.Parallel()

	other, err := fakeapid.NewPKI()
	if err != nil {
		t.Fatal(err)
	}

	reg := fakeapid.NewRegistry()
	pki := testPKI(t)
	a := startOn(t, pki, reg, fakeapid.Node{IP: netip.MustParseAddr("127.0.40.1"), DiscoveryAddrs: addrs("127.0.40.1", "fd00:198:18::5")})
	b := startOn(t, pki, reg, fakeapid.Node{
		IP: netip.MustParseAddr("127.0.40.2"), Hostname: "worker-b", MachineType: transport.MachineTypeWorker,
		DiscoveryAddrs: addrs("fd00:198:18::6", "127.0.40.2"),
	})
	c := startOn(t, other, reg, fakeapid.Node{IP: netip.MustParseAddr("127.0.40.3")})

	got := discovered(t, cosiState(t, pki, a, role.MakeSet(role.Reader)))
	if !slices.Equal(ids(got), nodeIDs(a, b)) {
		t.Fatalf("a lists %v, want a and b %v (not c %s)", ids(got), nodeIDs(a, b), c.Node().NodeID)
	}

	if len(a.Node().NodeID) < 40 || a.Node().NodeID == b.Node().NodeID {
		t.Errorf("node IDs %q, %q: want distinct random-looking IDs", a.Node().NodeID, b.Node().NodeID)
	}

	want := map[string]cluster.AffiliateSpec{
		a.Node().NodeID: {
			Hostname: "talos-127-0-40-1", Nodename: "talos-127-0-40-1", Addresses: addrs("127.0.40.1", "fd00:198:18::5"),
			MachineType: machinetype.TypeControlPlane, ControlPlane: &cluster.ControlPlane{APIServerPort: 6443},
		},
		b.Node().NodeID: {
			Hostname: "worker-b", Nodename: "worker-b", Addresses: addrs("fd00:198:18::6", "127.0.40.2"),
			MachineType: machinetype.TypeWorker,
		},
	}

	for id, w := range want {
		g := got[id]
		if g.Hostname != w.Hostname || g.Nodename != w.Nodename || !slices.Equal(g.Addresses, w.Addresses) ||
			g.MachineType != w.MachineType || (g.ControlPlane == nil) != (w.ControlPlane == nil) ||
			(g.ControlPlane != nil && *g.ControlPlane != *w.ControlPlane) || g.OperatingSystem != "Talos ("+fakeapid.DefaultTalosVersion+")" {
			t.Errorf("affiliate %s = %+v, want %+v", id, g, w)
		}
	}

	// c's cluster is c alone
	if got := discovered(t, cosiState(t, other, c, role.MakeSet(role.Reader))); !slices.Equal(ids(got), nodeIDs(c)) {
		t.Errorf("c lists %v, want only itself", ids(got))
	}

	// like the runtime's server, each ListResponse carries one resource
	stream, err := cosiv1alpha1.NewStateClient(cosiConn(t, pki, b, role.MakeSet(role.Reader))).List(ctx(t),
		&cosiv1alpha1.ListRequest{Namespace: cluster.NamespaceName, Type: cluster.AffiliateType})
	if err != nil {
		t.Fatal(err)
	}

	n := 0

	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			t.Fatal(err)
		}

		if resp.GetResource().GetMetadata().GetType() != cluster.AffiliateType {
			t.Errorf("ListResponse holds %v", resp.GetResource().GetMetadata())
		}

		n++
	}

	if n != 2 {
		t.Errorf("%d ListResponses, want one per affiliate (2)", n)
	}
}

func TestDiscoveryDefaultAddrsAndCOSIUnimplemented(t *testing.T) {
	t.Parallel()

	pki := testPKI(t)
	reg := fakeapid.NewRegistry()

	srv, err := fakeapid.Start(fakeapid.Config{PKI: pki, Registry: reg, Listen: []string{"127.0.40.11:0", "127.0.40.12:0"}},
		fakeapid.Node{IP: netip.MustParseAddr("127.0.40.11")})
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { srv.Close() }) //nolint:errcheck

	// loopback listen addresses other than the IP are not advertised
	if got := srv.Node().DiscoveryAddrs; !slices.Equal(got, addrs("127.0.40.11")) {
		t.Errorf("DiscoveryAddrs = %v, want the IP only", got)
	}

	off := startOn(t, pki, reg, fakeapid.Node{IP: netip.MustParseAddr("127.0.40.13"), COSIUnimplemented: true})

	_, err = safe.StateListAll[*cluster.Affiliate](ctx(t), cosiState(t, pki, off, role.MakeSet(role.Reader)))
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("List on a node without COSI = %v, want Unimplemented", err)
	}

	// the node without COSI still publishes itself
	if got := discovered(t, cosiState(t, pki, srv, role.MakeSet(role.Reader))); !slices.Equal(ids(got), nodeIDs(srv, off)) {
		t.Errorf("lists %v, want %v", ids(got), nodeIDs(srv, off))
	}
}

func TestDiscoveryDisabled(t *testing.T) {
	t.Parallel()

	pki := testPKI(t)
	reg := fakeapid.NewRegistry()
	off := startOn(t, pki, reg, fakeapid.Node{IP: netip.MustParseAddr("127.0.40.21"), DiscoveryDisabled: true})
	on := startOn(t, pki, reg, fakeapid.Node{IP: netip.MustParseAddr("127.0.40.22")})

	st := cosiState(t, pki, off, role.MakeSet(role.Admin))

	cfg, err := safe.StateGetByID[*cluster.Config](ctx(t), st, cluster.ConfigID)
	if err != nil {
		t.Fatal(err)
	}

	if cfg.TypedSpec().DiscoveryEnabled || cfg.TypedSpec().RegistryServiceEnabled {
		t.Errorf("DiscoveryConfigs = %+v, want discovery disabled", cfg.TypedSpec())
	}

	if got := discovered(t, st); len(got) != 0 {
		t.Errorf("node with discovery disabled lists %v, want nothing", ids(got))
	}

	// it does not publish itself either
	if got := discovered(t, cosiState(t, pki, on, role.MakeSet(role.Reader))); !slices.Equal(ids(got), nodeIDs(on)) {
		t.Errorf("other node lists %v, want only itself", ids(got))
	}
}

func TestDiscoveryConfig(t *testing.T) {
	t.Parallel()

	pki := testPKI(t)
	srv := startOn(t, pki, fakeapid.NewRegistry(), fakeapid.Node{IP: netip.MustParseAddr("127.0.40.31")})

	cfg, err := safe.StateGetByID[*cluster.Config](ctx(t), cosiState(t, pki, srv, role.MakeSet(role.Admin)), cluster.ConfigID)
	if err != nil {
		t.Fatal(err)
	}

	spec := cfg.TypedSpec()
	if cfg.Metadata().Namespace() != configres.NamespaceName || !spec.DiscoveryEnabled || !spec.RegistryServiceEnabled ||
		spec.RegistryKubernetesEnabled || spec.ServiceEndpoint != "discovery.talos.dev:443" || len(spec.ServiceEncryptionKey) != 32 {
		t.Errorf("DiscoveryConfigs %s = %+v, want Talos's default discovery in namespace config", cfg.Metadata(), spec)
	}

	// Sensitive: Talos's access policy gives it to os:admin only
	_, err = safe.StateGetByID[*cluster.Config](ctx(t), cosiState(t, pki, srv, role.MakeSet(role.Reader)), cluster.ConfigID)
	if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != "not authorized" {
		t.Errorf("DiscoveryConfigs as os:reader = %v, want PermissionDenied not authorized", err)
	}
}

func TestDiscoveryStoppedNode(t *testing.T) {
	t.Parallel()

	// two registries on one directory: the nodes stand in separate processes
	dir := t.TempDir()

	open := fileRegistries(t, dir)

	pki := testPKI(t)
	forget := startOn(t, pki, open(), fakeapid.Node{IP: netip.MustParseAddr("127.0.40.41")})
	keep := startOn(t, pki, open(), fakeapid.Node{IP: netip.MustParseAddr("127.0.40.42"), DiscoveryTTL: time.Hour})
	brief := startOn(t, pki, open(), fakeapid.Node{IP: netip.MustParseAddr("127.0.40.43"), DiscoveryTTL: 100 * time.Millisecond})
	gone := startOn(t, pki, open(), fakeapid.Node{
		IP: netip.MustParseAddr("127.0.40.44"), MachineType: transport.MachineTypeWorker,
		DiscoveryAddrs: addrs("127.0.40.44", "fd00:198:18::44"),
	})

	all := nodeIDs(forget, keep, brief, gone)

	listed := func(srv *fakeapid.Server) map[string]*cluster.AffiliateSpec {
		return discovered(t, cosiState(t, pki, srv, role.MakeSet(role.Reader)))
	}

	// across the file, with the IPv6 address and machine type intact
	got := listed(forget)
	if !slices.Equal(ids(got), all) {
		t.Fatalf("before Close: %v, want %v", ids(got), all)
	}

	if g := got[gone.Node().NodeID]; !slices.Equal(g.Addresses, addrs("127.0.40.44", "fd00:198:18::44")) || g.MachineType != machinetype.TypeWorker {
		t.Errorf("gone's affiliate = %+v", g)
	}

	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}

	live := nodeIDs(forget, keep, brief)

	if got := listed(forget); !slices.Equal(ids(got), live) {
		t.Errorf("TTL 0 after Close: %v, want %v", ids(got), live)
	}

	if got := listed(keep); !slices.Equal(ids(got), all) {
		t.Errorf("TTL 1h after Close: %v, want the stale entry kept %v", ids(got), all)
	}

	time.Sleep(150 * time.Millisecond)

	if got := listed(brief); !slices.Equal(ids(got), live) {
		t.Errorf("TTL 100ms, 150ms after Close: %v, want %v", ids(got), live)
	}
}

func TestCOSIAccessPolicy(t *testing.T) {
	t.Parallel()

	pki := testPKI(t)
	srv := startOn(t, pki, fakeapid.NewRegistry(), fakeapid.Node{IP: netip.MustParseAddr("127.0.40.51")})
	client := cosiv1alpha1.NewStateClient(cosiConn(t, pki, srv, role.MakeSet(role.Reader)))

	list := func(ns, typ string) (int, error) {
		stream, err := client.List(ctx(t), &cosiv1alpha1.ListRequest{Namespace: ns, Type: typ})
		if err != nil {
			return 0, err
		}

		n := 0

		for {
			_, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return n, nil
			}

			if err != nil {
				return n, err
			}

			n++
		}
	}

	tests := []struct {
		name, ns, typ string
		n             int
		code          codes.Code
		msg           string
	}{
		{name: "served", ns: "cluster", typ: cluster.MemberType, n: 1},
		{name: "type lookup ignores case, data does not", ns: "cluster", typ: "members.cluster.talos.dev"},
		{name: "other registered namespace", ns: "config", typ: cluster.AffiliateType},
		{name: "Talos type not produced", ns: "cluster", typ: cluster.IdentityType},
		{
			name: "unregistered type", ns: "cluster", typ: "Widgets.example.com",
			code: codes.PermissionDenied, msg: `resource type "Widgets.example.com" is not supported`,
		},
		{
			name: "unregistered namespace", ns: "nowhere", typ: cluster.AffiliateType,
			code: codes.PermissionDenied, msg: `namespace "nowhere" is not supported`,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := list(tt.ns, tt.typ)
			if status.Code(err) != tt.code || (err != nil && status.Convert(err).Message() != tt.msg) {
				t.Fatalf("List: %v, want %v %q", err, tt.code, tt.msg)
			}

			if n != tt.n {
				t.Errorf("%d resources, want %d", n, tt.n)
			}
		})
	}

	// Get keeps the in-memory state's not-found text
	_, err := client.Get(ctx(t), &cosiv1alpha1.GetRequest{Namespace: "cluster", Type: cluster.AffiliateType, Id: "nobody"})
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != "resource Affiliates.cluster.talos.dev(cluster/nobody@undefined) doesn't exist" {
		t.Errorf("Get of a missing affiliate = %v", err)
	}
}
