package election

import (
	"testing"
	"time"
)

func TestAfterBootstrap(t *testing.T) {
	// The status as the Bootstrap state sends: decided, then marked.
	st := MarkSending(bootstrappingA(SendUnsent, time.Time{}), t0)

	for _, tc := range []struct {
		outcome BootstrapOutcome
		kind    DecisionKind
		phase   Phase
		send    SendState
	}{
		{Accepted, AwaitEtcd, PhaseBootstrapped, SendAnswered},
		{AlreadyExists, AwaitEtcd, PhaseBootstrapped, SendAnswered},
		{Unknown, AwaitEtcd, PhaseBootstrapping, SendMayHaveArrived},
		{RetryLater, Wait, PhaseBootstrapping, SendUnsent},
		{Rejected, Wait, PhaseBootstrapping, SendUnsent},
		{NotControlPlane, Halt, PhaseBootstrapping, SendLeaving},
	} {
		got, d := AfterBootstrap(st, tc.outcome, t0)
		if d.Kind != tc.kind || got.Phase != tc.phase || got.SendState != tc.send || got.Lock == nil || got.WithdrawnThrough != 2 {
			t.Errorf("%s: %s phase=%s send=%s lock=%v withdrawn=%d", tc.outcome, d.Kind, got.Phase, got.SendState, got.Lock, got.WithdrawnThrough)
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
