package election

import (
	"bytes"
	"strings"
	"testing"
)

var omniReason = StandDownMessage("siderolink.api=https://omni.example.com")

// stoodDown is c's status of its current boot after it stood down.
func stoodDown(c Candidate) *Status {
	st := statusOf(c, PhaseIdle, nil, 0, 0)
	st.StandDown = omniReason

	return st
}

func TestStandDownFollowsAPeer(t *testing.T) {
	tests := []struct {
		name string
		st   Status
		obs  Observation
		// want: the decision kind, and what the status keeps.
		want      DecisionKind
		phase     Phase
		lock      *IntentRef
		withdrawn uint64
	}{
		{
			name: "an idle node", st: NewStatus(cA), obs: obsFor(cA, 0, peer(cB, stoodDown(cB)), peer(cC, nil)),
			want: StandDown, phase: PhaseIdle,
		},
		{
			// Nothing of an announced intent was sent: withdrawn, so that
			// its followers let go of it.
			name: "an announced leader withdraws", st: announcedA(), obs: obsFor(cA, 0, peer(cB, stoodDown(cB)), peer(cC, nil)),
			want: StandDown, phase: PhaseIdle, withdrawn: 3,
		},
		{
			// Only ReleaseLockOnlyForReason releases a lock to another leader.
			name: "a lock to another leader is kept", st: lockedB(ref(cC, 2)),
			obs:  obsFor(cB, 0, peer(cA, stoodDown(cA)), peer(cC, statusOf(cC, PhaseAnnounced, ref(cC, 2), 2, 0))),
			want: StandDown, phase: PhaseLocked, lock: ref(cC, 2),
		},
		{
			// A status of an earlier boot says nothing of this one.
			name: "a stale stood-down status does not count", st: NewStatus(cA),
			obs: func() Observation {
				p := peer(cB, stoodDown(cB))
				p.StatusState = StatusStale

				return obsFor(cA, 0, p, peer(cC, nil))
			}(),
			want: Lead, phase: PhaseAnnounced, lock: ref(cA, 1),
		},
		{
			name: "a status naming another boot does not count", st: NewStatus(cA),
			obs: func() Observation {
				p := peer(cB, stoodDown(cB))
				p.BootID = "b2"

				return obsFor(cA, 0, p, peer(cC, nil))
			}(),
			want: Lead, phase: PhaseAnnounced, lock: ref(cA, 1),
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next, d := Step(tc.st, tc.obs)

			if d.Kind != tc.want || next.Phase != tc.phase || next.WithdrawnThrough != tc.withdrawn {
				t.Fatalf("decision %s (%s), phase %s, withdrawn through %d; want %s, phase %s, withdrawn through %d",
					d.Kind, d.Reason, next.Phase, next.WithdrawnThrough, tc.want, tc.phase, tc.withdrawn)
			}

			if (next.Lock == nil) != (tc.lock == nil) || (next.Lock != nil && !next.Lock.Is(*tc.lock)) {
				t.Fatalf("lock %v, want %v", next.Lock, tc.lock)
			}

			if tc.want != StandDown {
				if next.StandDown != "" {
					t.Fatalf("stood down (%q) without a stood-down peer of this boot", next.StandDown)
				}

				return
			}

			// The peer and its own reason are named, in the status peers
			// read, so that a peer of this node stands down in turn.
			want := "10.0.0.2 stood down: " + omniReason
			if tc.obs.Self.IP == cB.IP {
				want = "10.0.0.1 stood down: " + omniReason
			}

			if next.StandDown != want || d.Reason != want || next.Reason != want {
				t.Fatalf("standDown %q, reason %q, decision %q; want %q for all", next.StandDown, next.Reason, d.Reason, want)
			}
		})
	}
}

func TestStandDownStays(t *testing.T) {
	st := MarkStoodDown(NewStatus(cA), cA.Incarnation, omniReason)

	// No peer in view, quorum met by self alone: it would lead.
	obs := obsFor(cA, 0)
	obs.Quorum = 1

	if _, d := Step(st, obs); d.Kind != StandDown || d.Reason != omniReason {
		t.Fatalf("a node that stood down decided %s (%s)", d.Kind, d.Reason)
	}

	// A new boot keeps it: Omni manages the machine until it is wiped.
	rebooted := cand("10.0.0.1", "a2", 300)
	if next, d := Step(Resume(st, rebooted), obsFor(rebooted, 0)); d.Kind != StandDown || next.StandDown != omniReason {
		t.Fatalf("after a reboot: decision %s, standDown %q", d.Kind, next.StandDown)
	}
}

func TestStandDownKeepsABootstrapThatMayBeUnderWay(t *testing.T) {
	st := bootstrappingA(SendMayHaveArrived, t0)

	next, d := Step(st, obsFor(cA, 0, peer(cB, stoodDown(cB)), peer(cC, nil)))
	if d.Kind != StandDown {
		t.Fatalf("decision %s (%s), want stand-down: no resend once Omni is seen", d.Kind, d.Reason)
	}

	// Invariant 1: a send that may have reached machined stays recorded.
	if next.Phase != PhaseBootstrapping || next.Bootstrapping != 3 || next.SendState != SendMayHaveArrived || next.WithdrawnThrough != 2 {
		t.Fatalf("phase %s, bootstrapping %d, send %s, withdrawn through %d: the bootstrap must stay as it was",
			next.Phase, next.Bootstrapping, next.SendState, next.WithdrawnThrough)
	}
}

func TestStandDownAfterHealthyEtcdIsDone(t *testing.T) {
	obs := obsFor(cA, 0, peer(cB, stoodDown(cB)))
	obs.SelfEtcdHealthy = true

	if _, d := Step(NewStatus(cA), obs); d.Kind != Done {
		t.Fatalf("decision %s, want done: own etcd is healthy", d.Kind)
	}
}

func TestStandDownInTheStatusFile(t *testing.T) {
	plain, err := MarshalStatus(NewStatus(cA))
	if err != nil {
		t.Fatal(err)
	}

	if bytes.Contains(plain, []byte("standDown")) {
		t.Fatalf("a status that did not stand down writes the field:\n%s", plain)
	}

	data, err := MarshalStatus(MarkStoodDown(NewStatus(cA), cA.Incarnation, omniReason))
	if err != nil {
		t.Fatal(err)
	}

	if !strings.Contains(string(data), `"standDown": "`+omniReason+`"`) {
		t.Fatalf("status file without its standDown:\n%s", data)
	}

	st, err := ParseStatus(data)
	if err != nil || st.StandDown != omniReason {
		t.Fatalf("ParseStatus: %v, standDown %q", err, st.StandDown)
	}
}
