package fsm

import (
	"os"
	"strings"
	"testing"
)

var allStates = []State{Detect, Credentials, Connect, Scan, Elect, LeaderDelay, Bootstrap, AwaitEtcd, FollowerWait, Done}

// Every state is entered by some row and every state but Done is left by one:
// a deleted row leaves a state stranded and fails here.
func TestTableConnectsEveryState(t *testing.T) {
	entered := map[State]bool{Initial: true}
	left := map[State]bool{}

	for _, tr := range Table {
		entered[tr.To] = true
		for _, s := range tr.From {
			left[s] = true
		}
	}

	for _, s := range allStates {
		if !entered[s] {
			t.Errorf("state %s is never entered", s)
		}

		if s != Done && !left[s] {
			t.Errorf("state %s is never left", s)
		}
	}
}

// The happy paths the product promises, walked through the real table.
func TestTablePaths(t *testing.T) {
	paths := map[string][]Event{
		"leader":   {ControlPlaneDetected, CredentialsReady, Connected, QuorumReached, Lead, Lead, SendBootstrap, AwaitingEtcd, SendBootstrap, AwaitingEtcd, Finish},
		"follower": {ControlPlaneDetected, CredentialsReady, Connected, QuorumMissing, QuorumReached, Follow, Follow, Finish},
		"withdraw": {ControlPlaneDetected, CredentialsReady, Connected, QuorumReached, Lead, Follow, Wait, QuorumReached, Wait, QuorumReached, Lead, SendBootstrap, AwaitingEtcd, Finish},
		"restart":  {ControlPlaneDetected, CredentialsReady, Connected, QuorumReached, AwaitingEtcd, Finish},
		"healthy":  {ControlPlaneDetected, CredentialsReady, Connected, QuorumMissing, Finish},
		"worker":   {SecretsMissing, WorkerDetected},
		"worker2":  {ControlPlaneDetected, CredentialsReady, WorkerDetected},
	}

	for name, events := range paths {
		t.Run(name, func(t *testing.T) {
			m := New()
			for _, e := range events {
				if err := m.Event(t.Context(), string(e)); err != nil && !strings.Contains(err.Error(), "no transition") {
					t.Fatalf("event %s in %s: %v", e, m.Current(), err)
				}
			}

			if State(m.Current()) != Done {
				t.Fatalf("ended in %s, want Done", m.Current())
			}
		})
	}
}

// Every decision event leads to one state, from every state that runs a
// round: where the machine goes depends on what the election decided, not on
// where it was.
func TestDecisionEventsHaveOneDestination(t *testing.T) {
	for _, e := range []Event{Wait, Lead, Follow, SendBootstrap, AwaitingEtcd, Finish, StandDown} {
		to := map[State]bool{}
		from := map[State]bool{}

		for _, tr := range Table {
			if tr.Event == e {
				to[tr.To] = true

				for _, s := range tr.From {
					from[s] = true
				}
			}
		}

		if len(to) != 1 {
			t.Errorf("event %s leads to %d states, want 1", e, len(to))
		}

		for _, s := range rounds {
			if !from[s] {
				t.Errorf("event %s cannot leave %s, which runs rounds", e, s)
			}
		}
	}
}

// docs/development.md draws the machine; the drawing must be the table's.
func TestDiagramMatchesTable(t *testing.T) {
	doc, err := os.ReadFile("../docs/development.md")
	if err != nil {
		t.Fatalf("read docs/development.md: %v", err)
	}

	want := "```mermaid\n" + Mermaid() + "```"
	if !strings.Contains(string(doc), want) {
		t.Fatalf("docs/development.md's state diagram differs from fsm.Table; paste this:\n%s", want)
	}
}
