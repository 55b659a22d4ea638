package states

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

func TestFollowerWait(t *testing.T) {
	for _, tc := range []struct {
		name     string
		arrange  func(t *testing.T, tr *trio, leader election.Status) // from: b, ranked first, announced intent 1; self and c locked to it
		want     fsm.Event
		wantWait time.Duration
		check    func(t *testing.T, tr *trio, st election.Status)
	}{
		// Done means this node's own etcd member runs, not the leader's.
		{name: "own etcd healthy", arrange: func(_ *testing.T, tr *trio, _ election.Status) {
			tr.self.dataEmpty, tr.self.etcd = false, etcdHealthy
		}, want: fsm.Finish, check: func(t *testing.T, _ *trio, st election.Status) {
			if st.Phase != election.PhaseDone {
				t.Fatalf("status phase %s, want done", st.Phase)
			}
		}},
		{name: "still waiting", want: fsm.Follow, wantWait: testFollow, check: func(t *testing.T, tr *trio, st election.Status) {
			if st.Phase != election.PhaseLocked || st.Lock == nil || st.Lock.Leader.BootID != tr.b.bootID || st.Lock.Number != 1 {
				t.Fatalf("status phase %s, lock %v; want still locked to %s#1", st.Phase, st.Lock, tr.b.addr)
			}
		}},
		{name: "leader withdrew", arrange: func(t *testing.T, tr *trio, leader election.Status) {
			leader.Phase, leader.Lock, leader.WithdrawnThrough = election.PhaseIdle, nil, leader.Intent
			tr.b.publish(t, leader)
		}, want: fsm.Wait, wantWait: testFollow, check: func(t *testing.T, _ *trio, st election.Status) {
			if st.Lock != nil || st.Phase != election.PhaseIdle {
				t.Fatalf("status phase %s, lock %v; want the lock released", st.Phase, st.Lock)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newTrio(t)
				tr.b.bootTime = time.Now().Add(-2 * time.Hour)
				tr.s.peers, tr.scanner.peers = peersOf(tr.b, tr.c), peersOf(tr.b, tr.c)
				leader := announce(statusOf(tr.b, 3), 1, time.Now())
				tr.b.publish(t, leader)
				tr.c.publish(t, lockTo(statusOf(tr.c, 3), leader))
				tr.s.status = lockTo(statusOf(tr.self, 3), leader)

				if tc.arrange != nil {
					tc.arrange(t, tr, leader)
				}

				expectEvent(t, tr.s.followerWait, tc.want, nil, tc.wantWait)

				if n := tr.bootstraps(); n != 0 {
					t.Fatalf("a follower sent %d Bootstrap calls", n)
				}

				tc.check(t, tr, tr.store.last(t))
			})
		})
	}
}
