package statusfile

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

func sample() election.Status {
	st := election.NewStatus(election.Candidate{
		Incarnation: election.Incarnation{IP: netip.MustParseAddr("198.18.0.1"), BootID: "b1"},
		BootTime:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	st.Phase, st.Intent, st.WithdrawnThrough = election.PhaseLocked, 2, 2
	st.Lock = &election.IntentRef{Leader: election.Incarnation{IP: netip.MustParseAddr("198.18.0.2"), BootID: "b9"}, Number: 5}

	return st
}

func TestSaveLoadRoundTrip(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "sub")}

	got, err := s.Load()
	if err != nil || got != nil {
		t.Fatalf("Load on empty dir = %v, %v; want nil, nil", got, err)
	}

	want := sample()
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}

	want.Intent = 3 // overwrite: the second save replaces the first
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}

	got, err = s.Load()
	if err != nil {
		t.Fatal(err)
	}

	if got.Intent != 3 || *got.Lock != *want.Lock || !got.BootTime.Equal(want.BootTime) {
		t.Fatalf("loaded %+v, want %+v", got, want)
	}

	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}

	if len(entries) != 1 || entries[0].Name() != FileName {
		t.Fatalf("directory holds %v, want only %s (temporary files left behind?)", entries, FileName)
	}
}

func TestSaveRefusesInvalidStatus(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}

	bad := sample()
	bad.WithdrawnThrough = 9

	if err := s.Save(bad); err == nil {
		t.Fatal("Save accepted an invalid status")
	}

	got, err := s.Load()
	if err != nil || got.WithdrawnThrough != 2 {
		t.Fatalf("previous status damaged: %+v, %v", got, err)
	}
}

func TestCorruptFileIsKeptAside(t *testing.T) {
	dir := t.TempDir()
	garbage := []byte(`{"version":1,"incarn`)

	if err := os.WriteFile(filepath.Join(dir, FileName), garbage, 0o644); err != nil {
		t.Fatal(err)
	}

	s := Store{Dir: dir, Now: func() time.Time { return time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC) }}

	got, err := s.Load()
	if err == nil || got != nil {
		t.Fatalf("Load of a corrupt file = %v, %v; want an error", got, err)
	}

	aside := filepath.Join(dir, FileName+".corrupt-20260203T040506.000000000Z")
	if !strings.Contains(err.Error(), aside) || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
		t.Fatalf("error %q does not name both files", err)
	}

	kept, rerr := os.ReadFile(aside)
	if rerr != nil || string(kept) != string(garbage) {
		t.Fatalf("corrupt file not kept: %q, %v", kept, rerr)
	}

	// A retry must not start from empty memory: the lock may be in there.
	if got, err := s.Load(); got != nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), aside) {
		t.Fatalf("second Load = %v, %v; want ErrCorrupt naming %s", got, err, aside)
	}

	if err := os.Remove(aside); err != nil {
		t.Fatal(err)
	}

	if got, err := s.Load(); got != nil || err != nil {
		t.Fatalf("Load after the operator removed the file = %v, %v; want a fresh start", got, err)
	}
}
