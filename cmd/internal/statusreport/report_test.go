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

	t.Run("leader rebooted without a status of its new boot", func(t *testing.T) {
		rebooted := node(1, nil)
		rebooted.BootID = "0000000a-0000-4000-8000-00000000000a"
		v := statusreport.Build([]statusreport.Facts{
			rebooted,
			node(2, status(election.PhaseLocked, 3, lockTo(1, 4), 0)),
		}, settings).Verdict

		if v.State != statusreport.Blocked || kinds(v) != "no-extension,leader-rebooted" || len(v.BreakLocks) != 0 {
			t.Fatalf("verdict %+v, want blocked by no-extension and leader-rebooted, no break lock", v)
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
		node(3, nil),
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
		"10.0.0.3  2025-06-01T11:03:00Z  2     -       -                    -       -       -          none  no-status",
		"Verdict: BLOCKED: 10.0.0.3 has no status file",
		"[vanished-leader] 10.0.0.2 is locked to 10.0.0.1/00000001#4, whose leader 10.0.0.1 is unreachable",
		"  10.0.0.2:  TALOS_AUTO_BOOTSTRAP_BREAK_LOCK=10.0.0.1/00000001-0000-4000-8000-000000000001/4\n      only if 10.0.0.1 never ran etcd",
		"10.0.0.2: wait: quorum missing: 2 of 3 control-plane nodes in view",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
