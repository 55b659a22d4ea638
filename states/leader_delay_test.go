package states

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

func TestLeaderDelay(t *testing.T) {
	const poll = testMinWait // LeaderDelay's round: MinRound while leading

	for _, tc := range []struct {
		name             string
		arrange          func(*testing.T, *trio)                             // from: self announced intent 1 now, b and c locked to it
		during           func(t *testing.T, tr *trio, elapsed time.Duration) // before each pass
		want             fsm.Event
		minWait, maxWait time.Duration // virtual time until the first event other than lead
		check            func(t *testing.T, tr *trio, st election.Status)
	}{
		// Never before PRE_BOOTSTRAP_DELAY of a view stable since the
		// first round; the round that sees it ends the wait.
		{name: "all locked, delay elapsed", want: fsm.SendBootstrap, minWait: poll + testDelay, maxWait: poll + testDelay,
			check: func(t *testing.T, _ *trio, st election.Status) {
				if st.Phase != election.PhaseBootstrapping || st.Bootstrapping != 1 || st.SendState != election.SendUnsent || !st.BootstrapAt.IsZero() {
					t.Fatalf("status phase %s, bootstrapping %d, send %s at %v; want intent 1 decided, unsent",
						st.Phase, st.Bootstrapping, st.SendState, st.BootstrapAt)
				}
			}},
		// Each round's scan takes 300 ms, so the rounds drift off the
		// delay's end (the view is stable from 1.3 s, the delay ends at
		// 31.3 s, rounds see 29.9 s and 31.2 s): the leader looks again
		// when it ends, at 31.3 s plus one scan, not on the round after.
		{name: "the delay ends between rounds", arrange: func(_ *testing.T, tr *trio) {
			tr.scanner.took = 300 * time.Millisecond
		}, want: fsm.SendBootstrap, minWait: 31600 * time.Millisecond, maxWait: 31600 * time.Millisecond,
			check: func(t *testing.T, _ *trio, st election.Status) {
				if st.Phase != election.PhaseBootstrapping {
					t.Fatalf("status phase %s, want bootstrapping", st.Phase)
				}
			}},
		// A late joiner (locked at once) changes the view: the delay starts
		// again, so that every node has PRE_BOOTSTRAP_DELAY to be seen.
		{name: "a late joiner restarts the delay", during: func(t *testing.T, tr *trio, elapsed time.Duration) {
			if len(tr.scanner.peers) == 2 && elapsed >= testDelay/2 {
				d := newNode(4, "d1", time.Now().Add(-10*time.Minute))
				d.publish(t, lockTo(statusOf(d, 3), tr.s.status))
				tr.scanner.peers = peersOf(tr.b, tr.c, d)
			}
		}, want: fsm.SendBootstrap, minWait: testDelay/2 + poll + testDelay, maxWait: testDelay/2 + poll + testDelay,
			check: func(t *testing.T, _ *trio, st election.Status) {
				if st.Phase != election.PhaseBootstrapping || len(st.Candidates) != 4 {
					t.Fatalf("status phase %s, candidates %v; want bootstrapping with the joiner in view", st.Phase, st.Candidates)
				}
			}},
		// The leader keeps waiting (here until the test gives up).
		{name: "a peer never locks", arrange: func(t *testing.T, tr *trio) {
			tr.c.publish(t, statusOf(tr.c, 3))
		}, want: fsm.Lead, minWait: 2 * time.Minute, maxWait: 2*time.Minute + poll,
			check: func(t *testing.T, tr *trio, st election.Status) {
				if st.Phase != election.PhaseAnnounced || !strings.Contains(st.Reason, "has not locked yet") {
					t.Fatalf("status phase %s, reason %q; want still announced, blocked by %s", st.Phase, st.Reason, tr.c.addr)
				}
			}},
		{name: "an older peer announced", arrange: func(t *testing.T, tr *trio) {
			tr.b.bootTime = time.Now().Add(-2 * time.Hour)
			tr.b.publish(t, announce(statusOf(tr.b, 3), 1, time.Now()))
			tr.scanner.peers = peersOf(tr.b, tr.c)
		}, want: fsm.Follow, minWait: poll, maxWait: poll, check: func(t *testing.T, tr *trio, st election.Status) {
			want := election.IntentRef{Leader: election.Incarnation{IP: tr.b.addr, BootID: tr.b.bootID}, Number: 1}
			if st.WithdrawnThrough != 1 || st.Phase != election.PhaseLocked || st.Lock == nil || !st.Lock.Is(want) {
				t.Fatalf("status withdrawnThrough %d, phase %s, lock %v; want intent 1 withdrawn, locked to %s",
					st.WithdrawnThrough, st.Phase, st.Lock, want)
			}
		}},
		// A late joiner that ranks first but has not announced yet.
		{name: "an older peer appears without a status", arrange: func(t *testing.T, tr *trio) {
			tr.scanner.peers = peersOf(tr.b, tr.c, newNode(4, "d1", time.Now().Add(-2*time.Hour)))
		}, want: fsm.Wait, minWait: poll, maxWait: poll, check: func(t *testing.T, _ *trio, st election.Status) {
			if st.WithdrawnThrough != 1 || st.Phase != election.PhaseIdle || st.Lock != nil {
				t.Fatalf("status withdrawnThrough %d, phase %s, lock %v; want intent 1 withdrawn, no lock", st.WithdrawnThrough, st.Phase, st.Lock)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newTrio(t)
				if tc.arrange != nil {
					tc.arrange(t, tr)
				}

				start := time.Now()

				var event fsm.Event
				for event == "" || (event == fsm.Lead && time.Since(start) < 2*time.Minute) {
					if tc.during != nil {
						tc.during(t, tr, time.Since(start))
					}

					var err error
					if event, err = tr.s.leaderDelay(t.Context()); err != nil {
						t.Fatal(err)
					}
				}

				if event != tc.want {
					t.Fatalf("event %q, want %q", event, tc.want)
				}

				if waited := time.Since(start); waited < tc.minWait || waited > tc.maxWait {
					t.Fatalf("%q after %s, want it after %s to %s", event, waited, tc.minWait, tc.maxWait)
				}

				if n := tr.bootstraps(); n != 0 {
					t.Fatalf("LeaderDelay sent %d Bootstrap calls", n)
				}

				tc.check(t, tr, tr.store.last(t))
			})
		})
	}
}
