package statusfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// faultyFS is the host's filesystem with one operation failing: the n-th
// call (counting from 1) whose name is op.
type faultyFS struct {
	OS
	op    string
	n     int
	calls map[string]int
	err   error
}

func (f *faultyFS) fail(op string) error {
	if f.calls == nil {
		f.calls = map[string]int{}
	}

	f.calls[op]++
	if op == f.op && f.calls[op] == f.n {
		return f.err
	}

	return nil
}

func (f *faultyFS) Rename(from, to string) error {
	if err := f.fail("rename " + filepath.Base(to)); err != nil {
		return err
	}

	return f.OS.Rename(from, to)
}

func (f *faultyFS) SyncDir(dir string) error {
	if err := f.fail("syncdir"); err != nil {
		return err
	}

	return f.OS.SyncDir(dir)
}

func (f *faultyFS) CreateTemp(dir, pattern string) (File, error) {
	if err := f.fail("create"); err != nil {
		return nil, err
	}

	return f.OS.CreateTemp(dir, pattern)
}

// Every failure of Save says whether status.json already holds the new
// status (peers may count it) or still the old one, and a failure after
// the durable step leaves the new status for Load.
func TestSaveSaysWhetherTheNewStatusIsPublished(t *testing.T) {
	for _, tc := range []struct {
		name      string
		op        string
		n         int
		published bool
		nextKept  bool // Load finds the new status although status.json is old
	}{
		{name: "no space for the temporary file", op: "create", n: 1},
		{name: "EIO renaming to the durable name", op: "rename " + nextName, n: 1},
		{name: "EIO on the durable step's directory fsync", op: "syncdir", n: 1, nextKept: true},
		{name: "EIO on the publishing rename", op: "rename " + FileName, n: 1, nextKept: true},
		{name: "EIO on the published directory fsync", op: "syncdir", n: 2, published: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			old := sample()

			if err := (Store{Dir: dir}).Save(old); err != nil {
				t.Fatal(err)
			}

			fsys := &faultyFS{op: tc.op, n: tc.n, err: syscall.EIO}
			s := Store{Dir: dir, FS: fsys}
			next := sample()
			next.Intent, next.WithdrawnThrough = 7, 7

			err := s.Save(next)
			if err == nil || !errors.Is(err, syscall.EIO) {
				t.Fatalf("Save = %v, want the injected EIO", err)
			}

			if got := errors.Is(err, ErrPublished); got != tc.published {
				t.Fatalf("Save error %q: published %v, want %v", err, got, tc.published)
			}

			onDisk, rerr := os.ReadFile(filepath.Join(dir, FileName))
			if rerr != nil {
				t.Fatal(rerr)
			}

			if isNew := strings.Contains(string(onDisk), `"intent": 7`); isNew != tc.published {
				t.Fatalf("status.json holds the new status: %v, but Save said published %v", isNew, tc.published)
			}

			loaded, lerr := (Store{Dir: dir}).Load()
			if lerr != nil {
				t.Fatal(lerr)
			}

			if wantNew := tc.published || tc.nextKept; (loaded.Intent == 7) != wantNew {
				t.Fatalf("Load after the fault = intent %d, want the new status: %v", loaded.Intent, wantNew)
			}

			if _, err := os.Stat(filepath.Join(dir, nextName)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Load left %s behind: %v", nextName, err)
			}
		})
	}
}

// A power loss after the publishing rename but before its directory fsync
// may undo the rename: the durable status.json.next is then the newest
// status, and Load publishes it again, so a lock a peer counted is kept.
func TestLoadPublishesTheDurableNextStatus(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir}

	old := sample()
	if err := s.Save(old); err != nil {
		t.Fatal(err)
	}

	next := sample()
	next.Intent, next.WithdrawnThrough = 9, 9

	data, err := election.MarshalStatus(next)
	if err != nil {
		t.Fatal(err)
	}

	// What the disk holds when the publishing rename was lost.
	if err := os.WriteFile(filepath.Join(dir, nextName), data, 0o644); err != nil {
		t.Fatal(err)
	}

	got, err := s.Load()
	if err != nil || got.Intent != 9 {
		t.Fatalf("Load = %+v, %v; want the durable next status", got, err)
	}

	if again, err := s.Load(); err != nil || again.Intent != 9 {
		t.Fatalf("second Load = %+v, %v; the next status must have been published", again, err)
	}
}

// A Save that failed at its first directory fsync leaves a status.json.next
// whose name a power loss can still erase. Load must make it durable before
// publishing it: a status published and then erased is a lock a peer may
// have counted and this node no longer holds.
func TestLoadPublishesOnlyADurableNextStatus(t *testing.T) {
	dir := t.TempDir()

	if err := (Store{Dir: dir}).Save(sample()); err != nil {
		t.Fatal(err)
	}

	next := sample()
	next.Intent, next.WithdrawnThrough = 7, 7

	if err := (Store{Dir: dir, FS: &faultyFS{op: "syncdir", n: 1, err: syscall.EIO}}).Save(next); err == nil {
		t.Fatal("Save with a failing directory fsync succeeded")
	}

	// The directory is still unsyncable when the daemon restarts.
	_, err := (Store{Dir: dir, FS: &faultyFS{op: "syncdir", n: 1, err: syscall.EIO}}).Load()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("Load with a failing directory fsync = %v, want the EIO", err)
	}

	onDisk, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}

	if strings.Contains(string(onDisk), `"intent": 7`) {
		t.Fatal("Load published status.json.next although it could not make it durable")
	}

	loaded, err := (Store{Dir: dir}).Load()
	if err != nil || loaded.Intent != 7 {
		t.Fatalf("Load once the disk recovered = %+v, %v; want the next status", loaded, err)
	}
}
