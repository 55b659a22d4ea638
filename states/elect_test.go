package states

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

func TestElect(t *testing.T) {
	for _, tc := range []struct {
		name     string
		arrange  func(*testing.T, *trio) // from: nobody locked or announced, self booted first
		want     fsm.Event
		wantWait time.Duration
		check    func(t *testing.T, tr *trio, st election.Status)
	}{
		{name: "ranked first and synced", want: fsm.Lead, check: func(t *testing.T, tr *trio, st election.Status) {
			mine := election.IntentRef{Leader: st.Incarnation, Number: 1}
			if st.Phase != election.PhaseAnnounced || st.Intent != 1 || st.Lock == nil || !st.Lock.Is(mine) || !st.AnnouncedAt.Equal(time.Now()) {
				t.Fatalf("status phase %s, intent %d, lock %v, announced %v; want intent 1 announced now", st.Phase, st.Intent, st.Lock, st.AnnouncedAt)
			}
		}},
		{name: "a peer announced and ranked first", arrange: func(t *testing.T, tr *trio) {
			tr.b.bootTime = time.Now().Add(-2 * time.Hour)
			tr.b.publish(t, announce(statusOf(tr.b, 3), 2, time.Now()))
			tr.s.peers = peersOf(tr.b, tr.c) // the scan saw the new boot time
		}, want: fsm.Follow, check: func(t *testing.T, tr *trio, st election.Status) {
			want := election.IntentRef{Leader: election.Incarnation{IP: tr.b.addr, BootID: "b1"}, Number: 2}
			if st.Phase != election.PhaseLocked || st.Lock == nil || !st.Lock.Is(want) || st.Intent != 0 {
				t.Fatalf("status phase %s, lock %v, intent %d; want locked to %s, no intent of its own", st.Phase, st.Lock, st.Intent, want)
			}
		}},
		// A node with a smaller QUORUM_NODES could bootstrap alone: even
		// the first-ranked node neither leads nor locks, and says why.
		// Only an operator's fix changes that: it asks again as slowly as
		// a follower checks.
		{name: "a peer with another QUORUM_NODES", arrange: func(t *testing.T, tr *trio) {
			tr.c.publish(t, statusOf(tr.c, 5))
		}, want: fsm.Wait, wantWait: testFollow, check: func(t *testing.T, tr *trio, st election.Status) {
			if !strings.Contains(st.Reason, "quorum mismatch") || st.QuorumMismatch == nil || st.Lock != nil || st.Intent != 0 {
				t.Fatalf("status reason %q, mismatch %v, lock %v, intent %d; want a remembered quorum mismatch and no intent",
					st.Reason, st.QuorumMismatch, st.Lock, st.Intent)
			}
		}},
		// Unsynced, self ranks last (its boot time will move) and waits.
		{name: "time not synced", arrange: func(_ *testing.T, tr *trio) {
			tr.self.unsynced = true
		}, want: fsm.Wait, wantWait: testMinWait, check: func(t *testing.T, tr *trio, st election.Status) {
			if st.Intent != 0 || st.Lock != nil || !st.TimeUnsynced {
				t.Fatalf("status intent %d, lock %v, timeUnsynced %v; want no intent, published as unsynced", st.Intent, st.Lock, st.TimeUnsynced)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newTrio(t)
				tr.s.status = statusOf(tr.self, 3)
				tr.b.publish(t, statusOf(tr.b, 3))
				tr.c.publish(t, statusOf(tr.c, 3))

				if tc.arrange != nil {
					tc.arrange(t, tr)
				}

				expectEvent(t, tr.s.elect, tc.want, nil, tc.wantWait)

				if n := tr.bootstraps(); n != 0 {
					t.Fatalf("Elect sent %d Bootstrap calls", n)
				}

				tc.check(t, tr, tr.store.last(t))
			})
		})
	}
}

// A time status that did not arrive is not a synced clock: taken as one,
// a node that never syncs announced and held every lock while Talos
// refused its Bootstrap for ever (found by the simulator). Only an apid
// without COSI, which can never tell, leaves the check to Bootstrap.
func TestElectTimeStatusUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTrio(t)
		tr.s.status = statusOf(tr.self, 3)
		tr.b.publish(t, statusOf(tr.b, 3))
		tr.c.publish(t, statusOf(tr.c, 3))
		tr.self.unsynced = true
		tr.self.errs = map[string]error{"TimeSynced": context.DeadlineExceeded}

		expectEvent(t, tr.s.elect, "", context.DeadlineExceeded, 0)

		if st := tr.s.status; st.Intent != 0 || st.Lock != nil {
			t.Fatalf("intent %d, lock %v after a lost time status: want none", st.Intent, st.Lock)
		}

		tr.self.errs = map[string]error{"TimeSynced": fmt.Errorf("get time status: %w", transport.ErrUnsupported)}

		expectEvent(t, tr.s.elect, fsm.Lead, nil, 0)
	})
}
