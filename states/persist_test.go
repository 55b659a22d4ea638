package states

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// A follower's lock that reached status.json before the directory fsync
// failed can be counted by its leader: the follower must hold it in memory
// too, or, cut off from that leader, it would lock to another one and a
// second leader would bootstrap. A save that failed before publishing
// leaves the memory as peers still read it.
func TestFailedSaveAdoptsOnlyAPublishedStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		adopted bool
	}{
		{name: "published, directory fsync failed", err: fmt.Errorf("%w, but: fsync directory: %w", statusfile.ErrPublished, syscall.EIO), adopted: true},
		{name: "not published, no space", err: fmt.Errorf("write: %w", syscall.ENOSPC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newTrio(t)
				leader := tr.s.status
				// Self is B's view: c leads, self follows.
				tr.s, tr.store, tr.scanner = newTestSession(tr.b, 3, tr.self, tr.c)
				tr.self.publish(t, leader)
				tr.c.publish(t, lockTo(statusOf(tr.c, 3), leader))
				tr.store.saveErr = tc.err

				expectEvent(t, tr.s.elect, fsm.Event(""), errAny, 0)

				saved := tr.store.last(t)
				if saved.Lock == nil || !saved.Lock.Is(*leader.Lock) {
					t.Fatalf("saved lock %v, want the lock to %s", saved.Lock, leader.Lock)
				}

				held := tr.s.status.Lock != nil && tr.s.status.Lock.Is(*leader.Lock)
				if held != tc.adopted {
					t.Fatalf("after the failed save the memory holds lock %v; adopted %v, want %v", tr.s.status.Lock, held, tc.adopted)
				}
			})
		})
	}
}

// A node whose address left the host within its boot ends the run from
// every state that runs protocol rounds, before it asks its apid at the
// old address anything: retried in place, Elect would fail for ever on
// "read boot time ... DeadlineExceeded" and hold every lock.
func TestAddressGoneEndsEveryRound(t *testing.T) {
	gone := fmt.Errorf("this node's address is no longer on any interface: %w", syscall.EADDRNOTAVAIL)

	for _, tc := range []struct {
		name    string
		handler func(*Session) func(context.Context) (fsm.Event, error)
	}{
		{"Elect", func(s *Session) func(context.Context) (fsm.Event, error) { return s.elect }},
		{"LeaderDelay", func(s *Session) func(context.Context) (fsm.Event, error) { return s.leaderDelay }},
		{"FollowerWait", func(s *Session) func(context.Context) (fsm.Event, error) { return s.followerWait }},
		{"Bootstrap", func(s *Session) func(context.Context) (fsm.Event, error) { return s.bootstrap }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newTrio(t)
				tr.scanner.addressErr = gone
				// The old address no longer answers.
				tr.self.errs = map[string]error{"BootTime": context.DeadlineExceeded, "BootID": context.DeadlineExceeded}

				if _, err := tc.handler(tr.s)(t.Context()); !errors.Is(err, syscall.EADDRNOTAVAIL) {
					t.Fatalf("%s = %v, want the address error", tc.name, err)
				}

				if n := tr.bootstraps(); n != 0 {
					t.Fatalf("%s sent %d Bootstrap calls", tc.name, n)
				}
			})
		})
	}
}

// A peer that reboots while a round reads it shows the status file of its
// last boot beside the data directory of its new one: the round takes
// neither, so that no lock is released on facts of two boots.
func TestFactsOfAPeerThatRebootedMeanwhileAreUnsure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTrio(t)

		facts := tr.s.peerFacts(t.Context(), tr.s.peers[0])
		if facts.StatusState != election.StatusOK || len(facts.Signs.Unknown) != 0 {
			t.Fatalf("setup: %s, unknown %v", facts.StatusState, facts.Signs.Unknown)
		}

		tr.b.bootID = "b2" // rebooted after the scan that found it

		facts = tr.s.peerFacts(t.Context(), tr.s.peers[0])
		if facts.StatusState != election.StatusUnreadable || facts.Status != nil || len(facts.Signs.Unknown) == 0 || facts.Signs.DataDirNonEmpty == election.No {
			t.Fatalf("facts across a reboot: status %s %v, signs %+v; want unreadable and unsure", facts.StatusState, facts.Status, facts.Signs)
		}
	})
}

// mountingNode is a peer whose /var mounts in the middle of a round: its
// data directory lists as the bare root filesystem's (lstat: no such
// file), and right after that listing its daemon's status of this boot is
// there to read.
type mountingNode struct {
	*memNode
	mountedStatus []byte
}

func (n *mountingNode) EtcdDataDirEmpty(context.Context) (bool, error) {
	n.status = n.mountedStatus

	return false, fmt.Errorf("%w: lstat /var/lib/etcd: no such file or directory", transport.ErrNotFound)
}

// A status of the current boot proves that /var is mounted, so that an
// empty data directory is believed. Read after the listing, it would vouch
// for a listing of the unmounted /var: a bootstrapped leader that
// rebooted looks empty, and its follower releases the lock.
func TestMountProofIsReadBeforeTheDataDirectory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTrio(t)
		b := &mountingNode{memNode: tr.b, mountedStatus: tr.b.status}
		tr.b.status = nil // /var not mounted yet
		peer := tr.b.peer()
		peer.Node = b

		facts := tr.s.peerFacts(t.Context(), peer)
		if facts.Signs.DataDirNonEmpty != election.No || !facts.Signs.DataDirUnproven {
			t.Fatalf("setup: the listing gave %+v, want an unproven empty directory", facts.Signs)
		}

		if facts.StatusState == election.StatusOK {
			t.Fatalf("the status of a /var mounted after the listing was taken as proof for it: %s, signs %+v", facts.StatusState, facts.Signs)
		}
	})
}

// A waiting node's rounds compute the same status again and again: it is
// written once, not every round. Only a save that returned nil counts: after
// a failed one, published or not, the same status is written again, so that
// a status peers read is made durable as soon as the disk allows.
func TestUnchangedStatusIsWrittenOnlyUntilASaveSucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		self := newNode(1, "a1", time.Now().Add(-time.Hour))
		s, store, _ := newTestSession(self, 1)
		st := statusOf(self, 1)
		round := func() {
			t.Helper()
			time.Sleep(time.Second) // every round has a new time

			_ = s.persist(st)
		}

		for _, tc := range []struct {
			name    string
			saveErr error
			change  func()
			writes  int
		}{
			{name: "first save", writes: 1},
			{name: "same status, saved before", writes: 0},
			{name: "changed status", change: func() { st.Reason = "waiting" }, writes: 1},
			{name: "same again", writes: 0},
			{name: "published, directory fsync failed", change: func() { st.Reason = "locked" }, saveErr: fmt.Errorf("%w, but: %w", statusfile.ErrPublished, syscall.EIO), writes: 1},
			{name: "same status after a failed save", saveErr: fmt.Errorf("%w, but: %w", statusfile.ErrPublished, syscall.EIO), writes: 1},
			{name: "same status, the disk works again", writes: 1},
			{name: "same status, saved", writes: 0},
			{name: "not published", change: func() { st.Reason = "follow" }, saveErr: fmt.Errorf("write: %w", syscall.ENOSPC), writes: 1},
			{name: "same status after an unpublished save", writes: 1},
		} {
			if tc.change != nil {
				tc.change()
			}

			store.saveErr = tc.saveErr
			before := len(store.saved)
			round()

			if got := len(store.saved) - before; got != tc.writes {
				t.Fatalf("%s: %d writes, want %d", tc.name, got, tc.writes)
			}

			if got := s.status; got.Reason != st.Reason && tc.saveErr == nil {
				t.Fatalf("%s: the session acts on reason %q, want %q", tc.name, got.Reason, st.Reason)
			}
		}
	})
}
