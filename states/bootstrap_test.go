package states

import (
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

func TestBootstrap(t *testing.T) {
	errNotCP := status.Error(codes.Unimplemented, "bootstrap is only available on control plane nodes")

	for _, tc := range []struct {
		name      string
		answer    error                   // Bootstrap's answer
		arrange   func(*testing.T, *trio) // changes to the trio before the call
		want      fsm.Event
		wantErr   error
		permanent bool
		wantCalls int // on the leader; no other node is ever asked
		wantPhase election.Phase
		wantSend  election.SendState // what the status says of the request after the answer
	}{
		{name: "all locked", want: fsm.AwaitingEtcd, wantCalls: 1, wantPhase: election.PhaseBootstrapped, wantSend: election.SendAnswered},
		{name: "etcd data already there", answer: status.Error(codes.AlreadyExists, "etcd data directory is not empty"),
			want: fsm.AwaitingEtcd, wantCalls: 1, wantPhase: election.PhaseBootstrapped, wantSend: election.SendAnswered},
		// Refused before anything happened: retried later, and a restart
		// must not wait ResendAfter for a request that never left.
		{name: "time not in sync", answer: status.Error(codes.FailedPrecondition, "time is not in sync yet"),
			wantErr: errRetryBootstrap, wantCalls: 1, wantPhase: election.PhaseBootstrapping, wantSend: election.SendUnsent},
		{name: "not a control-plane node", answer: errNotCP, wantErr: errNotCP, permanent: true,
			wantCalls: 1, wantPhase: election.PhaseBootstrapping, wantSend: election.SendLeaving},
		// The last check: c no longer holds the lock (a wiped status), so
		// nothing is sent and nothing says it may be under way.
		{name: "a peer unlocked since the decision", arrange: func(t *testing.T, tr *trio) {
			tr.c.publish(t, statusOf(tr.c, 3))
		}, wantErr: errAny, wantPhase: election.PhaseBootstrapping, wantSend: election.SendUnsent},
		// b rebooted since the last scan. Only its new boot id
		// matches the status it publishes now (still locked, as locks
		// survive reboots), so only a fresh scan confirms its lock.
		{name: "peer rebooted since the last scan", arrange: func(t *testing.T, tr *trio) {
			before := lockTo(statusOf(tr.b, 3), tr.s.status)
			tr.b.bootID, tr.b.bootTime = "b2", time.Now().Add(-time.Minute)
			tr.b.publish(t, election.Resume(before, tr.b.candidate()))
			tr.scanner.peers = peersOf(tr.b, tr.c) // s.peers: the view before the reboot
		}, want: fsm.AwaitingEtcd, wantCalls: 1, wantPhase: election.PhaseBootstrapped, wantSend: election.SendAnswered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newTrio(t)
				tr.s.status = decideBootstrap(tr.s.status)
				tr.self.bootstrapErr = tc.answer

				if tc.arrange != nil {
					tc.arrange(t, tr)
				}

				var atSend election.Status

				tr.self.onBootstrap = func() { atSend = tr.store.last(t) }

				if err := expectEvent(t, tr.s.bootstrap, tc.want, tc.wantErr, 0); isPermanent(err) != tc.permanent {
					t.Fatalf("error %v: permanent %v, want %v", err, !tc.permanent, tc.permanent)
				}

				if n := tr.bootstraps(); n != tc.wantCalls || tr.self.bootstraps != n {
					t.Fatalf("%d Bootstrap calls (%d on the leader), want %d, on the leader", n, tr.self.bootstraps, tc.wantCalls)
				}

				if tr.scanner.scans != 1 {
					t.Fatalf("%d scans, want one fresh scan before the send", tr.scanner.scans)
				}

				// A crash during the RPC must find "may be under way".
				if tc.wantCalls > 0 && (atSend.Phase != election.PhaseBootstrapping || atSend.SendState != election.SendLeaving || atSend.BootstrapAt.IsZero()) {
					t.Fatalf("status saved before the RPC: phase %s, send %s at %v; want bootstrapping, leaving, with a send time",
						atSend.Phase, atSend.SendState, atSend.BootstrapAt)
				}

				last := tr.store.last(t)
				if last.Phase != tc.wantPhase || last.Bootstrapping != 1 || last.SendState != tc.wantSend || last.BootstrapAt.IsZero() != last.Withdrawable() {
					t.Fatalf("status after the answer: phase %s, bootstrapping %d, send %s at %v; want phase %s, bootstrapping 1, send %s",
						last.Phase, last.Bootstrapping, last.SendState, last.BootstrapAt, tc.wantPhase, tc.wantSend)
				}
			})
		})
	}
}

// A leader that decided to bootstrap but finds, on its last fresh scan, a
// cluster on a peer (made by hand or by another tool) sends nothing and
// follows in FollowerWait, where the protocol keeps running: AwaitEtcd
// would wait for its own etcd without ever locking to the new leader.
func TestBootstrapFollowsWhenAClusterAppearedBeforeTheSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTrio(t)
		tr.s.status = decideBootstrap(tr.s.status)
		tr.b.dataEmpty, tr.b.etcd = false, etcdHealthy

		expectEvent(t, tr.s.bootstrap, fsm.Follow, nil, 0)

		if n := tr.bootstraps(); n != 0 {
			t.Fatalf("Bootstrap sent %d times although a cluster exists", n)
		}

		last := tr.store.last(t)
		if last.Phase == election.PhaseBootstrapping || last.Cluster == nil {
			t.Fatalf("status after the round: phase %s, cluster %v; want the bootstrap withdrawn and the cluster remembered", last.Phase, last.Cluster)
		}
	})
}

// Omni may take the machine over after Connect looked for it (a
// SideroLinkConfig applied to the running node): the leader looks again
// right before the send, stands down and sends nothing. Its followers
// read the stand-down and stand down too (election.standDown).
func TestBootstrapStandsDownForOmniConnectedSinceConnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTrio(t)
		tr.s.status = decideBootstrap(tr.s.status)
		tr.self.sideroLink = "https://omni.example.com:8090?jointoken=" + joinToken

		handler := tr.s.endsOnStandDown(tr.s.bootstrap)
		expectEvent(t, handler.Handle, fsm.StandDown, nil, 0)

		if n := tr.bootstraps(); n != 0 {
			t.Fatalf("Bootstrap sent %d times beside Omni", n)
		}

		last := tr.store.last(t)
		want := "SideroLink configured (SiderolinkConfigs resource, apiEndpoint https://omni.example.com:8090): Omni bootstraps this cluster"

		if last.StandDown != want || last.SendState != election.SendUnsent {
			t.Fatalf("status after the stand-down: standDown %q, send %s; want %q, unsent", last.StandDown, last.SendState, want)
		}
	})
}
