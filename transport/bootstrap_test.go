package transport_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

func TestBootstrapAnswers(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		node     fakeapid.Node
		prefill  bool // /var/lib/etcd holds data already
		ctx      time.Duration
		code     codes.Code
		alt      codes.Code // also acceptable: the server's and the client's deadline race
		msg      string
		clusters int
	}{
		{name: "accepted", code: codes.OK, clusters: 1},
		{name: "not ready", node: fakeapid.Node{NotReadyBootstraps: 1}, code: codes.FailedPrecondition, msg: "bootstrap is not available yet"},
		{name: "not ready for a while", node: fakeapid.Node{NotReadyFor: time.Hour}, code: codes.FailedPrecondition, msg: "bootstrap is not available yet"},
		{
			name: "worker on v1.13", node: fakeapid.Node{MachineType: transport.MachineTypeWorker},
			code: codes.Unimplemented, msg: "bootstrap is only available on control plane nodes",
		},
		{
			name: "worker on v1.12", node: fakeapid.Node{MachineType: transport.MachineTypeWorker, TalosVersion: "v1.12.6"},
			code: codes.FailedPrecondition, msg: "bootstrap can only be performed on a control plane node",
		},
		{name: "time never syncs", node: fakeapid.Node{TimeUnsynced: true}, code: codes.FailedPrecondition, msg: "time is not in sync yet"},
		{
			name: "time syncs during the wait", node: fakeapid.Node{TimeSyncedAfter: 30 * time.Millisecond, TimeSyncWait: time.Second},
			code: codes.OK, clusters: 1,
		},
		{
			name: "time sync slower than the caller's deadline", node: fakeapid.Node{TimeUnsynced: true, TimeSyncWait: time.Second},
			// Talos's time wait derives from the request context, so its
			// FailedPrecondition may beat the client's own deadline.
			ctx: 100 * time.Millisecond, code: codes.DeadlineExceeded, alt: codes.FailedPrecondition,
		},
		{
			name: "injected time-not-synced", node: fakeapid.Node{BootstrapFaults: []fakeapid.Fault{fakeapid.FaultTimeNotSynced}},
			code: codes.FailedPrecondition, msg: "time is not in sync yet",
		},
		{name: "data dir not empty", prefill: true, code: codes.AlreadyExists, msg: "etcd data directory is not empty"},
		{
			name: "hang", node: fakeapid.Node{BootstrapFaults: []fakeapid.Fault{fakeapid.FaultHang}},
			ctx: 100 * time.Millisecond, code: codes.DeadlineExceeded,
		},
		{
			name: "reply lost after acceptance", node: fakeapid.Node{BootstrapFaults: []fakeapid.Fault{fakeapid.FaultLostReply}},
			ctx: 100 * time.Millisecond, code: codes.DeadlineExceeded, clusters: 1,
		},
		{
			name: "apid cannot reach machined", node: fakeapid.Node{BootstrapFaults: []fakeapid.Fault{fakeapid.FaultUnavailable}},
			code: codes.Unavailable,
		},
		{
			name: "hook", node: fakeapid.Node{BootstrapHook: func(context.Context, int) error {
				return status.Error(codes.Internal, "boom")
			}},
			code: codes.Internal, msg: "boom",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			f := newFleet(t)
			srv := startNode(t, f, tt.node)

			if tt.prefill {
				writeFile(t, filepath.Join(srv.FilesRoot(), transport.EtcdDataDir, "member", "snap", "db"))
			}

			n := dial(t, adminDialer(t), srv)

			ctx := t.Context()
			if tt.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctx)

				defer cancel()
			}

			err := n.Bootstrap(ctx)
			if got := status.Code(err); got != tt.code && (tt.alt == codes.OK || got != tt.alt) {
				t.Fatalf("Bootstrap: %v, want code %v", err, tt.code)
			}

			if err != nil && !containsAll(err.Error(), tt.msg, srv.Node().IP.String()) {
				t.Errorf("Bootstrap error %q should contain %q and the node", err, tt.msg)
			}

			clusters, err := f.Registry.Clusters()
			if err != nil {
				t.Fatal(err)
			}

			if len(clusters) != tt.clusters {
				t.Errorf("%d clusters created, want %d", len(clusters), tt.clusters)
			}
		})
	}
}

func writeFile(t *testing.T, path string) {
	t.Helper()

	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond (a few ms apart) until it holds or the test's 2 s run
// out; the fake's timelines are a few tens of ms.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()

	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}

		time.Sleep(5 * time.Millisecond)
	}
}

// The whole life of a three-node cluster as the daemon sees it: before
// bootstrap, one Bootstrap, the founder's etcd filling and turning healthy,
// the others joining, and Bootstrap refused everywhere afterwards.
func TestEtcdLifecycle(t *testing.T) {
	t.Parallel()

	f := newFleet(t)
	timing := fakeapid.Node{DataFillDelay: 40 * time.Millisecond, HealthyDelay: 40 * time.Millisecond, JoinDelay: 40 * time.Millisecond}

	var (
		srvs  []*fakeapid.Server
		nodes []transport.Node
	)

	d := adminDialer(t)

	for range 3 {
		srv := startNode(t, f, timing)
		srvs = append(srvs, srv)
		nodes = append(nodes, dial(t, d, srv))
	}

	worker := startNode(t, f, fakeapid.Node{MachineType: transport.MachineTypeWorker})
	workerNode := dial(t, d, worker)

	// before bootstrap
	for _, n := range nodes {
		svc, err := n.EtcdService(shortCtx(t))
		if err != nil || svc != (transport.ServiceState{Found: true, State: "Preparing", Message: "Running pre stage"}) {
			t.Fatalf("%s: EtcdService = %+v, %v; want Preparing", n.Addr(), svc, err)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		_, err = n.EtcdMembers(ctx)

		cancel()

		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("%s: EtcdMembers before bootstrap = %v, want DeadlineExceeded", n.Addr(), err)
		}
	}

	if _, err := workerNode.EtcdMembers(shortCtx(t)); status.Code(err) != codes.Unimplemented ||
		!containsAll(err.Error(), "member list is only available on control plane nodes") {
		t.Fatalf("worker EtcdMembers = %v, want Unimplemented", err)
	}

	if err := nodes[0].Bootstrap(shortCtx(t)); err != nil {
		t.Fatal(err)
	}

	// accepted, but the data dir is still empty: the dangerous window
	if empty, err := nodes[0].EtcdDataDirEmpty(shortCtx(t)); err != nil || !empty {
		t.Fatalf("right after Bootstrap: EtcdDataDirEmpty = %v, %v; want true", empty, err)
	}

	waitFor(t, "the founder's etcd to be healthy", func() bool {
		svc, err := nodes[0].EtcdService(shortCtx(t))

		return err == nil && svc.Running()
	})

	if empty, err := nodes[0].EtcdDataDirEmpty(shortCtx(t)); err != nil || empty {
		t.Fatalf("founder: EtcdDataDirEmpty = %v, %v; want false", empty, err)
	}

	if err := nodes[0].Bootstrap(shortCtx(t)); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second Bootstrap on the founder: %v, want AlreadyExists", err)
	}

	waitFor(t, "all three members", func() bool {
		for _, n := range nodes {
			members, err := n.EtcdMembers(shortCtx(t))
			if err != nil || len(members) != 3 {
				return false
			}
		}

		return true
	})

	members, err := nodes[1].EtcdMembers(shortCtx(t))
	if err != nil {
		t.Fatal(err)
	}

	want := []string{srvs[0].Node().Hostname, srvs[1].Node().Hostname, srvs[2].Node().Hostname}
	slices.Sort(members)
	slices.Sort(want)

	if !slices.Equal(members, want) {
		t.Errorf("members = %v, want %v", members, want)
	}

	// Member ids, not names, tell one cluster from another: every member
	// lists the same ones.
	var ids []uint64

	for _, n := range nodes {
		list, err := n.(transport.EtcdMemberLister).EtcdMemberList(shortCtx(t))
		if err != nil || len(list) != 3 {
			t.Fatalf("%s: EtcdMemberList = %+v, %v; want three members", n.Addr(), list, err)
		}

		var got []uint64
		for _, m := range list {
			got = append(got, m.ID)
		}

		slices.Sort(got)

		if ids != nil && !slices.Equal(got, ids) {
			t.Errorf("%s: member ids %v, another member lists %v", n.Addr(), got, ids)
		}

		ids = got
	}

	for _, n := range nodes[1:] {
		if err := n.Bootstrap(shortCtx(t)); status.Code(err) != codes.AlreadyExists {
			t.Errorf("%s: Bootstrap after joining = %v, want AlreadyExists", n.Addr(), err)
		}
	}

	clusters, err := f.Registry.Clusters()
	if err != nil {
		t.Fatal(err)
	}

	if len(clusters) != 1 || clusters[0].Founder != srvs[0].Node().IP.String() || len(clusters[0].Members) != 3 {
		t.Errorf("clusters = %+v, want one of three founded by %s", clusters, srvs[0].Node().IP)
	}
}

// Talos never checks other nodes: a second control-plane node that has not
// joined yet accepts Bootstrap. The registry must show it.
func TestDoubleBootstrapIsVisible(t *testing.T) {
	t.Parallel()

	f := newFleet(t)
	slow := fakeapid.Node{JoinDelay: time.Hour}
	a, b := startNode(t, f, slow), startNode(t, f, slow)
	d := adminDialer(t)

	for _, srv := range []*fakeapid.Server{a, b} {
		if err := dial(t, d, srv).Bootstrap(shortCtx(t)); err != nil {
			t.Fatalf("%s: %v", srv.Node().IP, err)
		}
	}

	clusters, err := f.Registry.Clusters()
	if err != nil {
		t.Fatal(err)
	}

	founders := []string{}
	for _, c := range clusters {
		founders = append(founders, c.Founder)
	}

	want := []string{a.Node().IP.String(), b.Node().IP.String()}
	if !slices.Equal(founders, want) {
		t.Fatalf("founders = %v, want %v (two clusters)", founders, want)
	}
}

func TestDefaultDeadlines(t *testing.T) {
	t.Parallel()

	id, err := testPKI(t).AdminIdentity(time.Now().Add(-time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	srv := startNode(t, newFleet(t), fakeapid.Node{
		BootstrapFaults: []fakeapid.Fault{fakeapid.FaultHang},
	})

	d := transport.NewDialer(id,
		transport.WithCallTimeout(50*time.Millisecond),
		transport.WithBootstrapTimeout(80*time.Millisecond))
	n := dial(t, d, srv)

	// no deadline on the context: the defaults must end both calls
	start := time.Now()
	_, err = n.EtcdMembers(context.Background())

	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("EtcdMembers without deadline = %v, want DeadlineExceeded", err)
	}

	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Errorf("EtcdMembers ended after %v, before the default deadline", elapsed)
	}

	err = n.Bootstrap(context.Background())
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Bootstrap without deadline = %v, want DeadlineExceeded", err)
	}

	if transport.DefaultBootstrapTimeout <= fakeapid.TalosTimeSyncWait {
		t.Errorf("DefaultBootstrapTimeout %v must exceed Talos's time-sync wait %v", transport.DefaultBootstrapTimeout, fakeapid.TalosTimeSyncWait)
	}
}

func TestStartDelay(t *testing.T) {
	t.Parallel()

	srv := startNode(t, newFleet(t), fakeapid.Node{StartDelay: 300 * time.Millisecond})
	d := adminDialer(t)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()

	if n, err := d.Dial(ctx, srv.Addr()); err == nil {
		n.Close() //nolint:errcheck
		t.Fatal("Dial succeeded before the listener opened")
	} else if transport.IsCertificateRejected(err) {
		t.Errorf("a closed port is not a rejection: %v", err)
	}

	<-srv.Listening()

	if _, err := dial(t, d, srv).BootTime(shortCtx(t)); err != nil {
		t.Fatal(err)
	}
}
