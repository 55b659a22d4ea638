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
		"leader":   {ControlPlaneDetected, CredentialsReady, Connected, QuorumReached, ElectedLeader, NotYet, DelayElapsed, BootstrapRequested, DelayElapsed, BootstrapRequested, EtcdReady},
		"follower": {ControlPlaneDetected, CredentialsReady, Connected, QuorumMissing, QuorumReached, ElectedFollower, NotYet, ClusterBootstrapped},
		"withdraw": {ControlPlaneDetected, CredentialsReady, Connected, QuorumReached, ElectedLeader, ElectedFollower, ViewChanged, QuorumReached, NotYet, QuorumReached, ElectedLeader, DelayElapsed, AlreadyBootstrapped, EtcdReady},
		"restart":  {ControlPlaneDetected, CredentialsReady, Connected, QuorumReached, BootstrapRequested, EtcdReady},
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

// The README shows the diagram; it must be the table's.
func TestReadmeDiagramMatchesTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatalf("read README: %v", err)
	}

	want := "```mermaid\n" + Mermaid() + "```"
	if !strings.Contains(string(readme), want) {
		t.Fatalf("README.md's state diagram differs from fsm.Table; paste this:\n%s", want)
	}
}
