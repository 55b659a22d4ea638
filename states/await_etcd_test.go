package states

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

func TestAwaitEtcd(t *testing.T) {
	for _, tc := range []struct {
		name      string
		phase     election.Phase // after the send of intent 1, just now
		etcdUp    bool
		want      fsm.Event
		wantErr   error
		wantWait  time.Duration
		wantScans int
		wantPhase election.Phase // of the last saved status; "": nothing saved
	}{
		{name: "etcd running and healthy", phase: election.PhaseBootstrapped, etcdUp: true,
			want: fsm.Finish, wantPhase: election.PhaseDone},
		// Accepted: the bootstrap may be slow (an image pull), and it is
		// never repeated or re-elected: the round says wait again.
		{name: "bootstrapped, etcd never ready", phase: election.PhaseBootstrapped,
			want: fsm.AwaitingEtcd, wantWait: testEtcd, wantScans: 1, wantPhase: election.PhaseBootstrapped},
		// Outcome unknown and no sign of it after ResendAfter (= EtcdWait):
		// the Bootstrap state sends it again, behind its lock check.
		{name: "sent, no sign of it", phase: election.PhaseBootstrapping,
			want: fsm.SendBootstrap, wantWait: testEtcd, wantScans: 1, wantPhase: election.PhaseBootstrapping},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newTrio(t)
				tr.s.status = decideBootstrap(tr.s.status)
				tr.s.status.Phase, tr.s.status.BootstrapAt, tr.s.status.SendState = tc.phase, time.Now(), election.SendMayHaveArrived

				if tc.etcdUp {
					tr.self.dataEmpty, tr.self.etcd = false, etcdHealthy
				}

				expectEvent(t, tr.s.awaitEtcd, tc.want, tc.wantErr, tc.wantWait)

				if n := tr.bootstraps(); n != 0 {
					t.Fatalf("AwaitEtcd sent %d Bootstrap calls itself", n)
				}

				if tr.scanner.scans != tc.wantScans {
					t.Fatalf("%d rescans, want %d", tr.scanner.scans, tc.wantScans)
				}

				if tc.wantPhase == "" {
					if len(tr.store.saved) != 0 {
						t.Fatalf("saved %+v, want the status left alone", tr.store.saved)
					}

					return
				}

				if st := tr.store.last(t); st.Phase != tc.wantPhase {
					t.Fatalf("status phase %s, want %s", st.Phase, tc.wantPhase)
				}
			})
		})
	}
}
