package election

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// What is known of a request only grows within a boot, except that a
// "not now" refusal of a request that cannot have arrived makes it unsent.
func TestSendStateMoves(t *testing.T) {
	at := t0.Add(time.Minute)

	for _, tc := range []struct {
		from SendState
		step string // "leave" or an outcome
		want SendState
	}{
		{SendUnsent, "leave", SendLeaving},
		{SendLeaving, "leave", SendMayHaveArrived}, // its answer was lost
		{SendMayHaveArrived, "leave", SendMayHaveArrived},
		{SendLeaving, Accepted.String(), SendAnswered},
		{SendLeaving, AlreadyExists.String(), SendAnswered},
		{SendLeaving, Unknown.String(), SendMayHaveArrived},
		{SendLeaving, RetryLater.String(), SendUnsent},
		{SendLeaving, Rejected.String(), SendUnsent},
		{SendLeaving, NotControlPlane.String(), SendLeaving},
		{SendMayHaveArrived, RetryLater.String(), SendMayHaveArrived}, // says nothing of the first request
		{SendMayHaveArrived, Rejected.String(), SendMayHaveArrived},
		{SendMayHaveArrived, Accepted.String(), SendAnswered},
		{SendMayHaveArrived, Unknown.String(), SendMayHaveArrived},
	} {
		s := Send{Bootstrapping: 3, BootstrapBootID: "a1", SendState: tc.from, BootstrapAt: t0}

		var got Send

		if tc.step == "leave" {
			got = s.leaving(at)
		} else {
			for _, o := range []BootstrapOutcome{Accepted, AlreadyExists, RetryLater, NotControlPlane, Rejected, Unknown} {
				if o.String() == tc.step {
					got = s.answered(o, at)
				}
			}
		}

		if got.SendState != tc.want {
			t.Errorf("%s after %s: %s, want %s", tc.from, tc.step, got.SendState, tc.want)
		}

		// A time is kept exactly while something may be under way: a
		// resend waits ResendAfter from it.
		if got.Withdrawable() != got.BootstrapAt.IsZero() {
			t.Errorf("%s after %s: withdrawable %v with bootstrapAt %v", tc.from, tc.step, got.Withdrawable(), got.BootstrapAt)
		}

		if got.Bootstrapping != 3 || got.BootstrapBootID != "a1" {
			t.Errorf("%s after %s changed the intent: %+v", tc.from, tc.step, got)
		}
	}
}

func TestParseStatusRejectsAnUnknownSendState(t *testing.T) {
	st := bootstrappingA(SendLeaving, t0)
	st.SendState = "sent-maybe"

	data, err := MarshalStatus(st)
	if err == nil {
		_, err = ParseStatus(data)
	}

	if err == nil || !strings.Contains(err.Error(), `"sent-maybe"`) {
		t.Fatalf("status with send state %q: %v, want an error naming it", st.SendState, err)
	}
}

// The send state is changed only by the functions that decide, send,
// record and withdraw: the methods in send.go, applied by Step,
// MarkSending and AfterBootstrap. Anywhere else, a field set by hand could
// turn a request that may have arrived back into a withdrawable one.
func TestOnlyTheSendFunctionsChangeTheSendState(t *testing.T) {
	fields := map[string]bool{"Bootstrapping": true, "BootstrapBootID": true, "SendState": true, "BootstrapAt": true}
	// Files that may replace the whole Send with the result of a method.
	replacers := map[string]bool{"election/step.go": true, "election/bootstrap.go": true}

	fset := token.NewFileSet()

	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}

		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}

		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}

		rel := filepath.ToSlash(strings.TrimPrefix(path, "../"))
		if rel == "election/send.go" {
			return nil
		}

		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}

		check := func(lhs ast.Expr, pos token.Pos) {
			sel, ok := lhs.(*ast.SelectorExpr)
			if !ok {
				return
			}

			if fields[sel.Sel.Name] || (sel.Sel.Name == "Send" && !replacers[rel]) {
				t.Errorf("%s sets %s outside the send functions", fset.Position(pos), sel.Sel.Name)
			}
		}

		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for _, lhs := range n.Lhs {
					check(lhs, n.Pos())
				}
			case *ast.IncDecStmt:
				check(n.X, n.Pos())
			case *ast.KeyValueExpr:
				if id, ok := n.Key.(*ast.Ident); ok && (fields[id.Name] || id.Name == "Send") {
					t.Errorf("%s sets %s in a literal outside the send functions", fset.Position(n.Pos()), id.Name)
				}
			}

			return true
		})

		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
