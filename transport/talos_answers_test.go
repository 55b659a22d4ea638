package transport_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// Answers of real Talos that read wrongly would hide a cluster or stall
// every node, over real gRPC against the fake apid.

// A /var/lib/etcd that cannot itself be read (EIO) comes as the root's
// entry with an error and a clean end of stream: unknown, never empty.
func TestDataDirReadErrorIsNotEmpty(t *testing.T) {
	t.Parallel()

	srv := startNode(t, newFleet(t), fakeapid.Node{MachineType: transport.MachineTypeControlPlane,
		DataDirReadError: "open /var/lib/etcd: input/output error", EtcdMemberListError: errors.New("connection refused")})
	n := dial(t, adminDialer(t), srv)

	empty, err := n.EtcdDataDirEmpty(shortCtx(t))
	if err == nil || empty {
		t.Fatalf("EtcdDataDirEmpty = %v, %v; want an error", empty, err)
	}

	signs, _ := transport.ProbeEtcdSigns(shortCtx(t), n)
	if signs.DataDirNonEmpty != election.Unsure {
		t.Fatalf("data dir sign %s, want unsure: %+v", signs.DataDirNonEmpty, signs)
	}
}

// An etcd that waited to join for EtcdJoinTimeout is Failed with
// "failed to build initial etcd cluster": it never ran, and nothing is
// unknown about it; any other Failed still is.
func TestEtcdThatGaveUpJoiningIsNoSign(t *testing.T) {
	t.Parallel()

	f := newFleet(t)
	gaveUp := startNode(t, f, fakeapid.Node{MachineType: transport.MachineTypeControlPlane, EtcdJoinTimeout: time.Nanosecond})
	waiting := startNode(t, f, fakeapid.Node{MachineType: transport.MachineTypeControlPlane})

	for _, tc := range []struct {
		name  string
		srv   *fakeapid.Server
		state string
	}{{"gave up joining", gaveUp, "Failed"}, {"waiting to join", waiting, "Preparing"}} {
		n := dial(t, adminDialer(t), tc.srv)

		svc, err := n.EtcdService(shortCtx(t))
		if err != nil || svc.State != tc.state {
			t.Fatalf("%s: EtcdService = %+v, %v; want state %s", tc.name, svc, err, tc.state)
		}

		signs, _ := transport.ProbeEtcdSigns(shortCtx(t), n)
		if signs.Any() || len(signs.Unknown) > 0 {
			t.Fatalf("%s: signs %+v, want no sign and nothing unknown", tc.name, signs)
		}
	}

	other := transport.EtcdSigns(transport.ServiceState{Found: true, State: "Failed", Message: "Failed to run pre stage: failed to pull image"},
		nil, true, nil, nil, errors.New("connection refused"))
	if other.EtcdRunning != election.Unsure {
		t.Fatalf("another Failed etcd read as %s, want unsure", other.EtcdRunning)
	}
}

// Cluster discovery is on however the Talos version writes its config:
// v1.14 no longer sets DiscoveryEnabled; an apid without the resource
// still lists members.
func TestClusterMembersAcrossConfigVersions(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name    string
		node    fakeapid.Node
		wantErr error
	}{
		{name: "v1.7 to v1.13", node: fakeapid.Node{}},
		{name: "v1.14", node: fakeapid.Node{DiscoveryConfigAs: "v1.14"}},
		{name: "no DiscoveryConfigs", node: fakeapid.Node{DiscoveryConfigAs: "absent"}},
		{name: "disabled", node: fakeapid.Node{DiscoveryDisabled: true}, wantErr: transport.ErrDiscoveryDisabled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			f := newFleet(t)
			tc.node.MachineType = transport.MachineTypeControlPlane
			srv := startNode(t, f, tc.node)
			startNode(t, f, fakeapid.Node{MachineType: transport.MachineTypeControlPlane})

			members, err := dial(t, adminDialer(t), srv).(transport.MemberLister).ClusterMembers(shortCtx(t))

			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ClusterMembers = %v, %v; want %v", members, err, tc.wantErr)
				}
			case err != nil || len(members) == 0:
				t.Fatalf("ClusterMembers = %v, %v; want the fleet's members", members, err)
			}
		})
	}
}
