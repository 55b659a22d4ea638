package states

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// Every decision Step can make becomes exactly one event of the table, and
// that event has a row from every state that runs a round; Halt alone ends
// the run.
func TestEveryDecisionHasOneEvent(t *testing.T) {
	rows := map[fsm.Event]map[fsm.State]bool{}

	for _, tr := range fsm.Table {
		if rows[tr.Event] == nil {
			rows[tr.Event] = map[fsm.State]bool{}
		}

		for _, s := range tr.From {
			rows[tr.Event][s] = true
		}
	}

	s := &Session{Deps: Deps{Log: zerolog.Nop()}}

	for kind := election.Wait; kind <= election.StandDown; kind++ {
		if strings.HasPrefix(kind.String(), "DecisionKind(") {
			t.Fatalf("decision %d has no name: the loop ran past the last kind", kind)
		}

		event, err := s.act(election.Observation{}, election.Decision{Kind: kind})

		if kind == election.Halt {
			var permanent *backoff.PermanentError
			if !errors.As(err, &permanent) || !errors.Is(err, errHalted) || event != "" {
				t.Errorf("halt gave event %q, error %v; want a permanent error", event, err)
			}

			continue
		}

		if err != nil || event != EventOf[kind] {
			t.Errorf("decision %s gave event %q, error %v; want %q", kind, event, err, EventOf[kind])
		}

		for _, state := range []fsm.State{fsm.Elect, fsm.LeaderDelay, fsm.Bootstrap, fsm.AwaitEtcd, fsm.FollowerWait} {
			if !rows[event][state] {
				t.Errorf("decision %s: event %q has no row from %s", kind, event, state)
			}
		}
	}

	if len(EventOf) != int(election.StandDown) { // every kind but Halt
		t.Errorf("EventOf maps %d kinds, want %d", len(EventOf), election.StandDown)
	}
}

// Step is the only writer of the phase: no file of this package assigns it.
func TestNoStateAssignsThePhase(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}

	fset := token.NewFileSet()

	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}

		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}

		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for _, lhs := range n.Lhs {
					if sel, ok := lhs.(*ast.SelectorExpr); ok && sel.Sel.Name == "Phase" {
						t.Errorf("%s assigns the phase", fset.Position(n.Pos()))
					}
				}
			case *ast.KeyValueExpr:
				if id, ok := n.Key.(*ast.Ident); ok && id.Name == "Phase" {
					t.Errorf("%s sets the phase in a literal", fset.Position(n.Pos()))
				}
			}

			return true
		})
	}
}
