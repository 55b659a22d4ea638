package states

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

func TestConnect(t *testing.T) {
	leader := election.IntentRef{Leader: election.Incarnation{IP: netip.MustParseAddr("198.18.0.9"), BootID: "z1", Node: "z0"}, Number: 4}
	errApid := errors.New("apid: connection refused")

	for _, tc := range []struct {
		name      string
		saved     func(self *memNode) *election.Status // the status file found, nil: none
		loadErr   error
		nodeErrs  map[string]error
		want      fsm.Event
		wantErr   error
		permanent bool
		check     func(t *testing.T, self *memNode, st election.Status) // the persisted status
	}{
		{name: "fresh node", want: fsm.Connected, check: func(t *testing.T, self *memNode, st election.Status) {
			// Peers name this machine by its first boot id from now on.
			if st.Incarnation.BootID != self.bootID || st.Incarnation.Node != self.bootID || st.Phase != election.PhaseIdle || st.Lock != nil {
				t.Fatalf("status %+v, want an idle status of boot %s named %s", st, self.bootID, self.bootID)
			}
		}},
		{name: "status of an earlier boot", saved: func(self *memNode) *election.Status {
			st := election.NewStatus(election.Candidate{Incarnation: election.Incarnation{IP: self.addr, BootID: "a0"}})
			st.Phase, st.Lock, st.Intent, st.WithdrawnThrough = election.PhaseLocked, &leader, 3, 2

			return &st
		}, want: fsm.Connected, check: func(t *testing.T, self *memNode, st election.Status) {
			// A lock to another leader survives the reboot (the leader may
			// be bootstrapping); own intents of the old boot are dead.
			if st.Lock == nil || !st.Lock.Is(leader) || st.Phase != election.PhaseLocked {
				t.Fatalf("lock %v, phase %s; want %s kept", st.Lock, st.Phase, leader)
			}

			if st.Incarnation.BootID != self.bootID || st.Incarnation.Node != "a0" || st.WithdrawnThrough != 3 {
				t.Fatalf("incarnation %+v, withdrawnThrough %d; want boot %s named a0, withdrawn through 3",
					st.Incarnation, st.WithdrawnThrough, self.bootID)
			}
		}},
		// Starting from empty memory could drop a lock: an operator looks.
		{name: "corrupt status file", loadErr: fmt.Errorf("%w /var/lib/x/status.json: bad json", statusfile.ErrCorrupt),
			wantErr: statusfile.ErrCorrupt, permanent: true},
		{name: "status file unreadable", loadErr: errApid, wantErr: errApid},
		{name: "boot id unreadable", nodeErrs: map[string]error{"BootID": errApid}, wantErr: errApid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				self := newNode(1, "a1", time.Now().Add(-time.Hour))
				self.errs = tc.nodeErrs
				s, store, _ := newTestSession(self, 3)
				s.local, s.status = nil, election.Status{}
				dialer := &memDialer{node: self}
				s.dialer, s.Network = dialer, memNetwork{network: s.network}
				store.loadErr = tc.loadErr

				if tc.saved != nil {
					store.loaded = tc.saved(self)
				}

				if err := expectEvent(t, s.connect, tc.want, tc.wantErr, 0); isPermanent(err) != tc.permanent {
					t.Fatalf("error %v: permanent %v, want %v", err, !tc.permanent, tc.permanent)
				}

				if want := netip.AddrPortFrom(self.addr, transport.APIDPort); len(dialer.dialed) != 1 || dialer.dialed[0] != want {
					t.Fatalf("dialed %v, want %v", dialer.dialed, want)
				}

				if tc.check == nil {
					if len(store.saved) != 0 {
						t.Fatalf("saved %d statuses on a failed connect", len(store.saved))
					}

					return
				}

				st := store.last(t)
				if st.Quorum != s.Settings.Quorum {
					t.Fatalf("published quorum %d, want QUORUM_NODES %d from the first write", st.Quorum, s.Settings.Quorum)
				}

				tc.check(t, self, st)
			})
		})
	}
}
