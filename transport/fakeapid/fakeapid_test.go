package fakeapid_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

func testPKI(t *testing.T) *fakeapid.PKI {
	t.Helper()

	p, err := fakeapid.SharedPKI()
	if err != nil {
		t.Fatal(err)
	}

	return p
}

// start runs node in a fleet of its own on reg; first picks the fleet's
// address range, so that fleets sharing one file registry do not collide.
func start(t *testing.T, reg *fakeapid.Registry, first string, node fakeapid.Node) *fakeapid.Server {
	t.Helper()

	node.TimeSyncWait = 20 * time.Millisecond

	f := fakeapid.NewFleet(testPKI(t), reg, netip.MustParseAddr(first))
	t.Cleanup(func() { f.Close() }) //nolint:errcheck

	srv, err := f.Start(node)
	if err != nil {
		t.Fatal(err)
	}

	return srv
}

// rawClient talks to the fake with the generated client, no transport
// package in between, to pin the fake's answers themselves.
func rawClient(t *testing.T, srv *fakeapid.Server, roles role.Set) machine.MachineServiceClient {
	t.Helper()

	return machine.NewMachineServiceClient(cosiConn(t, testPKI(t), srv, roles))
}

func ctx(t *testing.T) context.Context {
	t.Helper()

	c, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	t.Cleanup(cancel)

	return c
}

func drainList(stream grpc.ServerStreamingClient[machine.FileInfo]) ([]string, error) {
	var names []string

	for {
		fi, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return names, nil
		}

		if err != nil {
			return names, err
		}

		names = append(names, fi.GetName())
	}
}

func TestListLikeTalos(t *testing.T) {
	t.Parallel()

	reg := fakeapid.NewRegistry()
	cp := start(t, reg, "127.0.20.1", fakeapid.Node{})
	worker := start(t, reg, "127.0.20.2", fakeapid.Node{MachineType: transport.MachineTypeWorker})

	tests := []struct {
		name  string
		srv   *fakeapid.Server
		req   *machine.ListRequest
		names []string
		code  codes.Code
		msg   string
	}{
		{
			name: "empty etcd dir on a control-plane node", srv: cp,
			req: &machine.ListRequest{Root: "/var/lib/etcd"}, names: []string{"/var/lib/etcd"},
		},
		{
			name: "no etcd dir on a worker: lstat error, Unknown", srv: worker,
			req:  &machine.ListRequest{Root: "/var/lib/etcd"},
			code: codes.Unknown, msg: "lstat /var/lib/etcd: no such file or directory",
		},
		{
			name: "no recursion", srv: cp,
			req: &machine.ListRequest{Root: "/proc/sys"}, names: []string{"/proc/sys", "/proc/sys/kernel"},
		},
		{
			name: "depth 2", srv: cp,
			req:   &machine.ListRequest{Root: "proc/sys/", Recurse: true, RecursionDepth: 2},
			names: []string{"/proc/sys", "/proc/sys/kernel", "/proc/sys/kernel/random"},
		},
		{
			name: "unlimited", srv: cp,
			req:   &machine.ListRequest{Root: "/proc", Recurse: true},
			names: []string{"/proc", "/proc/sys", "/proc/sys/kernel", "/proc/sys/kernel/random", "/proc/sys/kernel/random/boot_id"},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := rawClient(t, tt.srv, role.MakeSet(role.Reader)).List(ctx(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}

			names, err := drainList(stream)
			if status.Code(err) != tt.code || (err != nil && status.Convert(err).Message() != tt.msg) {
				t.Fatalf("List: %v, want %v %q", err, tt.code, tt.msg)
			}

			if err == nil && !slices.Equal(names, tt.names) {
				t.Errorf("names = %v, want %v", names, tt.names)
			}
		})
	}
}

func TestAuthorization(t *testing.T) {
	t.Parallel()

	srv := start(t, fakeapid.NewRegistry(), "127.0.20.1", fakeapid.Node{})

	read := func(c machine.MachineServiceClient) error {
		stream, err := c.Read(ctx(t), &machine.ReadRequest{Path: transport.BootIDPath})
		if err != nil {
			return err
		}

		_, err = stream.Recv()

		return err
	}

	calls := map[string]func(machine.MachineServiceClient) error{
		"SystemStat": func(c machine.MachineServiceClient) error {
			_, err := c.SystemStat(ctx(t), &emptypb.Empty{})

			return err
		},
		"ServiceList": func(c machine.MachineServiceClient) error {
			_, err := c.ServiceList(ctx(t), &emptypb.Empty{})

			return err
		},
		"Version": func(c machine.MachineServiceClient) error {
			_, err := c.Version(ctx(t), &emptypb.Empty{})

			return err
		},
		"Read": read,
		"Bootstrap": func(c machine.MachineServiceClient) error {
			_, err := c.Bootstrap(ctx(t), &machine.BootstrapRequest{})

			return err
		},
	}

	tests := []struct {
		roles  role.Set
		denied []string
	}{
		{roles: role.MakeSet(role.Reader), denied: []string{"Read", "Bootstrap"}},
		{roles: role.MakeSet(role.Operator), denied: []string{"Read", "Bootstrap"}},
		{roles: role.MakeSet(), denied: []string{"SystemStat", "ServiceList", "Version", "Read", "Bootstrap"}},
		{roles: role.MakeSet(role.Admin)},
	}

	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.roles.Strings()), func(t *testing.T) {
			c := rawClient(t, srv, tt.roles)

			// Bootstrap last: it changes the node.
			for _, name := range []string{"SystemStat", "ServiceList", "Version", "Read", "Bootstrap"} {
				err := calls[name](c)

				want := codes.OK
				if slices.Contains(tt.denied, name) {
					want = codes.PermissionDenied
				}

				if status.Code(err) != want {
					t.Errorf("%s: %v, want %v", name, err, want)
				}

				if want == codes.PermissionDenied && status.Convert(err).Message() != "not authorized" {
					t.Errorf("%s: message %q, want apid's \"not authorized\"", name, status.Convert(err).Message())
				}
			}
		})
	}

	// every call was recorded with its answer
	denied := 0

	for _, c := range srv.Calls() {
		if c.Code == codes.PermissionDenied.String() {
			denied++
		}
	}

	if denied != 9 {
		t.Errorf("%d denied calls recorded, want 9", denied)
	}
}

func TestEtcdMemberListErrorInjection(t *testing.T) {
	t.Parallel()

	injected := status.Error(codes.Unavailable, "etcdserver: no leader")
	srv := start(t, fakeapid.NewRegistry(), "127.0.20.1", fakeapid.Node{EtcdMemberListError: injected})

	_, err := rawClient(t, srv, role.MakeSet(role.Reader)).EtcdMemberList(ctx(t), &machine.EtcdMemberListRequest{QueryLocal: true})
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "etcdserver: no leader" {
		t.Errorf("EtcdMemberList = %v, want the injected error", err)
	}
}

func TestTimeSyncedAfterCalls(t *testing.T) {
	t.Parallel()

	reg := fakeapid.NewRegistry()
	srv := start(t, reg, "127.0.20.1", fakeapid.Node{TimeSyncedAfterCalls: 2})
	c := rawClient(t, srv, role.MakeSet(role.Admin))

	codesSeen := []codes.Code{}

	for range 3 {
		_, err := c.Bootstrap(ctx(t), &machine.BootstrapRequest{})
		codesSeen = append(codesSeen, status.Code(err))
	}

	want := []codes.Code{codes.FailedPrecondition, codes.FailedPrecondition, codes.OK}
	if !slices.Equal(codesSeen, want) {
		t.Errorf("Bootstrap codes = %v, want %v", codesSeen, want)
	}
}

func TestRepeatedBootstrapBeforeDataFillsIsCounted(t *testing.T) {
	t.Parallel()

	reg := fakeapid.NewRegistry()
	srv := start(t, reg, "127.0.20.1", fakeapid.Node{DataFillDelay: time.Hour})
	c := rawClient(t, srv, role.MakeSet(role.Admin))

	for range 2 {
		if _, err := c.Bootstrap(ctx(t), &machine.BootstrapRequest{}); err != nil {
			t.Fatal(err)
		}
	}

	clusters, err := reg.Clusters()
	if err != nil {
		t.Fatal(err)
	}

	if len(clusters) != 2 || !clusters[0].Superseded || clusters[1].Superseded {
		t.Errorf("clusters = %+v, want the first superseded by the second", clusters)
	}
}

// Two registries opened on one directory stand for two fake processes.
func TestFileRegistrySharedByTwoServers(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()

	open := fileRegistries(t, dir)

	timing := fakeapid.Node{DataFillDelay: 20 * time.Millisecond, HealthyDelay: 20 * time.Millisecond, JoinDelay: 20 * time.Millisecond}
	a := start(t, open(), "127.0.21.1", timing)
	b := start(t, open(), "127.0.21.2", timing)
	observer := open()

	ca := rawClient(t, a, role.MakeSet(role.Admin))
	cb := rawClient(t, b, role.MakeSet(role.Admin))

	if _, err := ca.Bootstrap(ctx(t), &machine.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}

	// b learns of a's cluster through the file and joins it
	deadline := time.Now().Add(2 * time.Second)

	for {
		// before it joins, the call hangs like Talos's: keep attempts short
		attempt, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		resp, err := cb.EtcdMemberList(attempt, &machine.EtcdMemberListRequest{QueryLocal: true})

		cancel()

		if err == nil && len(resp.GetMessages()[0].GetMembers()) == 2 {
			break
		}

		if time.Now().After(deadline) {
			t.Fatalf("b never joined: %v", err)
		}

		time.Sleep(5 * time.Millisecond)
	}

	if _, err := cb.Bootstrap(ctx(t), &machine.BootstrapRequest{}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("Bootstrap on b after joining = %v, want AlreadyExists", err)
	}

	clusters, err := observer.Clusters()
	if err != nil {
		t.Fatal(err)
	}

	if len(clusters) != 1 || clusters[0].Founder != a.Node().IP.String() || len(clusters[0].Members) != 2 {
		t.Errorf("clusters = %+v, want one founded by %s with two members", clusters, a.Node().IP)
	}
}

func TestFileRegistryDoubleBootstrap(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()

	var regs []*fakeapid.Registry

	for range 3 {
		r, err := fakeapid.OpenRegistry(dir)
		if err != nil {
			t.Fatal(err)
		}

		t.Cleanup(func() { r.Close() }) //nolint:errcheck

		regs = append(regs, r)
	}

	slow := fakeapid.Node{JoinDelay: time.Hour}
	a, b := start(t, regs[0], "127.0.22.1", slow), start(t, regs[1], "127.0.22.2", slow)

	var wg sync.WaitGroup

	for _, srv := range []*fakeapid.Server{a, b} {
		wg.Go(func() {
			if _, err := rawClient(t, srv, role.MakeSet(role.Admin)).Bootstrap(ctx(t), &machine.BootstrapRequest{}); err != nil {
				t.Error(err)
			}
		})
	}

	wg.Wait()

	clusters, err := regs[2].Clusters()
	if err != nil {
		t.Fatal(err)
	}

	if len(clusters) != 2 || clusters[0].ID == clusters[1].ID {
		t.Errorf("clusters = %+v, want two distinct clusters", clusters)
	}
}

func TestStartValidation(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		cfg  fakeapid.Config
		node fakeapid.Node
	}{
		{name: "no PKI", node: fakeapid.Node{IP: netip.MustParseAddr("127.0.23.1")}},
		{name: "no IP", cfg: fakeapid.Config{PKI: testPKI(t)}},
		{name: "bad machine type", cfg: fakeapid.Config{PKI: testPKI(t)}, node: fakeapid.Node{IP: netip.MustParseAddr("127.0.23.1"), MachineType: "master"}},
		{name: "bad version", cfg: fakeapid.Config{PKI: testPKI(t)}, node: fakeapid.Node{IP: netip.MustParseAddr("127.0.23.1"), TalosVersion: "2.0"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := fakeapid.Start(tt.cfg, tt.node)
			if err == nil {
				srv.Close() //nolint:errcheck
				t.Fatal("Start accepted bad input")
			}
		})
	}
}

// fileRegistries opens registries on dir, each standing for one fake
// process sharing the file.
func fileRegistries(t *testing.T, dir string) func() *fakeapid.Registry {
	return func() *fakeapid.Registry {
		r, err := fakeapid.OpenRegistry(dir)
		if err != nil {
			t.Fatal(err)
		}

		t.Cleanup(func() { r.Close() }) //nolint:errcheck

		return r
	}
}
