package statusreport_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/statusreport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

var settings = statusreport.Settings{Now: now, PreBootstrapDelay: 10 * time.Second, ResendAfter: 5 * time.Minute}

// inc is node n's incarnation: 10.0.0.n, boot id of that number; node n
// booted n minutes before the first (so 1 ranks first by boot time).
func inc(n int) election.Incarnation {
	id := fmt.Sprintf("%08d-0000-4000-8000-%012d", n, n)

	return election.Incarnation{IP: netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", n)), BootID: id, Node: id}
}

// node is a reachable node with the status st (nil: no status file).
func node(n int, st *election.Status) statusreport.Facts {
	f := statusreport.Facts{
		Addr:     inc(n).IP,
		BootID:   inc(n).BootID,
		BootTime: now.Add(-time.Hour + time.Duration(n)*time.Minute),
		Signs:    election.Signs{EtcdRunning: election.No, DataDirNonEmpty: election.No, HasMembers: election.No},
	}

	if st == nil {
		f.StatusState = election.StatusMissing
	} else {
		st.Incarnation = inc(n)
		st.BootTime = f.BootTime
		f.Status, f.StatusState = st, election.StatusOK
	}

	return f
}

func unreachable(n int) statusreport.Facts {
	return statusreport.Facts{Addr: inc(n).IP, Unreachable: "dial apid 10.0.0.x:50000: connection refused"}
}

func status(phase election.Phase, quorum int, lock *election.IntentRef, intent uint64) *election.Status {
	return &election.Status{Version: election.StatusVersion, Phase: phase, Quorum: quorum, Lock: lock, Intent: intent, Reason: "published reason"}
}

func lockTo(n int, k uint64) *election.IntentRef {
	return &election.IntentRef{Leader: inc(n), Number: k}
}

func done(n int, bootstrapped uint64) statusreport.Facts {
	st := status(election.PhaseDone, 3, nil, bootstrapped)
	st.Bootstrapping = bootstrapped
	f := node(n, st)
	f.EtcdHealthy = true
	f.Signs = election.Signs{EtcdRunning: election.Yes, DataDirNonEmpty: election.Yes, HasMembers: election.Yes}

	return f
}

func kinds(v statusreport.Verdict) string {
	var k []string
	for _, b := range v.Blockers {
		k = append(k, b.Kind)
	}

	return strings.Join(k, ",")
}

func TestBootstrapped(t *testing.T) {
	st2 := done(2, 0)
	st3 := done(3, 0)
	r := statusreport.Build([]statusreport.Facts{done(1, 1), st2, st3}, settings)

	v := r.Verdict
	if v.State != statusreport.Bootstrapped || v.Leader == nil || v.Leader.Node != "10.0.0.1" || v.Leader.Intent != 1 {
		t.Fatalf("verdict %+v, want bootstrapped by 10.0.0.1 intent 1", v)
	}

	for _, row := range r.Rows {
		if row.Next != "done" || row.State != statusreport.StateOK || row.Etcd != "healthy" {
			t.Errorf("row %+v, want ok, healthy, next done", row)
		}
	}

	// One node still joining: progressing, naming it.
	joining := node(3, status(election.PhaseLocked, 3, nil, 0))
	r = statusreport.Build([]statusreport.Facts{done(1, 1), st2, joining}, settings)

	if r.Verdict.State != statusreport.Progressing || !strings.Contains(r.Verdict.Summary, "waiting for 10.0.0.3") {
		t.Fatalf("verdict %+v, want progressing, waiting for 10.0.0.3", r.Verdict)
	}
}

func TestWaitingForQuorum(t *testing.T) {
	r := statusreport.Build([]statusreport.Facts{
		node(1, status(election.PhaseIdle, 3, nil, 0)),
		node(2, status(election.PhaseIdle, 3, nil, 0)),
		unreachable(3),
	}, settings)

	v := r.Verdict
	if v.State != statusreport.Progressing || len(v.Blockers) != 0 {
		t.Fatalf("verdict %+v, want progressing without blockers", v)
	}

	if v.Leader.Node != "10.0.0.1" || v.Leader.Role != "would lead" || !strings.Contains(v.Summary, "quorum missing: 2 of 3") {
		t.Fatalf("verdict %+v, want 10.0.0.1 would lead, quorum missing", v)
	}

	if !strings.Contains(strings.Join(v.Notes, "\n"), "10.0.0.3 is unreachable") {
		t.Fatalf("notes %q, want 10.0.0.3 unreachable", v.Notes)
	}

	if r.Rows[2].State != statusreport.StateUnreachable || r.Rows[2].Rank != 0 || r.Rows[0].Rank != 1 || r.Rows[1].Rank != 2 {
		t.Fatalf("rows %+v", r.Rows)
	}
}

func TestLeaderOrderRanks(t *testing.T) {
	// 10.0.0.10 booted last, but ranks first in string order.
	a := node(9, status(election.PhaseIdle, 2, nil, 0))
	b := node(10, status(election.PhaseIdle, 2, nil, 0))
	a.Status.LeaderOrder, b.Status.LeaderOrder = election.OrderAddress, election.OrderAddress

	r := statusreport.Build([]statusreport.Facts{a, b}, settings)
	if r.Rows[1].Rank != 1 || r.Verdict.LeaderOrder != election.OrderAddress {
		t.Fatalf("rows %+v verdict %+v: want 10.0.0.10 first by address", r.Rows, r.Verdict)
	}

	if r.Verdict.Leader.Node != "10.0.0.10" || r.Verdict.Leader.Role != "leads" {
		t.Fatalf("leader %+v, want 10.0.0.10 leads (Step announces)", r.Verdict.Leader)
	}

	a.Status.LeaderOrder, b.Status.LeaderOrder = "", ""
	if r := statusreport.Build([]statusreport.Facts{a, b}, settings); r.Rows[0].Rank != 1 {
		t.Fatalf("boot-time: rows %+v, want 10.0.0.9 first", r.Rows)
	}
}

func TestLeaderWaitsForLocks(t *testing.T) {
	leader := status(election.PhaseAnnounced, 3, lockTo(1, 1), 1)
	leader.AnnouncedAt = now.Add(-time.Minute)

	r := statusreport.Build([]statusreport.Facts{
		node(1, leader),
		node(2, status(election.PhaseLocked, 3, lockTo(1, 1), 0)),
		node(3, status(election.PhaseIdle, 3, nil, 0)),
	}, settings)

	v := r.Verdict
	if v.State != statusreport.Progressing || v.Leader.Role != "leads" || v.Leader.Intent != 1 {
		t.Fatalf("verdict %+v, want progressing, 10.0.0.1 leads intent 1", v)
	}

	if !strings.Contains(strings.Join(v.Notes, "\n"), "10.0.0.3 has not locked to 10.0.0.1/00000001#1 yet: it locks on its next round") {
		t.Fatalf("notes %q, want 10.0.0.3 locking next round", v.Notes)
	}
}

// The report does not assume the view was stable: with every lock in
// place the leader still waits PRE_BOOTSTRAP_DELAY, and is not reported
// as bootstrapping.
func TestStabilityNotAssumed(t *testing.T) {
	leader := status(election.PhaseAnnounced, 2, lockTo(1, 1), 1)
	leader.AnnouncedAt = now.Add(-time.Hour)

	r := statusreport.Build([]statusreport.Facts{node(1, leader), node(2, status(election.PhaseLocked, 2, lockTo(1, 1), 0))}, settings)
	if r.Verdict.State != statusreport.Progressing || r.Rows[0].Next != "lead" || !strings.Contains(r.Rows[0].NextReason, "view stable for 0s of 10s") {
		t.Fatalf("report %+v, want the leader waiting for a stable view", r)
	}
}

func TestVanishedLeader(t *testing.T) {
	for _, tt := range []struct {
		name   string
		leader []statusreport.Facts
		where  string
	}{
		{"unreachable", []statusreport.Facts{unreachable(1)}, "10.0.0.1 is unreachable"},
		{"absent from the list", nil, "10.0.0.1 is not among the nodes asked"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nodes := append(tt.leader,
				node(2, status(election.PhaseLocked, 3, lockTo(1, 4), 0)),
				node(3, status(election.PhaseLocked, 3, lockTo(1, 4), 0)))
			v := statusreport.Build(nodes, settings).Verdict

			if v.State != statusreport.Blocked || kinds(v) != "vanished-leader,vanished-leader" || !strings.Contains(v.Summary, tt.where) {
				t.Fatalf("verdict %+v, want blocked by two vanished-leader locks, %q", v, tt.where)
			}

			want := "TALOS_AUTO_BOOTSTRAP_BREAK_LOCK=10.0.0.1/00000001-0000-4000-8000-000000000001/4"
			if len(v.BreakLocks) != 2 || v.BreakLocks[0].Node != "10.0.0.2" || v.BreakLocks[1].Node != "10.0.0.3" {
				t.Fatalf("break locks %+v, want one per blocked node", v.BreakLocks)
			}

			for _, b := range v.BreakLocks {
				if b.Line != want || !strings.Contains(b.Conditions, "never ran etcd and will not come back with its disk") {
					t.Fatalf("break lock %+v, want %s with the safety conditions", b, want)
				}

				// The daemon accepts the value and it names the lock.
				ref, err := config.ParseLockRef(strings.TrimPrefix(b.Line, statusreport.BreakLockVariable+"="))
				if err != nil || ref.IP != inc(1).IP || ref.BootID != inc(1).BootID || ref.Intent != 4 {
					t.Fatalf("ParseLockRef(%s) = %+v, %v", b.Line, ref, err)
				}
			}
		})
	}

	t.Run("leader in sight: no escape hatch", func(t *testing.T) {
		leader := status(election.PhaseAnnounced, 3, lockTo(1, 4), 4)
		leader.AnnouncedAt = now.Add(-time.Minute)
		v := statusreport.Build([]statusreport.Facts{
			node(1, leader),
			node(2, status(election.PhaseLocked, 3, lockTo(1, 4), 0)),
			node(3, status(election.PhaseLocked, 3, lockTo(1, 4), 0)),
		}, settings).Verdict

		if v.State != statusreport.Progressing || len(v.BreakLocks) != 0 {
			t.Fatalf("verdict %+v, want progressing without break locks", v)
		}
	})

	// Without a status of its new boot nothing names the machine, so it
	// may be the leader: no escape hatch, and it is not reported apart as
	// a node without the extension.
	t.Run("leader rebooted without a status of its new boot", func(t *testing.T) {
		rebooted := node(1, nil)
		rebooted.BootID = "0000000a-0000-4000-8000-00000000000a"
		v := statusreport.Build([]statusreport.Facts{
			rebooted,
			node(2, status(election.PhaseLocked, 3, lockTo(1, 4), 0)),
		}, settings).Verdict

		if v.State != statusreport.Blocked || kinds(v) != "leader-unidentified" || len(v.BreakLocks) != 0 ||
			!strings.Contains(v.Summary, "10.0.0.1 (no status file) answers without a status of its current boot") {
			t.Fatalf("verdict %+v, want blocked by leader-unidentified naming 10.0.0.1, no break lock", v)
		}
	})

	t.Run("another node without a status blocks the escape hatch", func(t *testing.T) {
		stale := node(3, status(election.PhaseIdle, 3, nil, 0))
		stale.Status, stale.StatusState = nil, election.StatusStale
		v := statusreport.Build([]statusreport.Facts{
			unreachable(1),
			node(2, status(election.PhaseLocked, 3, lockTo(1, 4), 0)),
			stale,
		}, settings).Verdict

		if v.State != statusreport.Blocked || kinds(v) != "leader-unidentified" || len(v.BreakLocks) != 0 ||
			!strings.Contains(v.Summary, "10.0.0.3 (status file of an earlier boot: its daemon has not resumed yet)") {
			t.Fatalf("verdict %+v, want blocked naming 10.0.0.3, no break lock", v)
		}
	})
}

func TestMismatch(t *testing.T) {
	v := statusreport.Build([]statusreport.Facts{
		node(1, status(election.PhaseIdle, 3, nil, 0)),
		node(2, status(election.PhaseIdle, 2, nil, 0)),
		node(3, status(election.PhaseIdle, 3, nil, 0)),
	}, settings).Verdict

	if v.State != statusreport.Blocked || kinds(v) != "quorum-mismatch" ||
		!strings.Contains(v.Blockers[0].Detail, "10.0.0.2 has 2; 10.0.0.1, 10.0.0.3 have 3") {
		t.Fatalf("verdict %+v, want blocked by a quorum mismatch naming both values", v)
	}

	a := node(1, status(election.PhaseIdle, 2, nil, 0))
	a.Status.LeaderOrder = election.OrderAddress
	v = statusreport.Build([]statusreport.Facts{a, node(2, status(election.PhaseIdle, 2, nil, 0))}, settings).Verdict

	if v.State != statusreport.Blocked || kinds(v) != "leader-order-mismatch" ||
		!strings.Contains(v.Blockers[0].Detail, "10.0.0.1 has address; 10.0.0.2 has boot-time") {
		t.Fatalf("verdict %+v, want blocked by a leader order mismatch", v)
	}

	// Remembered from a peer now out of sight.
	b := node(1, status(election.PhaseIdle, 2, nil, 0))
	b.Status.QuorumMismatch = &election.Mismatch{Node: inc(3), Quorum: 1, At: now.Add(-time.Hour)}
	v = statusreport.Build([]statusreport.Facts{b, node(2, status(election.PhaseIdle, 2, nil, 0)), unreachable(3)}, settings).Verdict

	if v.State != statusreport.Blocked || kinds(v) != "quorum-mismatch" || !strings.Contains(v.Blockers[0].Detail, "remembers 10.0.0.3") {
		t.Fatalf("verdict %+v, want blocked by the remembered mismatch", v)
	}
}

func TestNoExtension(t *testing.T) {
	v := statusreport.Build([]statusreport.Facts{
		node(1, status(election.PhaseIdle, 2, nil, 0)),
		node(2, nil),
	}, settings).Verdict

	if v.State != statusreport.Blocked || kinds(v) != "no-extension" || v.Blockers[0].Node != "10.0.0.2" {
		t.Fatalf("verdict %+v, want blocked: 10.0.0.2 has no extension", v)
	}

	// Once etcd exists, a node without the extension blocks nothing.
	v = statusreport.Build([]statusreport.Facts{done(1, 1), node(2, nil)}, settings).Verdict
	if v.State != statusreport.Bootstrapped {
		t.Fatalf("verdict %+v, want bootstrapped", v)
	}
}

func TestNothingReadable(t *testing.T) {
	foreign := statusreport.Facts{Addr: inc(2).IP, Foreign: "server certificate does not chain to the cluster CA"}
	r := statusreport.Build([]statusreport.Facts{unreachable(1), foreign}, settings)

	if r.Verdict.State != statusreport.Unknown || r.Rows[1].State != statusreport.StateForeign {
		t.Fatalf("report %+v, want unknown with a foreign row", r)
	}
}

func TestWriteText(t *testing.T) {
	r := statusreport.Build([]statusreport.Facts{
		unreachable(1),
		node(2, status(election.PhaseLocked, 3, lockTo(1, 4), 0)),
		node(3, status(election.PhaseIdle, 3, nil, 0)),
	}, settings)

	var out bytes.Buffer
	if err := statusreport.WriteText(&out, r); err != nil {
		t.Fatal(err)
	}

	text := out.String()
	for _, want := range []string{
		"NODE      BOOT TIME             RANK  PHASE   LOCK                 INTENT  QUORUM  ORDER      ETCD  STATE        REASON",
		"10.0.0.1  -                     -     -       -                    -       -       -          -     unreachable  dial apid",
		"10.0.0.2  2025-06-01T11:02:00Z  1     locked  10.0.0.1/00000001#4  0       3       boot-time  none  ok           published reason",
		"10.0.0.3  2025-06-01T11:03:00Z  2     idle    -                    0       3       boot-time  none  ok           published reason",
		"Verdict: BLOCKED: 10.0.0.2 is locked to 10.0.0.1/00000001#4, whose leader 10.0.0.1 is unreachable",
		"[vanished-leader] 10.0.0.2 is locked to 10.0.0.1/00000001#4, whose leader 10.0.0.1 is unreachable",
		"  10.0.0.2:  TALOS_AUTO_BOOTSTRAP_BREAK_LOCK=10.0.0.1/00000001-0000-4000-8000-000000000001/4\n      only if 10.0.0.1 never ran etcd",
		"10.0.0.2: wait: quorum missing: 2 of 3 control-plane nodes in view",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

// bootstrappedLeader is node 1's status after Bootstrap for intent 1 was
// accepted in its current boot.
func bootstrappedLeader() *election.Status {
	st := status(election.PhaseBootstrapped, 3, lockTo(1, 1), 1)
	st.Send = election.Send{Bootstrapping: 1, BootstrapBootID: inc(1).BootID, SendState: election.SendAnswered, BootstrapAt: now.Add(-time.Minute)}

	return st
}

// followersSawBootstrapping are nodes 2 and 3 locked to 1#1 with the
// reasons their daemons published while node 1 was bootstrapped in view.
func followersSawBootstrapping(t *testing.T) (statusreport.Facts, statusreport.Facts) {
	t.Helper()

	f2 := node(2, status(election.PhaseLocked, 3, lockTo(1, 1), 0))
	f3 := node(3, status(election.PhaseLocked, 3, lockTo(1, 1), 0))
	r := statusreport.Build([]statusreport.Facts{node(1, bootstrappedLeader()), f2, f3}, settings)

	f2.Status.Reason, f3.Status.Reason = r.Rows[1].NextReason, r.Rows[2].NextReason
	if !strings.Contains(f2.Status.Reason, "is bootstrapping intent 1") {
		t.Fatalf("follower's reason %q does not name the bootstrapping leader", f2.Status.Reason)
	}

	return f2, f3
}

// A leader that bootstrapped comes back from a reboot at another address
// (DHCP). Before its /var is mounted it answers without a status: nothing
// names it, so it may be the leader, with etcd data.
func TestLeaderBackAtAnotherAddress(t *testing.T) {
	f2, f3 := followersSawBootstrapping(t)

	back := statusreport.Facts{
		Addr:        netip.MustParseAddr("10.0.0.9"),
		BootID:      "00000009-0000-4000-8000-000000000009",
		BootTime:    now.Add(-time.Minute),
		StatusState: election.StatusMissing,
		// /var/lib/etcd absent: apid answers before /var is mounted.
		Signs: election.Signs{EtcdRunning: election.No, DataDirNonEmpty: election.No, HasMembers: election.No, DataDirUnproven: true},
	}

	t.Run("/var not mounted yet", func(t *testing.T) {
		v := statusreport.Build([]statusreport.Facts{f2, f3, back}, settings).Verdict

		if v.State != statusreport.Blocked || kinds(v) != "leader-unidentified,leader-unidentified" || len(v.BreakLocks) != 0 {
			t.Fatalf("verdict %+v, want blocked by two unidentified-leader locks and no BREAK_LOCK", v)
		}

		first := "10.0.0.1 was last seen in phase bootstrapped of intent 1 (in 10.0.0.2's status): it may have founded etcd. "
		if !strings.HasPrefix(v.Summary, first) || !strings.Contains(v.Summary, "10.0.0.9 (no status file) answers without a status") {
			t.Fatalf("summary %q, want it to start with %q and name 10.0.0.9", v.Summary, first)
		}
	})

	// Every node that answers has a status: the escape hatch is offered,
	// and both it and the verdict say first what the leader was doing.
	t.Run("gone for good", func(t *testing.T) {
		v := statusreport.Build([]statusreport.Facts{unreachable(1), f2, f3}, settings).Verdict

		seen := "10.0.0.1 was last seen in phase bootstrapped of intent 1 (in 10.0.0.2's status): it may have founded etcd"
		if v.State != statusreport.Blocked || kinds(v) != "vanished-leader,vanished-leader" || len(v.BreakLocks) != 2 ||
			!strings.HasPrefix(v.Summary, seen+". ") {
			t.Fatalf("verdict %+v, want blocked, saying first %q", v, seen)
		}

		for _, b := range v.BreakLocks {
			if !strings.HasPrefix(b.Conditions, seen+"; only if 10.0.0.1 never ran etcd") {
				t.Errorf("conditions %q do not start with %q", b.Conditions, seen)
			}
		}
	})

	t.Run("/var mounted, daemon not resumed", func(t *testing.T) {
		stale := back
		stale.StatusState, stale.EarlierStatus = election.StatusStale, bootstrappedLeader()
		stale.EarlierStatus.Incarnation = inc(1)
		f2 := f2
		f2.Status = status(election.PhaseLocked, 3, lockTo(1, 1), 0) // its reason no longer says

		v := statusreport.Build([]statusreport.Facts{f2, stale}, settings).Verdict

		if v.State != statusreport.Blocked || len(v.BreakLocks) != 0 ||
			!strings.HasPrefix(v.Summary, "10.0.0.1 was last seen in phase bootstrapped of intent 1 (its own status file of that boot, read at 10.0.0.9)") ||
			!strings.Contains(v.Summary, "10.0.0.9 (its status file was written by 10.0.0.1/00000001, the locked boot") {
			t.Fatalf("verdict %+v, want blocked, quoting 10.0.0.9's status of the locked boot", v)
		}
	})

	// Its daemon resumed: its status of the new boot lists the locked boot,
	// so the election finds its leader there, etcd data and all.
	t.Run("status of the new boot", func(t *testing.T) {
		resumed := back
		st := bootstrappedLeader()
		st.Incarnation = election.Incarnation{IP: back.Addr, BootID: back.BootID, Node: inc(1).Node}
		st.PastBoots = []string{inc(1).BootID}
		resumed.Status, resumed.StatusState = st, election.StatusOK
		resumed.Signs = election.Signs{EtcdRunning: election.No, DataDirNonEmpty: election.Yes, HasMembers: election.No}

		r := statusreport.Build([]statusreport.Facts{f2, f3, resumed}, settings)
		v := r.Verdict

		if v.State != statusreport.Progressing || len(v.Blockers) != 0 || len(v.BreakLocks) != 0 ||
			v.Summary != "etcd was bootstrapped by 10.0.0.9 (intent 1); waiting for 10.0.0.2 (etcd none), 10.0.0.3 (etcd none), 10.0.0.9 (etcd present) to be healthy" {
			t.Fatalf("verdict %+v, want progressing with the leader found at 10.0.0.9", v)
		}

		if r.Rows[2].Next != "await-etcd" {
			t.Fatalf("row %+v, want the leader awaiting its etcd", r.Rows[2])
		}
	})
}

// movedLeader is node 1 bootstrapping intent 1, now at 10.0.0.9 within
// the same boot: its daemon restarted there and its own lock names the old
// address. It sent Bootstrap ten minutes ago and no data showed.
func movedLeader() statusreport.Facts {
	f := node(1, nil)
	f.Addr = netip.MustParseAddr("10.0.0.9")
	st := bootstrappedLeader()
	st.Phase, st.BootstrapAt = election.PhaseBootstrapping, now.Add(-10*time.Minute)
	st.Incarnation = election.Incarnation{IP: f.Addr, BootID: inc(1).BootID, Node: inc(1).Node}
	st.BootTime = f.BootTime
	f.Status, f.StatusState = st, election.StatusOK

	return f
}

func TestUnconfirmedBootstrapIsBlocked(t *testing.T) {
	locked := func(n int) statusreport.Facts { return node(n, status(election.PhaseLocked, 3, lockTo(1, 1), 0)) }

	t.Run("leader moved within its boot", func(t *testing.T) {
		v := statusreport.Build([]statusreport.Facts{movedLeader(), locked(2), locked(3)}, settings).Verdict

		if v.State != statusreport.Blocked || kinds(v) != "unconfirmed-bootstrap" || v.Leader.Node != "10.0.0.9" || v.Leader.Role != "bootstrapping" {
			t.Fatalf("verdict %+v, want blocked: the leader at 10.0.0.9 cannot confirm", v)
		}

		for _, want := range []string{"does not hold live intent 1", "its address changed from 10.0.0.1 within its boot", "reboot it"} {
			if !strings.Contains(v.Summary, want) {
				t.Errorf("summary %q lacks %q", v.Summary, want)
			}
		}
	})

	t.Run("too few locks", func(t *testing.T) {
		leader := bootstrappedLeader()
		leader.Phase, leader.BootstrapAt, leader.SendState = election.PhaseBootstrapping, time.Time{}, election.SendUnsent
		v := statusreport.Build([]statusreport.Facts{
			node(1, leader), locked(2), node(3, status(election.PhaseLocked, 3, lockTo(4, 2), 0)),
		}, settings).Verdict

		if v.State != statusreport.Blocked || kinds(v) != "unconfirmed-bootstrap" ||
			!strings.Contains(v.Summary, "only 2 of quorum 3 nodes locked to 10.0.0.1/00000001#1") {
			t.Fatalf("verdict %+v, want blocked with ConfirmLocks' reason", v)
		}
	})

	t.Run("confirmed: progressing", func(t *testing.T) {
		leader := bootstrappedLeader()
		leader.Phase, leader.BootstrapAt, leader.SendState = election.PhaseBootstrapping, time.Time{}, election.SendUnsent
		v := statusreport.Build([]statusreport.Facts{node(1, leader), locked(2), locked(3)}, settings).Verdict

		if v.State != statusreport.Progressing || len(v.Blockers) != 0 ||
			v.Summary != "10.0.0.1 is bootstrapping intent 1: sending Bootstrap for intent 1" {
			t.Fatalf("verdict %+v, want progressing: the leader sends Bootstrap", v)
		}
	})

	t.Run("sent, waiting for data: progressing", func(t *testing.T) {
		v := statusreport.Build([]statusreport.Facts{node(1, bootstrappedLeader()), locked(2), locked(3)}, settings).Verdict

		if v.State != statusreport.Progressing || !strings.Contains(v.Summary, "10.0.0.1 is bootstrapping intent 1: bootstrap 1 answered") {
			t.Fatalf("verdict %+v, want progressing: the leader waits for its etcd", v)
		}
	})
}

func TestBootstrappedNeedsEtcdHealthyNow(t *testing.T) {
	down := func(n int) statusreport.Facts {
		f := done(n, 0)
		f.EtcdHealthy = false
		f.Signs.EtcdRunning, f.Signs.HasMembers = election.Unsure, election.Unsure

		return f
	}

	v := statusreport.Build([]statusreport.Facts{done(1, 1), down(2), down(3)}, settings).Verdict
	if v.State != statusreport.Progressing || !strings.Contains(v.Summary,
		"waiting for 10.0.0.2 (etcd present now, although its status says done), 10.0.0.3 (etcd present now, although its status says done)") {
		t.Fatalf("verdict %+v, want progressing: etcd is down on two nodes whose status says done", v)
	}

	// A node whose bootstrap died with an earlier boot (withdrawn by rule
	// 7) and that later joined is no bootstrapper.
	withdrawn := done(2, 1)
	withdrawn.Status.WithdrawnThrough = 1

	v = statusreport.Build([]statusreport.Facts{unreachable(1), withdrawn, done(3, 0)}, settings).Verdict
	if v.State != statusreport.Bootstrapped || v.Leader != nil || !strings.HasPrefix(v.Summary, "etcd exists; ") {
		t.Fatalf("verdict %+v, want bootstrapped without naming 10.0.0.2", v)
	}
}

func TestSplit(t *testing.T) {
	withMembers := func(n int, members ...int) statusreport.Facts {
		f := done(n, 0)
		for _, m := range members {
			f.EtcdMembers = append(f.EtcdMembers, statusreport.EtcdMember{ID: uint64(100 + m), Name: fmt.Sprintf("talos-%d", m)})
		}

		return f
	}

	r := statusreport.Build([]statusreport.Facts{withMembers(1, 1, 3), withMembers(2, 2), withMembers(3, 3, 1)}, settings)
	v := r.Verdict

	want := "2 separate etcd clusters, whose member lists share no member: 10.0.0.1, 10.0.0.3 (members talos-1, talos-3); 10.0.0.2 (members talos-2)"
	if v.State != statusreport.Split || v.Summary != want || len(v.EtcdClusters) != 2 {
		t.Fatalf("verdict %+v, want split: %s", v, want)
	}

	var out bytes.Buffer
	if err := statusreport.WriteText(&out, r); err != nil {
		t.Fatal(err)
	}

	if !strings.Contains(out.String(), "Verdict: SPLIT: 2 separate etcd clusters") ||
		!strings.Contains(out.String(), "  10.0.0.2: members talos-2\n") {
		t.Fatalf("text lacks the split:\n%s", out.String())
	}

	// Lists that share a member are one cluster, even through a third.
	v = statusreport.Build([]statusreport.Facts{withMembers(1, 1), withMembers(2, 2, 3), withMembers(3, 1, 2, 3)}, settings).Verdict
	if v.State != statusreport.Bootstrapped {
		t.Fatalf("verdict %+v, want bootstrapped: one cluster", v)
	}
}

// A Talos init node founds etcd by itself: the verdict names it and who
// waits; two of them block, naming both; no BREAK_LOCK line is offered.
func TestInitNodeVerdicts(t *testing.T) {
	initNode := func(n int) statusreport.Facts {
		f := node(n, status(election.PhaseIdle, 3, nil, 0))
		f.MachineType = transport.MachineTypeInit

		return f
	}

	v := statusreport.Build([]statusreport.Facts{node(1, status(election.PhaseIdle, 3, nil, 0)), node(2, status(election.PhaseIdle, 3, nil, 0)), initNode(3)}, settings).Verdict
	if v.State != statusreport.Progressing || !strings.Contains(v.Summary, "10.0.0.3 is the Talos init node") ||
		!strings.Contains(v.Summary, "10.0.0.1, 10.0.0.2 wait to join") || len(v.BreakLocks) != 0 {
		t.Fatalf("verdict %+v, want progressing, the init node 10.0.0.3 founding and the others waiting", v)
	}

	v = statusreport.Build([]statusreport.Facts{initNode(1), node(2, status(election.PhaseIdle, 3, nil, 0)), initNode(3)}, settings).Verdict
	if v.State != statusreport.Blocked || kinds(v) != statusreport.KindTwoInitNodes ||
		!strings.Contains(v.Blockers[0].Detail, "10.0.0.1, 10.0.0.3 are all Talos init nodes") {
		t.Fatalf("verdict %+v, want blocked on two init nodes, naming both", v)
	}

	// One init node asked at its IPv4 and its IPv6 address answers with one
	// boot id: one init node, not a split.
	twoAddrs := initNode(3)
	twoAddrs.Addr = netip.MustParseAddr("fd00::3")

	v = statusreport.Build([]statusreport.Facts{node(1, status(election.PhaseIdle, 3, nil, 0)), initNode(3), twoAddrs}, settings).Verdict
	if v.State == statusreport.Blocked || !strings.Contains(v.Summary, "10.0.0.3 is the Talos init node") {
		t.Fatalf("verdict %+v, want one init node (10.0.0.3) asked at two addresses", v)
	}
}

// Under LEADER_ORDER=address the lowest address leads whatever its clock:
// when it is not synced, the verdict says that nothing happens until it is.
func TestUnsyncedAddressLeaderIsNamed(t *testing.T) {
	st := func() *election.Status {
		s := status(election.PhaseIdle, 3, nil, 0)
		s.LeaderOrder = election.OrderAddress

		return s
	}

	first := st()
	first.TimeUnsynced = true

	v := statusreport.Build([]statusreport.Facts{node(1, first), node(2, st()), node(3, st())}, settings).Verdict
	if !strings.Contains(v.Summary, "10.0.0.1 ranks first by address but its time is not synced") {
		t.Fatalf("verdict %+v, want the unsynced lowest-address leader named", v)
	}
}

func TestStoodDown(t *testing.T) {
	omni := election.StandDownMessage("siderolink.api=https://omni.example.com")

	// Node 1 saw Omni and stood down; node 2 does on its next round; node 3
	// (no extension) is not named.
	st1 := status(election.PhaseIdle, 3, nil, 0)
	st1.StandDown, st1.Reason = omni, omni
	r := statusreport.Build([]statusreport.Facts{
		node(1, st1),
		node(2, status(election.PhaseIdle, 3, nil, 0)),
		node(3, nil),
	}, settings)

	v := r.Verdict
	if v.State != statusreport.StoodDown || v.Summary != "10.0.0.1 stood down: "+omni+"; no daemon of this cluster sends Bootstrap" {
		t.Fatalf("verdict %+v, want stood down, naming 10.0.0.1 and its signal", v)
	}

	if len(v.Blockers) != 0 || v.Leader != nil {
		t.Fatalf("verdict %+v: no leader and no blockers once Omni bootstraps", v)
	}

	if want := "10.0.0.2 stands down on its next round: 10.0.0.1 stood down: " + omni; len(v.Notes) != 1 || v.Notes[0] != want {
		t.Fatalf("notes %q, want %q", v.Notes, want)
	}

	if r.Rows[0].StandDown != omni || r.Rows[1].Next != "stand-down" || r.Rows[1].StandDown != "" {
		t.Fatalf("rows %+v", r.Rows)
	}

	var out bytes.Buffer
	if err := statusreport.WriteText(&out, r); err != nil {
		t.Fatal(err)
	}

	if want := "Verdict: STOOD-DOWN: 10.0.0.1 stood down: SideroLink configured (siderolink.api=https://omni.example.com)"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}

	// Once Omni bootstrapped: a cluster like any, the stand-down a note.
	f1 := done(1, 0)
	f1.Status.StandDown = omni
	r = statusreport.Build([]statusreport.Facts{f1, done(2, 0), done(3, 0)}, settings)

	if v := r.Verdict; v.State != statusreport.Bootstrapped || v.Leader != nil || !strings.Contains(strings.Join(v.Notes, "\n"), "10.0.0.1 stood down: "+omni) {
		t.Fatalf("verdict %+v, want bootstrapped (by no daemon), noting 10.0.0.1's stand-down", v)
	}
}
