package election

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func memoSample() Status {
	inc := Incarnation{IP: netip.MustParseAddr("198.18.0.2"), BootID: "boot-a", Node: "cp-1"}
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

	return Status{
		Version: StatusVersion, Incarnation: inc, Phase: PhaseLocked, Intent: 3, WithdrawnThrough: 2,
		Lock:           &IntentRef{Leader: inc, Number: 3},
		Cluster:        &Evidence{Node: inc, What: "member", At: at},
		QuorumMismatch: &Mismatch{Node: inc, Quorum: 1, At: at},
		Candidates:     []Incarnation{inc},
		PastBoots:      []string{"boot-0"},
		UpdatedAt:      at,
	}
}

// Clone must copy every pointer, slice and map of Status, or a status
// handed out by the memo would share memory with the one it keeps.
func TestCloneSharesNothing(t *testing.T) {
	orig := memoSample()
	cp := orig.Clone()

	v, c := reflect.ValueOf(orig), reflect.ValueOf(cp)
	for i := range v.NumField() {
		f := v.Type().Field(i)

		switch f.Type.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			if v.Field(i).IsNil() {
				t.Fatalf("the sample leaves %s nil: give it a value so that its copy is checked", f.Name)
			}

			if v.Field(i).UnsafePointer() == c.Field(i).UnsafePointer() {
				t.Errorf("Clone shares %s with the original", f.Name)
			}
		}
	}

	if !reflect.DeepEqual(orig, cp) {
		t.Errorf("Clone changed the status:\n%+v\n%+v", orig, cp)
	}
}

// The memo returns what a fresh decode returns, and a caller's change to it
// does not reach the next caller.
func TestParseStatusMemoHandsOutCopies(t *testing.T) {
	data, err := MarshalStatus(memoSample())
	if err != nil {
		t.Fatal(err)
	}

	var fresh Status
	if err := json.Unmarshal(data, &fresh); err != nil {
		t.Fatal(err)
	}

	for i := range 3 {
		got, err := ParseStatus(data)
		if err != nil {
			t.Fatal(err)
		}

		if !reflect.DeepEqual(*got, fresh) {
			t.Fatalf("decode %d differs from a fresh one:\n%+v\n%+v", i, *got, fresh)
		}

		got.Lock.Number = 99
		got.PastBoots[0] = "changed"
		got.Phase = PhaseIdle
	}

	if _, err := ParseStatus([]byte(`{"version": 1}`)); err == nil {
		t.Error("an invalid status was accepted")
	}
}
