package election

import (
	"testing"
)

func TestAfterBootstrap(t *testing.T) {
	st := announcedA()
	st.Phase, st.Bootstrapping, st.BootstrapBootID = PhaseBootstrapping, 3, "a1"

	for _, tc := range []struct {
		outcome BootstrapOutcome
		kind    DecisionKind
		phase   Phase
		sent    bool
	}{
		{Accepted, AwaitEtcd, PhaseBootstrapped, true},
		{AlreadyExists, AwaitEtcd, PhaseBootstrapped, true},
		{Unknown, AwaitEtcd, PhaseBootstrapping, true},
		{RetryLater, Wait, PhaseBootstrapping, false},
		{Rejected, Wait, PhaseBootstrapping, false},
		{NotControlPlane, Halt, PhaseBootstrapping, false},
	} {
		got, d := AfterBootstrap(st, tc.outcome, t0)
		if d.Kind != tc.kind || got.Phase != tc.phase || got.BootstrapSent != tc.sent || got.Lock == nil || got.WithdrawnThrough != 2 {
			t.Errorf("%s: %s phase=%s sent=%v lock=%v withdrawn=%d", tc.outcome, d.Kind, got.Phase, got.BootstrapSent, got.Lock, got.WithdrawnThrough)
		}
	}
}

func TestParseStatusRejectsGarbage(t *testing.T) {
	good, err := MarshalStatus(*statusOf(cA, PhaseLocked, ref(cB, 2), 4, 4))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := ParseStatus(good); err != nil {
		t.Fatalf("round trip: %v", err)
	}

	for _, bad := range []string{`{`, `{"version":1}`, `{"version":2,"incarnation":{"ip":"10.0.0.1","bootID":"x"},"phase":"idle"}`,
		`{"version":1,"incarnation":{"ip":"10.0.0.1","bootID":"x"},"phase":"elected"}`,
		`{"version":1,"incarnation":{"ip":"10.0.0.1","bootID":"x"},"phase":"idle","intent":1,"withdrawnThrough":2}`} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%s) accepted garbage", bad)
		}
	}
}
