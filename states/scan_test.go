package states

import (
	"reflect"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

func TestScan(t *testing.T) {
	for _, tc := range []struct {
		name      string
		peers     int    // of b, c found by the scan
		alias     string // boot id of one more address the scan finds (a VIP)
		selfEtcd  bool
		want      fsm.Event
		wantWait  time.Duration
		wantAsked [][2]int // NextDelay questions
		wantPeers int      // kept for the election
		wantDone  bool     // one status saved, phase done
		wantWhy   string   // one status saved with this reason, lock and phase kept
	}{
		{name: "quorum reached", peers: 2, want: fsm.QuorumReached, wantPeers: 2},
		// Waits the scanner's delay, asked with the nodes known so far.
		{name: "quorum missing", peers: 1, want: fsm.QuorumMissing, wantWait: 7 * time.Second,
			wantAsked: [][2]int{{2, 0}}, wantPeers: 1,
			wantWhy: "waiting for quorum: 2 of 3 control-plane nodes in view"},
		// An address forwarding to b, or to this node, is not another node:
		// no quorum before a third machine answers.
		{name: "peer alias", peers: 1, alias: "b1", want: fsm.QuorumMissing, wantWait: 7 * time.Second,
			wantAsked: [][2]int{{2, 0}}, wantPeers: 2,
			wantWhy: "waiting for quorum: 2 of 3 control-plane nodes in view"},
		{name: "self alias", peers: 1, alias: "a1", want: fsm.QuorumMissing, wantWait: 7 * time.Second,
			wantAsked: [][2]int{{2, 0}}, wantPeers: 2,
			wantWhy: "waiting for quorum: 2 of 3 control-plane nodes in view"},
		// A reboot of a cluster member: nothing to bootstrap, quorum or not.
		{name: "quorum missing, own etcd healthy", selfEtcd: true, want: fsm.Finish,
			wantDone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				now := time.Now()
				self := newNode(1, "a1", now.Add(-time.Hour))
				b, c := newNode(2, "b1", now.Add(-time.Hour)), newNode(3, "c1", now.Add(-time.Hour))
				found := []*memNode{b, c}[:tc.peers]
				if tc.alias != "" {
					found = append(found, newNode(9, tc.alias, now.Add(-time.Hour)))
				}

				s, store, scanner := newTestSession(self, 3, found...)
				s.peers, scanner.delay = nil, 7*time.Second
				s.status.Lock = &election.IntentRef{Leader: b.candidate().Incarnation, Number: 4}
				s.status.Phase = election.PhaseLocked
				before := s.status.Clone()

				if tc.selfEtcd {
					self.etcd = etcdHealthy
				}

				expectEvent(t, s.scan, tc.want, nil, tc.wantWait)

				if !slices.Equal(scanner.asked, tc.wantAsked) {
					t.Fatalf("NextDelay asked %v, want %v", scanner.asked, tc.wantAsked)
				}

				if len(s.peers) != tc.wantPeers {
					t.Fatalf("%d peers kept for the election, want %d", len(s.peers), tc.wantPeers)
				}

				switch {
				case tc.wantDone:
					if len(store.saved) != 1 || store.saved[0].Phase != election.PhaseDone {
						t.Fatalf("saved %+v; want one status, phase done", store.saved)
					}
				case tc.wantWhy != "":
					// The operator's explanation; the protocol's state is untouched.
					want := before.Clone()
					want.Reason = tc.wantWhy

					if len(store.saved) != 1 || !reflect.DeepEqual(withoutStamp(store.saved[0]), withoutStamp(want)) {
						t.Fatalf("saved %+v; want %+v", store.saved, want)
					}
				case len(store.saved) > 0:
					t.Fatalf("saved %+v; want nothing", store.saved)
				}

				if self.bootstraps != 0 {
					t.Fatal("Scan sent a Bootstrap")
				}
			})
		})
	}
}

// withoutStamp drops what persist stamps on every save.
func withoutStamp(st election.Status) election.Status {
	st.FSMState, st.UpdatedAt = "", time.Time{}

	return st
}
