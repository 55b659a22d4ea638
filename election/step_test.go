package election

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func cand(ip, boot string, bootOffset int) Candidate {
	return Candidate{Incarnation: Incarnation{IP: netip.MustParseAddr(ip), BootID: boot}, BootTime: t0.Add(time.Duration(bootOffset) * time.Second)}
}

// namedA3 is a lock to A's intent 3 that knows A's node name "a0" (the
// boot that first wrote A's status file).
var namedA3 = &IntentRef{Leader: Incarnation{IP: cA.Incarnation.IP, BootID: "a1", Node: "a0"}, Number: 3}

var (
	cA = cand("10.0.0.1", "a1", 0) // oldest: ranks first
	cB = cand("10.0.0.2", "b1", 10)
	cC = cand("10.0.0.3", "c1", 20)
)

func noSigns() Signs { return Signs{EtcdRunning: No, DataDirNonEmpty: No, HasMembers: No} }

func statusOf(c Candidate, phase Phase, lock *IntentRef, intent, withdrawn uint64) *Status {
	return &Status{Version: StatusVersion, Incarnation: c.Incarnation, BootTime: c.BootTime, Phase: phase, Lock: lock, Intent: intent, WithdrawnThrough: withdrawn}
}

func peer(c Candidate, st *Status) PeerFacts {
	p := PeerFacts{Candidate: c, Status: st, Signs: noSigns()}
	if st == nil {
		p.StatusState = StatusMissing
	}

	return p
}

// publishQuorum gives every peer status the observer's QUORUM_NODES, as
// daemons configured alike publish it.
func publishQuorum(obs Observation) {
	for _, p := range obs.Peers {
		if p.Status != nil {
			p.Status.Quorum = obs.Quorum
		}
	}
}

func ref(c Candidate, n uint64) *IntentRef { return &IntentRef{Leader: c.Incarnation, Number: n} }

func obsFor(self Candidate, now time.Duration, peers ...PeerFacts) Observation {
	publishQuorum(Observation{Peers: peers, Quorum: 3})

	return Observation{
		Now: t0.Add(time.Hour + now), Self: self, SelfSigns: noSigns(), SelfTimeSynced: true,
		Peers: peers, Quorum: 3, ViewStableSince: t0.Add(time.Hour - time.Minute),
		PreBootstrapDelay: 20 * time.Second,
	}
}

// announcedA is A leading intent 3, announced a minute ago.
func announcedA() Status {
	st := NewStatus(cA)
	st.Phase, st.Lock, st.Intent, st.WithdrawnThrough, st.AnnouncedAt = PhaseAnnounced, ref(cA, 3), 3, 2, t0.Add(time.Hour-time.Minute)

	return st
}

// bootstrappingA is A bootstrapping its intent 3 in its current boot, with
// what is known of the request.
func bootstrappingA(send SendState, at time.Time) Status {
	st := announcedA()
	st.Phase = PhaseBootstrapping
	st.Send = Send{Bootstrapping: 3, BootstrapBootID: "a1", SendState: send, BootstrapAt: at}

	return st
}

func lockedB(to *IntentRef) Status {
	st := NewStatus(cB)
	st.Phase, st.Lock = PhaseLocked, to

	return st
}

func TestStepRules(t *testing.T) {
	lockedToA3 := func(c Candidate) PeerFacts { return peer(c, statusOf(c, PhaseLocked, ref(cA, 3), 0, 0)) }
	unknownSigns := Signs{EtcdRunning: No, DataDirNonEmpty: Unsure, HasMembers: No, Unknown: []string{"list /var/lib/etcd: deadline"}}

	tests := []struct {
		name      string
		st        Status
		obs       Observation
		kind      DecisionKind
		phase     Phase
		lock      *IntentRef
		withdrawn uint64
		reasonHas string
	}{
		{
			name: "0 bootstrapping in this boot without data resends", kind: BeginBootstrap, phase: PhaseBootstrapping, lock: ref(cA, 3),
			st: func() Status {
				return bootstrappingA(SendUnsent, time.Time{})
			}(),
			obs: obsFor(cA, 0), withdrawn: 2, reasonHas: "sending Bootstrap",
		},
		{
			name: "0 a bootstrap that may be under way is not resent before ResendAfter", kind: AwaitEtcd, phase: PhaseBootstrapping, lock: ref(cA, 3),
			st: func() Status {
				return bootstrappingA(SendLeaving, t0.Add(time.Hour-time.Minute))
			}(),
			obs: func() Observation {
				o := obsFor(cA, 0)
				o.ResendAfter = 5 * time.Minute
				return o
			}(), withdrawn: 2, reasonHas: "may be under way",
		},
		{
			name: "0 a bootstrap with no sign after ResendAfter is resent", kind: BeginBootstrap, phase: PhaseBootstrapping, lock: ref(cA, 3),
			st: func() Status {
				return bootstrappingA(SendMayHaveArrived, t0.Add(time.Hour-6*time.Minute))
			}(),
			obs: func() Observation {
				o := obsFor(cA, 0)
				o.ResendAfter = 5 * time.Minute
				return o
			}(), withdrawn: 2, reasonHas: "sending Bootstrap",
		},
		{
			name: "0 bootstrapping never withdraws even when outranked", kind: BeginBootstrap, phase: PhaseBootstrapping, lock: ref(cA, 3),
			st: func() Status {
				return bootstrappingA(SendUnsent, time.Time{})
			}(),
			obs: obsFor(cA, 0, peer(cand("10.0.0.0", "z", -100), statusOf(cand("10.0.0.0", "z", -100), PhaseAnnounced, ref(cand("10.0.0.0", "z", -100), 1), 1, 0))), withdrawn: 2,
		},
		{
			name: "0 bootstrapped awaits etcd", kind: AwaitEtcd, phase: PhaseBootstrapped, lock: ref(cA, 3), withdrawn: 2,
			st: func() Status {
				s := announcedA()
				s.Phase, s.Bootstrapping, s.BootstrapBootID = PhaseBootstrapped, 3, "a1"
				return s
			}(),
			obs: obsFor(cA, 0),
		},
		{
			name: "0 own etcd healthy is done", kind: Done, phase: PhaseDone, lock: ref(cA, 3), withdrawn: 2,
			st: func() Status {
				s := announcedA()
				s.Phase, s.Bootstrapping, s.BootstrapBootID = PhaseBootstrapped, 3, "a1"
				return s
			}(),
			obs: func() Observation { o := obsFor(cA, 0); o.SelfEtcdHealthy = true; return o }(),
		},
		{
			name: "1a lock released when leader withdrew, then locks to new intent", kind: Follow, phase: PhaseLocked, lock: ref(cA, 4),
			st:  lockedB(ref(cA, 3)),
			obs: obsFor(cB, 0, peer(cA, statusOf(cA, PhaseAnnounced, ref(cA, 4), 4, 3)), lockedToA3(cC)), reasonHas: "released lock",
		},
		{
			name: "1 lock is kept while the leader has not withdrawn", kind: Follow, phase: PhaseLocked, lock: ref(cA, 3),
			st:  lockedB(ref(cA, 3)),
			obs: obsFor(cB, 0, peer(cA, statusOf(cA, PhaseAnnounced, ref(cA, 3), 3, 2)), lockedToA3(cC)),
		},
		{
			name: "1 lock is kept while the leader is unreachable", kind: Follow, phase: PhaseLocked, lock: ref(cA, 3),
			st:  lockedB(ref(cA, 3)),
			obs: func() Observation { o := obsFor(cB, 0, lockedToA3(cC)); o.Quorum = 2; return o }(),
		},
		{
			name: "1b reboot release: the new boot's status shows /var mounted and the data dir is empty", kind: Lead, phase: PhaseAnnounced, lock: ref(cB, 1),
			st: lockedB(ref(cA, 3)),
			obs: func() Observation {
				a2 := cand("10.0.0.1", "a2", 30)
				st := statusOf(a2, PhaseBootstrapping, ref(cA, 3), 3, 2)
				st.Bootstrapping, st.BootstrapBootID = 3, "a1" // its daemon has not judged the dead request yet
				st.PastBoots = []string{"a1"}

				return obsFor(cB, 0, peer(a2, st), lockedToA3(cC))
			}(), reasonHas: "rebooted",
		},
		{
			// A cloned /var carries A's node name to another machine: its
			// empty data directory is not A's, as its past boots show.
			name: "1b no reboot release by a machine that only shares the leader's name", kind: Follow, phase: PhaseLocked, lock: namedA3,
			st: lockedB(namedA3),
			obs: func() Observation {
				clone := cand("10.0.0.9", "z1", 30)
				st := statusOf(clone, PhaseIdle, nil, 3, 3)
				st.Incarnation.Node, st.PastBoots = "a0", []string{"template"}

				return obsFor(cB, 0, peer(clone, st), lockedToA3(cC))
			}(), reasonHas: "locked to 10.0.0.1/a1#3",
		},
		{
			// The same, when that machine's past boots name the locked one:
			// A rebooted (to another address, too).
			name: "1b reboot release by the leader's later boot, which lists the locked boot", kind: Lead, phase: PhaseAnnounced, lock: ref(cB, 1),
			st: lockedB(namedA3),
			obs: func() Observation {
				a2 := cand("10.0.0.9", "a2", 30)
				st := statusOf(a2, PhaseIdle, nil, 3, 0)
				st.Incarnation.Node, st.PastBoots = "a0", []string{"a0", "a1"}

				return obsFor(cB, 0, peer(a2, st), lockedToA3(cC))
			}(), reasonHas: "rebooted",
		},
		{
			// Before EPHEMERAL is mounted apid answers with no status
			// file and no /var/lib/etcd, even on a bootstrapped node.
			name: "1b no reboot release in the leader's pre-mount window", kind: Follow, phase: PhaseLocked, lock: ref(cA, 3),
			st: lockedB(ref(cA, 3)),
			obs: func() Observation {
				premount := PeerFacts{Candidate: cand("10.0.0.1", "a2", 30), StatusState: StatusMissing, Signs: noSigns()}
				premount.Signs.DataDirUnproven = true

				return obsFor(cB, 0, premount, lockedToA3(cC))
			}(), reasonHas: "locked to 10.0.0.1/a1#3",
		},
		{
			name: "1b no reboot release when the data dir is unknown", kind: Follow, phase: PhaseLocked, lock: ref(cA, 3),
			st:  lockedB(ref(cA, 3)),
			obs: obsFor(cB, 0, PeerFacts{Candidate: cand("10.0.0.1", "a2", 30), StatusState: StatusStale, Signs: unknownSigns}, lockedToA3(cC)),
		},
		{
			name: "1c break-lock releases exactly the named lock", kind: Lead, phase: PhaseAnnounced, lock: ref(cB, 1),
			st: lockedB(ref(cA, 3)),
			obs: func() Observation {
				o := obsFor(cB, 0, lockedToA3(cC))
				o.Quorum = 2
				o.BreakLock = ref(cA, 3)
				return o
			}(), reasonHas: "OPERATOR BREAK-LOCK",
		},
		{
			name: "1c break-lock naming another intent does nothing", kind: Follow, phase: PhaseLocked, lock: ref(cA, 3),
			st: lockedB(ref(cA, 3)),
			obs: func() Observation {
				o := obsFor(cB, 0, lockedToA3(cC))
				o.Quorum = 2
				o.BreakLock = ref(cA, 2)
				return o
			}(),
		},
		{
			name: "2 own etcd data: await join, withdraw own intent", kind: Joined, phase: PhaseIdle, lock: nil, withdrawn: 3,
			st:  announcedA(),
			obs: func() Observation { o := obsFor(cA, 0); o.SelfSigns.DataDirNonEmpty = Yes; return o }(),
		},
		{
			name: "2 peer bootstrapping status: withdraw own intent, lock to the bootstrapping one", kind: Follow, phase: PhaseLocked, lock: ref(cB, 1), withdrawn: 3,
			st: announcedA(),
			obs: func() Observation {
				st := statusOf(cB, PhaseBootstrapping, ref(cB, 1), 1, 0)
				st.Bootstrapping, st.BootstrapBootID = 1, "b1"

				return obsFor(cA, 0, peer(cB, st), lockedToA3(cC))
			}(), reasonHas: "bootstrapping intent 1",
		},
		{
			name: "2 peer etcd running: follow", kind: Follow, phase: PhaseIdle,
			st: NewStatus(cA),
			obs: func() Observation {
				p := lockedToA3(cB)
				p.Signs.EtcdRunning = Yes
				return obsFor(cA, 0, p, lockedToA3(cC))
			}(),
		},
		{
			name: "3 time not synced: wait", kind: Wait, phase: PhaseIdle,
			st: NewStatus(cA),
			obs: func() Observation {
				o := obsFor(cA, 0, peer(cB, nil), peer(cC, nil))
				o.SelfTimeSynced = false
				return o
			}(), reasonHas: "to announce", // unsynced, it ranks after the others
		},
		{
			name: "3 time not synced: still locks to a live intent (an unsynced node locks, never announces)", kind: Follow, phase: PhaseLocked, lock: ref(cB, 2),
			st: NewStatus(cA),
			obs: func() Observation {
				o := obsFor(cA, 0, peer(cB, statusOf(cB, PhaseAnnounced, ref(cB, 2), 2, 1)), peer(cC, nil))
				o.SelfTimeSynced = false
				return o
			}(), reasonHas: "locked to 10.0.0.2",
		},
		{
			name: "3 time not synced and alone at the top: never announces", kind: Wait, phase: PhaseIdle,
			st: NewStatus(cA),
			obs: func() Observation {
				o := obsFor(cA, 0)
				o.Quorum, o.SelfTimeSynced = 1, false
				return o
			}(), reasonHas: "waiting for time sync before announcing",
		},
		{
			name: "3 quorum missing: wait", kind: Wait, phase: PhaseIdle,
			st: NewStatus(cA), obs: obsFor(cA, 0, peer(cB, nil)), reasonHas: "quorum missing",
		},
		{
			name: "5 first-ranked announces intent+1", kind: Lead, phase: PhaseAnnounced, lock: ref(cA, 8), withdrawn: 7,
			st:  func() Status { s := NewStatus(cA); s.Intent, s.WithdrawnThrough = 7, 7; return s }(),
			obs: obsFor(cA, 0, peer(cB, nil), peer(cC, nil)),
		},
		{
			name: "5 follower locks to highest-ranked live intent", kind: Follow, phase: PhaseLocked, lock: ref(cA, 3),
			st:  NewStatus(cC),
			obs: obsFor(cC, 0, peer(cA, statusOf(cA, PhaseAnnounced, ref(cA, 3), 3, 2)), peer(cB, statusOf(cB, PhaseAnnounced, ref(cB, 5), 5, 4))),
		},
		{
			name: "5 withdrawn intent is not live", kind: Wait, phase: PhaseIdle,
			st:  NewStatus(cC),
			obs: obsFor(cC, 0, peer(cA, statusOf(cA, PhaseAnnounced, ref(cA, 3), 3, 3)), peer(cB, nil)), reasonHas: "to announce",
		},
		{
			name: "6 all locked and stable: begin bootstrap", kind: BeginBootstrap, phase: PhaseBootstrapping, lock: ref(cA, 3), withdrawn: 2,
			st: announcedA(), obs: obsFor(cA, 0, lockedToA3(cB), lockedToA3(cC)),
		},
		{
			name: "6 lock-blocked: peer locked elsewhere", kind: Lead, phase: PhaseAnnounced, lock: ref(cA, 3), withdrawn: 2,
			st: announcedA(), obs: obsFor(cA, 0, lockedToA3(cB), peer(cC, statusOf(cC, PhaseLocked, ref(cB, 9), 0, 0))), reasonHas: "10.0.0.3 is locked to 10.0.0.2",
		},
		{
			name: "6 missing status file blocks and says why", kind: Lead, phase: PhaseAnnounced, lock: ref(cA, 3), withdrawn: 2,
			st: announcedA(), obs: obsFor(cA, 0, lockedToA3(cB), peer(cC, nil)), reasonHas: "every control-plane node must run the extension",
		},
		{
			name: "6 unknown peer signs block", kind: Lead, phase: PhaseAnnounced, lock: ref(cA, 3), withdrawn: 2,
			st: announcedA(),
			obs: func() Observation {
				p := lockedToA3(cC)
				p.Signs = unknownSigns
				return obsFor(cA, 0, lockedToA3(cB), p)
			}(), reasonHas: "cluster check unknown",
		},
		{
			name: "6 unknown own signs block", kind: Lead, phase: PhaseAnnounced, lock: ref(cA, 3), withdrawn: 2,
			st: announcedA(),
			obs: func() Observation {
				o := obsFor(cA, 0, lockedToA3(cB), lockedToA3(cC))
				o.SelfSigns = unknownSigns
				return o
			}(),
		},
		{
			name: "6 view not stable long enough", kind: Lead, phase: PhaseAnnounced, lock: ref(cA, 3), withdrawn: 2,
			st: announcedA(),
			obs: func() Observation {
				o := obsFor(cA, 0, lockedToA3(cB), lockedToA3(cC))
				o.ViewStableSince = o.Now.Add(-5 * time.Second)
				return o
			}(), reasonHas: "view stable",
		},
		{
			name: "6 announced too recently: the delay counts from the announcement", kind: Lead, phase: PhaseAnnounced, lock: ref(cA, 3), withdrawn: 2,
			st:  func() Status { s := announcedA(); s.AnnouncedAt = t0.Add(time.Hour - 5*time.Second); return s }(),
			obs: obsFor(cA, 0, lockedToA3(cB), lockedToA3(cC)), reasonHas: "view stable for 5s of 20s",
		},
		{
			name: "6 withdrawal when a higher-ranked node appears, then lock to its intent", kind: Follow, phase: PhaseLocked, withdrawn: 3,
			lock: ref(cand("10.0.0.9", "old", -50), 1),
			st:   announcedA(),
			obs: obsFor(cA, 0, lockedToA3(cB), lockedToA3(cC), peer(cand("10.0.0.9", "old", -50),
				statusOf(cand("10.0.0.9", "old", -50), PhaseAnnounced, ref(cand("10.0.0.9", "old", -50), 1), 1, 0))), reasonHas: "withdrew intent 3",
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			publishQuorum(tc.obs)
			got, d := Step(tc.st, tc.obs)
			if d.Kind != tc.kind {
				t.Fatalf("decision %s, want %s (reason %q)", d.Kind, tc.kind, d.Reason)
			}

			if got.Phase != tc.phase {
				t.Errorf("phase %s, want %s (reason %q)", got.Phase, tc.phase, d.Reason)
			}

			if (got.Lock == nil) != (tc.lock == nil) || (got.Lock != nil && !got.Lock.Is(*tc.lock)) {
				t.Errorf("lock %v, want %v", got.Lock, tc.lock)
			}

			if got.WithdrawnThrough != tc.withdrawn {
				t.Errorf("withdrawnThrough %d, want %d", got.WithdrawnThrough, tc.withdrawn)
			}

			if !strings.Contains(d.Reason, tc.reasonHas) || got.Reason != d.Reason {
				t.Errorf("reason %q (status %q), want it to contain %q", d.Reason, got.Reason, tc.reasonHas)
			}

			if err := got.Validate(); err != nil {
				t.Errorf("Step returned an invalid status: %v", err)
			}
		})
	}
}

func TestBeginBootstrapRecordsIntentBeforeRPC(t *testing.T) {
	p := func(c Candidate) PeerFacts { return peer(c, statusOf(c, PhaseLocked, ref(cA, 3), 0, 0)) }

	got, d := Step(announcedA(), obsFor(cA, 0, p(cB), p(cC)))
	if d.Kind != BeginBootstrap || got.Bootstrapping != 3 || got.BootstrapBootID != "a1" || got.SendState != SendUnsent {
		t.Fatalf("got %s with bootstrapping=%d boot=%q send=%s", d.Kind, got.Bootstrapping, got.BootstrapBootID, got.SendState)
	}

	obs := obsFor(cA, time.Second, p(cB), p(cC))
	if err := ConfirmLocks(got, obs); err != nil {
		t.Fatalf("ConfirmLocks: %v", err)
	}

	// A lock that moved (operator break-lock on a follower) must stop the send.
	obs.Peers[1].Status.Lock = ref(cB, 1)
	if err := ConfirmLocks(got, obs); err == nil || !strings.Contains(err.Error(), "only 2 of quorum 3") {
		t.Fatalf("ConfirmLocks with a moved lock = %v, want quorum error", err)
	}

	if err := ConfirmLocks(announcedA(), obsFor(cA, 0, p(cB), p(cC))); err == nil {
		t.Fatal("ConfirmLocks accepted a status that is not bootstrapping")
	}
}

func TestResume(t *testing.T) {
	announced := announcedA()

	same := Resume(announced, cand("10.0.0.1", "a1", 3)) // clock step: same boot ID
	if same.Phase != PhaseAnnounced || *same.Lock != *ref(cA, 3) || !same.BootTime.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("same boot: %+v", same)
	}

	rebooted := Resume(announced, cand("10.0.0.1", "a2", 100))
	if rebooted.Phase != PhaseIdle || rebooted.Lock != nil || rebooted.WithdrawnThrough != 3 || rebooted.Intent != 3 || rebooted.Incarnation.BootID != "a2" {
		t.Fatalf("rebooted leader: %+v", rebooted)
	}

	follower := Resume(lockedB(ref(cA, 3)), cand("10.0.0.2", "b2", 100))
	if follower.Phase != PhaseLocked || follower.Lock == nil || *follower.Lock != *ref(cA, 3) {
		t.Fatalf("rebooted follower lost its lock: %+v", follower)
	}

	boot := bootstrappingA(SendMayHaveArrived, t0)
	rb := Resume(boot, cand("10.0.0.1", "a2", 100))

	if rb.Phase != PhaseBootstrapping {
		t.Fatalf("rebooted bootstrapper: phase %s", rb.Phase)
	}

	// Empty data dir in the new boot: the request died; withdrawn, elect again.
	got, d := Step(rb, obsFor(cand("10.0.0.1", "a2", 100), 0))
	if got.WithdrawnThrough != 3 || got.Phase == PhaseBootstrapping || d.Kind == BeginBootstrap {
		t.Fatalf("dead bootstrap not withdrawn: %s %+v", d.Kind, got)
	}

	// Data present: it took effect; wait for etcd.
	o := obsFor(cand("10.0.0.1", "a2", 100), 0)
	o.SelfSigns.DataDirNonEmpty = Yes

	if got, d := Step(rb, o); d.Kind != AwaitEtcd || got.WithdrawnThrough != 2 {
		t.Fatalf("bootstrap with data: %s %+v", d.Kind, got)
	}

	// Unknown data dir: wait, neither resend nor withdraw.
	o.SelfSigns = Signs{DataDirNonEmpty: Unsure, Unknown: []string{"x"}}
	if got, d := Step(rb, o); d.Kind != Wait || got.Phase != PhaseBootstrapping {
		t.Fatalf("bootstrap with unknown data: %s %+v", d.Kind, got)
	}
}

// This daemon outlives etcd and the unmounts in its own node's reboot or
// upgrade (Talos stops extension services last): its etcd then reads
// Finished and its data directory absent. A bootstrap of an earlier boot is
// withdrawn only beside an etcd that has not run in this boot; else the
// withdrawal would be published for an intent that founded the cluster.
func TestEarlierBootBootstrapIsKeptWhileOwnEtcdStopped(t *testing.T) {
	rb := Resume(bootstrappingA(SendMayHaveArrived, t0), cand("10.0.0.1", "a2", 100))
	o := obsFor(cand("10.0.0.1", "a2", 100), 0)

	for _, tc := range []struct {
		name     string
		etcd     Tri
		unproven bool
		withdraw bool
	}{
		{name: "etcd waiting to join, data empty", etcd: No, withdraw: true},
		{name: "etcd finished in a reboot, /var unmounted", etcd: Unsure, unproven: true},
		{name: "etcd finished in a reboot, bare ETCD mount point listed", etcd: Unsure},
		// The daemon started before v1.14's ETCD volume was mounted: no
		// etcd service yet, the bare mount point lists empty.
		{name: "no etcd service yet, ETCD volume not mounted", etcd: No, unproven: true},
	} {
		o.SelfSigns = Signs{EtcdRunning: tc.etcd, DataDirNonEmpty: No, DataDirUnproven: tc.unproven}
		if tc.etcd != No {
			o.SelfSigns.Unknown = []string{"etcd service finished (Service finished successfully)"}
		}

		got, d := Step(rb, o)
		if withdrawn := got.WithdrawnThrough >= 3; withdrawn != tc.withdraw {
			t.Errorf("%s: %s, withdrawn through %d; want a withdrawal %v", tc.name, d.Kind, got.WithdrawnThrough, tc.withdraw)
		}
	}
}

func TestRank(t *testing.T) {
	in := []Candidate{
		cand("10.0.0.10", "x", 5),
		cand("10.0.0.9", "y", 5),
		cand("10.0.0.100", "z", 1),
		cand("10.0.0.2", "w", 5),
	}

	got := Rank(in)
	want := []string{"10.0.0.100", "10.0.0.2", "10.0.0.9", "10.0.0.10"}

	for i, c := range got {
		if c.IP.String() != want[i] {
			t.Fatalf("rank %d = %s, want %s (order %v)", i, c.IP, want[i], got)
		}
	}

	if in[0].IP.String() != "10.0.0.10" {
		t.Fatal("Rank modified its argument")
	}
}

func TestViewTracker(t *testing.T) {
	var v ViewTracker

	view := []Candidate{cA, cB}
	if s := v.Observe(t0, view); !s.Equal(t0) {
		t.Fatalf("first observe = %v", s)
	}

	if s := v.Observe(t0.Add(time.Minute), []Candidate{cB, cA}); !s.Equal(t0) {
		t.Fatalf("same set, other order reset stability: %v", s)
	}

	stepped := cB
	stepped.BootTime = stepped.BootTime.Add(time.Second)

	if s := v.Observe(t0.Add(2*time.Minute), []Candidate{cA, stepped}); !s.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("clock step did not reset stability: %v", s)
	}

	rebooted := cB
	rebooted.BootID = "b2"

	if s := v.Observe(t0.Add(3*time.Minute), []Candidate{cA, rebooted}); !s.Equal(t0.Add(3 * time.Minute)) {
		t.Fatalf("reboot did not reset stability: %v", s)
	}
}

// A cluster that appears between the decision and the send (an operator's
// bootstrap on a node that still holds our lock) stops the send, and the
// unsent bootstrap is withdrawn; once sent, it never is.
func TestClusterAppearingBeforeTheSend(t *testing.T) {
	p := func(c Candidate) PeerFacts { return peer(c, statusOf(c, PhaseLocked, ref(cA, 3), 0, 0)) }

	decided, d := Step(announcedA(), obsFor(cA, 0, p(cB), p(cC)))
	if d.Kind != BeginBootstrap || decided.SendState != SendUnsent || !decided.BootstrapAt.IsZero() {
		t.Fatalf("got %s, send %s at %v: the decision must not count as a send", d.Kind, decided.SendState, decided.BootstrapAt)
	}

	obs := obsFor(cA, time.Second, p(cB), p(cC))
	obs.Peers[0].Signs = Signs{EtcdRunning: Yes, DataDirNonEmpty: Yes, HasMembers: Yes}

	if err := ConfirmLocks(decided, obs); err == nil || !strings.Contains(err.Error(), "already has etcd") {
		t.Fatalf("ConfirmLocks with a peer running etcd = %v, want a refusal", err)
	}

	got, d := Step(decided, obs)
	if d.Kind != Follow || got.Phase != PhaseIdle || got.Lock != nil || got.WithdrawnThrough < 3 || got.Bootstrapping != 0 {
		t.Fatalf("unsent bootstrap with a cluster elsewhere: %s, phase %s, lock %v, withdrawnThrough %d", d.Kind, got.Phase, got.Lock, got.WithdrawnThrough)
	}

	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}

	sent := MarkSending(decided, obs.Now)

	got, d = Step(sent, obs)
	if d.Kind == Follow || got.Phase != PhaseBootstrapping || got.WithdrawnThrough >= 3 {
		t.Fatalf("a sent bootstrap was withdrawn: %s, phase %s", d.Kind, got.Phase)
	}
}

// "Not now" answers mean machined did nothing: nothing is under way, so the
// next round may send at once; unknown answers start the resend wait.
func TestAfterBootstrapBootstrapAt(t *testing.T) {
	st := MarkSending(bootstrappingA(SendUnsent, time.Time{}), t0)

	if got, _ := AfterBootstrap(st, RetryLater, t0.Add(time.Second)); !got.BootstrapAt.IsZero() || !got.Withdrawable() {
		t.Fatalf("RetryLater left send %s at %v", got.SendState, got.BootstrapAt)
	}

	if got, _ := AfterBootstrap(st, Unknown, t0.Add(time.Second)); !got.BootstrapAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("Unknown set BootstrapAt %v", got.BootstrapAt)
	}
}

// A send whose answer was lost may still be under way when a resend is
// refused "not now": the refusal speaks for the resend only. The first
// request keeps its "may have happened", so a sign of a cluster elsewhere
// (real, or a peer's shutdown misread) never makes the leader withdraw an
// intent machined may still act on (a review's double
// bootstrap: withdrawn, the followers released, a second leader, then the
// first request's etcd came up).
func TestRefusedResendKeepsAnUnknownSendAlive(t *testing.T) {
	p := func(c Candidate) PeerFacts { return peer(c, statusOf(c, PhaseLocked, ref(cA, 3), 0, 0)) }

	decided, _ := Step(announcedA(), obsFor(cA, 0, p(cB), p(cC)))
	unknown, _ := AfterBootstrap(MarkSending(decided, t0), Unknown, t0)

	resend := MarkSending(unknown, t0.Add(6*time.Minute))
	refused, _ := AfterBootstrap(resend, RetryLater, t0.Add(6*time.Minute))

	if refused.BootstrapAt.IsZero() || refused.SendState != SendMayHaveArrived {
		t.Fatalf("refused resend: send %s at %v; the first request may still be under way", refused.SendState, refused.BootstrapAt)
	}

	obs := obsFor(cA, 6*time.Minute+time.Second, p(cB), p(cC))
	obs.Peers[0].Signs = Signs{EtcdRunning: Yes, DataDirNonEmpty: Yes, HasMembers: Yes}

	got, d := Step(refused, obs)
	if d.Kind == Follow || got.WithdrawnThrough >= 3 || got.Lock == nil {
		t.Fatalf("withdrew a bootstrap that may be under way: %s, withdrawnThrough %d, lock %v", d.Kind, got.WithdrawnThrough, got.Lock)
	}

	// What is known of the request decides, not the time of the last
	// send: without BootstrapAt it still may have reached machined.
	old := refused.Clone()
	old.BootstrapAt = time.Time{}

	if got, d := Step(old, obs); d.Kind == Follow || got.WithdrawnThrough >= 3 {
		t.Fatalf("withdrew a sent bootstrap without BootstrapAt: %s", d.Kind)
	}
}

// ConfigMismatchBlocks: a peer with another QUORUM_NODES stops leading and locking, on both
// sides, and the mismatch is remembered after the peer drops out of view,
// until that machine publishes the same value.
func TestQuorumMismatchIsRememberedUntilTheConfigAgrees(t *testing.T) {
	misconfigured := peer(cB, statusOf(cB, PhaseIdle, nil, 0, 0))

	obs := obsFor(cA, 0, misconfigured, peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0)))
	obs.Quorum = 2
	publishQuorum(obs)
	misconfigured.Status.Quorum = 1

	st, d := Step(NewStatus(cA), obs)
	if d.Kind != Wait || !d.UntilReconfigured || st.Lock != nil || !strings.Contains(d.Reason, "quorum mismatch: 10.0.0.2 has 1, this node 2") {
		t.Fatalf("with a mismatch in view: %s %q, lock %v", d.Kind, d.Reason, st.Lock)
	}

	// Seen again unchanged, the mismatch keeps the time it was first seen:
	// the status stays the same, so a waiting node does not rewrite it.
	first := *st.QuorumMismatch

	again := obsFor(cA, 30*time.Second, misconfigured, peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0)))
	again.Quorum = 2
	publishQuorum(again)
	misconfigured.Status.Quorum = 1

	st, d = Step(st, again)
	if d.Kind != Wait || *st.QuorumMismatch != first || !strings.Contains(d.Reason, "seen since "+first.At.UTC().Format(time.RFC3339)) {
		t.Fatalf("the same mismatch seen again: %s %q, mismatch %+v (first %+v)", d.Kind, d.Reason, st.QuorumMismatch, first)
	}

	// The misconfigured node drops out of view: A and C alone would make a
	// quorum of 2, but the mismatch is remembered.
	alone := obsFor(cA, time.Minute, peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0)))
	alone.Quorum = 2
	publishQuorum(alone)

	st, d = Step(st, alone)
	if d.Kind != Wait || st.Lock != nil || !strings.Contains(d.Reason, "quorum mismatch") {
		t.Fatalf("after the peer left the view: %s %q, lock %v", d.Kind, d.Reason, st.Lock)
	}

	// Fixed: B publishes 2 again; A announces.
	fixed := obsFor(cA, 2*time.Minute, peer(cB, statusOf(cB, PhaseIdle, nil, 0, 0)), peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0)))
	fixed.Quorum = 2
	publishQuorum(fixed)

	st, d = Step(st, fixed)
	if d.Kind != Lead || st.QuorumMismatch != nil {
		t.Fatalf("after the configuration agrees: %s %q, mismatch %v", d.Kind, d.Reason, st.QuorumMismatch)
	}
}

// With two misconfigured peers in view the remembered mismatch stays the
// one first seen: a record of "the last one seen" changed every round, and
// a node waiting on it rewrote its status file every round.
func TestTwoMismatchedPeersLeaveTheStatusUnchanged(t *testing.T) {
	round := func(at time.Duration) Observation {
		obs := obsFor(cA, at, peer(cB, statusOf(cB, PhaseIdle, nil, 0, 0)), peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0)))
		obs.Quorum = 3
		publishQuorum(obs)
		obs.Peers[0].Status.Quorum = 1
		obs.Peers[1].Status.Quorum = 2

		return obs
	}

	st, _ := Step(NewStatus(cA), round(0))
	if st.QuorumMismatch == nil {
		t.Fatal("no mismatch remembered with two misconfigured peers")
	}

	first := *st.QuorumMismatch

	for i := 1; i <= 3; i++ {
		var d Decision

		st, d = Step(st, round(time.Duration(i)*10*time.Second))
		if *st.QuorumMismatch != first || !strings.Contains(d.Reason, "seen since "+first.At.UTC().Format(time.RFC3339)) {
			t.Fatalf("round %d: mismatch %+v, first %+v; reason %q", i, *st.QuorumMismatch, first, d.Reason)
		}
	}

	// The remembered machine agrees now: the other one is remembered.
	fixed := round(time.Minute)
	for i := range fixed.Peers {
		if sameMachine(fixed.Peers[i].Incarnation, first.Node) {
			fixed.Peers[i].Status.Quorum = 3
		}
	}

	st, _ = Step(st, fixed)
	if st.QuorumMismatch == nil || sameMachine(st.QuorumMismatch.Node, first.Node) {
		t.Fatalf("after %s agrees: mismatch %+v", first.Node.IP, st.QuorumMismatch)
	}
}

// This node's operator changes its QUORUM_NODES to the value of the
// machine it remembers (now out of view), while a peer in view still
// differs: that peer blocks leading and locking from the same round, as
// the rule says; forgetting the remembered one must not leave a round
// with no mismatch at all.
func TestOwnFixLeavesAMismatchInViewRemembered(t *testing.T) {
	cD := cand("10.0.0.4", "d1", 30)

	for _, tc := range []struct {
		name string
		self Candidate
		lead PeerFacts
	}{
		{name: "would lead", self: cA, lead: peer(cB, statusOf(cB, PhaseIdle, nil, 0, 0))},
		{name: "would lock", self: cB, lead: peer(cA, statusOf(cA, PhaseAnnounced, ref(cA, 1), 1, 0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := NewStatus(tc.self)
			st.QuorumMismatch = &Mismatch{Node: cD.Incarnation, Quorum: 2, LeaderOrder: OrderBootTime, At: t0}

			obs := obsFor(tc.self, 0, tc.lead, peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0)))
			obs.Quorum = 2
			publishQuorum(obs)
			obs.Peers[1].Status.Quorum = 3 // C still differs

			next, d := Step(st, obs)
			if d.Kind == Lead || next.Lock != nil || next.QuorumMismatch == nil || !sameMachine(next.QuorumMismatch.Node, cC.Incarnation) {
				t.Fatalf("%s, lock %v, mismatch %+v; want C's mismatch remembered and no lead or lock", d.Kind, next.Lock, next.QuorumMismatch)
			}
		})
	}
}

// This node answering at another address (a VIP) is not a peer, and
// is not counted as a lock.
func TestSelfAtAnotherAddressIsNoPeer(t *testing.T) {
	vip := cand("10.0.0.100", "a1", 0) // same boot id as cA
	st := bootstrappingA(SendUnsent, time.Time{})

	self := peer(vip, func() *Status { s := st; return &s }())
	obs := obsFor(cA, 0, self)
	obs.Quorum = 2

	if err := ConfirmLocks(st, obs); err == nil || !strings.Contains(err.Error(), "only 1 of quorum 2") {
		t.Fatalf("ConfirmLocks counted this node twice: %v", err)
	}
}

// SeenClusterEndsElection: a cluster seen on a peer is remembered: when that peer drops out of
// view, this node still never announces.
func TestSeenClusterIsRemembered(t *testing.T) {
	withData := peer(cB, statusOf(cB, PhaseIdle, nil, 0, 0))
	withData.Signs.DataDirNonEmpty = Yes

	st, d := Step(NewStatus(cA), obsFor(cA, 0, withData, peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0))))
	if d.Kind != Follow || st.Cluster == nil {
		t.Fatalf("with data on a peer: %s %q, cluster %v", d.Kind, d.Reason, st.Cluster)
	}

	alone := obsFor(cA, time.Minute, peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0)))
	alone.Quorum = 2
	publishQuorum(alone)

	st, d = Step(st, alone)
	if d.Kind != Follow || st.Lock != nil || st.Phase == PhaseAnnounced || !strings.Contains(d.Reason, "a cluster exists (10.0.0.2") {
		t.Fatalf("after the peer left the view: %s %q, phase %s", d.Kind, d.Reason, st.Phase)
	}
}

// LEADER_ORDER=address ranks as the Cluster API provider sorts InternalIPs
// (sort.Strings), whatever the boot times and time sync.
func TestRankByAddress(t *testing.T) {
	nine, ten, two := cand("10.0.0.9", "x9", -100), cand("10.0.0.10", "x10", 50), cand("10.0.0.2", "x2", 0)
	ten.Unsynced = true

	got := RankBy(OrderAddress, []Candidate{nine, two, ten})
	if got[0].IP != ten.IP || got[1].IP != two.IP || got[2].IP != nine.IP {
		t.Fatalf("address order: %v %v %v", got[0].IP, got[1].IP, got[2].IP)
	}

	if got := RankBy(OrderBootTime, []Candidate{ten, nine}); got[0].IP != nine.IP {
		t.Fatalf("boot-time order put %v first", got[0].IP)
	}

	if _, err := ParseLeaderOrder("oldest"); err == nil {
		t.Fatal("ParseLeaderOrder accepted an unknown order")
	}
}

// A peer with another LEADER_ORDER blocks like a QUORUM_NODES mismatch; an
// older status without one means boot-time.
func TestLeaderOrderMismatch(t *testing.T) {
	other := peer(cB, statusOf(cB, PhaseIdle, nil, 0, 0))
	obs := obsFor(cA, 0, other, peer(cC, statusOf(cC, PhaseIdle, nil, 0, 0)))
	other.Status.LeaderOrder = OrderAddress

	st, d := Step(NewStatus(cA), obs)
	if d.Kind != Wait || st.Lock != nil || !strings.Contains(d.Reason, "leader order mismatch: 10.0.0.2 has address, this node boot-time") {
		t.Fatalf("%s %q", d.Kind, d.Reason)
	}

	other.Status.LeaderOrder = ""

	if _, d = Step(st, obs); d.Kind != Lead {
		t.Fatalf("an unset order is boot-time: %s %q", d.Kind, d.Reason)
	}
}

// A later boot lists the earlier ones, so that peers can tell a reboot of
// this machine from a copy of its /var; a daemon restart in the same boot
// adds nothing, and the list stays bounded.
func TestResumeRecordsPastBoots(t *testing.T) {
	st := NewStatus(cA)

	for i := range MaxPastBoots + 5 {
		next := cA
		next.Incarnation.BootID = fmt.Sprintf("a%d", i+2)
		st = Resume(Resume(st, next), next)
	}

	if len(st.PastBoots) != MaxPastBoots || st.PastBoots[0] != "a6" || st.PastBoots[MaxPastBoots-1] != fmt.Sprintf("a%d", MaxPastBoots+5) {
		t.Fatalf("past boots %v", st.PastBoots)
	}

	if st.Incarnation.Node != "a1" {
		t.Fatalf("node name %q, want the first boot's", st.Incarnation.Node)
	}
}

// A send whose answer was never recorded (a crash between the RPC and the
// persist, or a full /var) leaves only its mark. The resend then finds the
// mark: machined may have accepted the first request, so a resend refused
// "not now" must not turn the bootstrap back into an unsent one that a
// stale sign of a cluster could withdraw.
func TestUnansweredSendSurvivesARefusedResend(t *testing.T) {
	p := func(c Candidate) PeerFacts { return peer(c, statusOf(c, PhaseLocked, ref(cA, 3), 0, 0)) }

	decided, _ := Step(announcedA(), obsFor(cA, 0, p(cB), p(cC)))
	marked := MarkSending(decided, t0) // the answer to this send is lost with the process

	if marked.SendState != SendLeaving {
		t.Fatalf("a first mark reads %s, want leaving: a refusal of it may still withdraw", marked.SendState)
	}

	resend := MarkSending(marked, t0.Add(6*time.Minute))
	if resend.SendState != SendMayHaveArrived {
		t.Fatalf("the resend reads %s: it forgot that the first request may have reached machined", resend.SendState)
	}

	refused, _ := AfterBootstrap(resend, RetryLater, t0.Add(6*time.Minute))
	if refused.BootstrapAt.IsZero() || refused.Withdrawable() {
		t.Fatalf("refused resend reads as never sent: send %s at %v", refused.SendState, refused.BootstrapAt)
	}

	obs := obsFor(cA, 6*time.Minute+time.Second, p(cB), p(cC))
	obs.Peers[0].Signs = Signs{EtcdRunning: Yes, DataDirNonEmpty: Yes, HasMembers: Yes}

	if got, d := Step(refused, obs); d.Kind == Follow || got.WithdrawnThrough >= 3 || got.Phase != PhaseBootstrapping {
		t.Fatalf("withdrew a bootstrap that may be under way: %s, phase %s, withdrawnThrough %d", d.Kind, got.Phase, got.WithdrawnThrough)
	}
}

// A peer's bootstrapping or bootstrapped phase kept from an earlier boot
// (its status is rewritten by the new boot before OwnBootstrapNeverReelects judges it) is no
// sign of a cluster: that request died with its boot unless data shows.
// Only a phase of the peer's current boot, or its etcd seen now, counts.
func TestPhaseOfAnEarlierBootIsNoCluster(t *testing.T) {
	stale := statusOf(cB, PhaseBootstrapped, ref(cB, 1), 1, 0)
	stale.Send = Send{Bootstrapping: 1, BootstrapBootID: "b0", SendState: SendAnswered} // sent by B's boot b0; B is now b1

	peers := []PeerFacts{peer(cB, stale), peer(cC, statusOf(cC, PhaseLocked, ref(cA, 3), 0, 0))}
	if p, why := clusterSign(peers); p != nil {
		t.Fatalf("a phase of an earlier boot counted as a cluster: %s", why)
	}

	stale.BootstrapBootID = "b1"
	if p, _ := clusterSign(peers); p == nil {
		t.Fatal("a phase of the peer's current boot must count")
	}

	stale.BootstrapBootID = "b0"
	peers[0].Signs.DataDirNonEmpty = Yes

	if p, _ := clusterSign(peers); p == nil {
		t.Fatal("data seen now must count whatever boot wrote the phase")
	}
}

// A follower that was off while its leader rebooted many times (more than
// the 32 boots the list once kept) still finds the leader by its past
// boots, and releases its lock when the leader withdrew the intent: with
// the boot dropped from the list, only BREAK_LOCK released it, and the
// leader's next intent waited for that lock for ever.
func TestLockFollowsALeaderThroughManyReboots(t *testing.T) {
	a := NewStatus(cA)
	a.Phase, a.Intent, a.Lock, a.AnnouncedAt = PhaseAnnounced, 1, ref(cA, 1), t0
	lock := &IntentRef{Leader: a.Incarnation, Number: 1}

	aNow := cA
	for i := range 100 {
		aNow.Incarnation.BootID = fmt.Sprintf("a%d", i+2)
		a = Resume(a, aNow)
	}

	if a.WithdrawnThrough < 1 || !slices.Contains(a.PastBoots, "a1") {
		t.Fatalf("setup: withdrawn through %d, past boots %d, a1 kept: %v", a.WithdrawnThrough, len(a.PastBoots), slices.Contains(a.PastBoots, "a1"))
	}

	b := lockedB(lock)
	c := NewStatus(cC)

	b, d := Step(b, obsFor(cB, time.Minute, peer(aNow, &a), peer(cC, &c)))
	if b.Lock != nil && b.Lock.Is(*lock) {
		t.Fatalf("B keeps its lock %s although A withdrew intent 1 in a later boot: %s %q", lock, d.Kind, d.Reason)
	}
}
