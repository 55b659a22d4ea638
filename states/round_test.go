package states

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The stability window watches the view Step ranks: an address that
// forwards to a peer, appearing in a later round, is no new candidate.
func TestAnAliasAppearingKeepsTheViewStable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		self := newNode(1, "a1", now.Add(-time.Hour))
		b, c := newNode(2, "b1", now.Add(-time.Hour)), newNode(3, "c1", now.Add(-time.Hour))
		s, _, _ := newTestSession(self, 3, b, c)

		first, err := s.observe(t.Context())
		if err != nil {
			t.Fatal(err)
		}

		time.Sleep(time.Minute)

		s.peers = peersOf(b, c, newNode(9, "b1", now.Add(-time.Hour)))

		obs, err := s.observe(t.Context())
		if err != nil {
			t.Fatal(err)
		}

		if !obs.ViewStableSince.Equal(first.ViewStableSince) {
			t.Fatalf("view stable since %v after the alias appeared, want %v", obs.ViewStableSince, first.ViewStableSince)
		}
	})
}

// A new local boot id under a running daemon (its node rebooted, which a
// real extension does not outlive) ends the run: retried, every round would
// fail the same way for ever.
func TestALocalRebootUnderTheDaemonEndsTheRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		self := newNode(1, "a1", now.Add(-time.Hour))
		s, _, _ := newTestSession(self, 3, newNode(2, "b1", now.Add(-time.Hour)), newNode(3, "c1", now.Add(-time.Hour)))

		self.bootID = "a2"

		_, err := s.observe(t.Context())
		if !isPermanent(err) || !strings.Contains(err.Error(), "local boot id changed from a1 to a2") {
			t.Fatalf("observe after a local reboot = %v, want a permanent error naming both boot ids", err)
		}
	})
}
