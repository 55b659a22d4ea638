// Package statusfile stores the election status as status.json: the only
// I/O of the election. Peers read status.json through apid and count the
// lock it holds, so a status must be durable before it is published there:
// a lock a peer counted and a power loss then erased would let this node
// lock to another leader, and a second leader bootstrap.
//
// Save therefore writes in two durable steps: the new status is written,
// fsynced and renamed to status.json.next, and the directory is fsynced
// (durable, not yet published); then status.json.next is renamed to
// status.json (published) and the directory fsynced again. A power loss
// that undoes the second rename leaves status.json.next, which Load takes
// as the newest status and publishes again; a Save that failed at the
// first directory fsync leaves one whose name is not durable, so Load
// fsyncs the directory before it publishes. Load also keeps a corrupt file
// aside instead of starting from an empty memory.
package statusfile

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// DefaultDir survives reboots (EPHEMERAL) and is mounted read-write into the
// extension; peers read it through apid's Read.
const DefaultDir = "/var/lib/kommodity-autobootstrap"

// FileName is the status file's name inside Dir.
const FileName = "status.json"

// nextName is the newest status, not yet published.
const nextName = FileName + ".next"

// Path is where peers and operators read the status.
const Path = DefaultDir + "/" + FileName

// Store reads and writes Dir/status.json.
type Store struct {
	Dir string
	// FS is the filesystem under Dir; the host's when nil. The simulator
	// injects one with storage faults and power loss.
	FS FS
	// Now names corrupt files kept aside; time.Now when nil.
	Now func() time.Time
}

func (s Store) fs() FS {
	if s.FS == nil {
		return OS{}
	}

	return s.FS
}

func (s Store) path() string { return filepath.Join(s.Dir, FileName) }
func (s Store) next() string { return filepath.Join(s.Dir, nextName) }

// ErrCorrupt: the status file cannot be trusted, and starting from empty
// memory could drop a lock or an unsent bootstrap; an operator must look.
var ErrCorrupt = errors.New("corrupt status file")

// ErrPublished marks a Save error after the new status.json was renamed
// into place: peers may read it and count its lock, so the caller must act
// on it (adopt it) even though Save failed.
var ErrPublished = errors.New("the new status is published")

// Load returns the saved status, or nil, nil when there is none. A
// status.json.next (a Save that failed before publishing, or whose
// publishing rename a power loss undid) is the newest status: it is made
// durable, then published, before Load returns it. A
// corrupt file is moved aside to <name>.corrupt-<time> (never lost) and
// reported as ErrCorrupt naming both files; while such a file exists, Load
// keeps reporting it rather than starting fresh.
func (s Store) Load() (*election.Status, error) {
	fsys := s.fs()

	st, err := s.read(s.next())
	if err != nil {
		return nil, err
	}

	if st != nil {
		// status.json.next may not be durable yet: the Save that wrote it
		// can have failed at its directory fsync. Publishing it before its
		// name is durable would let a power loss erase a lock peers have
		// counted, and this node would come back free to lock elsewhere.
		if err := fsys.SyncDir(s.Dir); err != nil {
			return nil, fmt.Errorf("make %s durable before publishing it: %w", s.next(), err)
		}

		if err := fsys.Rename(s.next(), s.path()); err != nil {
			return nil, fmt.Errorf("publish %s: %w", s.next(), err)
		}

		if err := fsys.SyncDir(s.Dir); err != nil {
			return nil, fmt.Errorf("publish %s: %w", s.next(), err)
		}

		return st, nil
	}

	st, err = s.read(s.path())
	if err != nil || st != nil {
		return st, err
	}

	kept, _ := fsys.Glob(s.path() + ".corrupt-*")
	if more, _ := fsys.Glob(s.next() + ".corrupt-*"); len(more) > 0 {
		kept = append(kept, more...)
	}

	if len(kept) > 0 {
		return nil, fmt.Errorf("%w: kept as %s; it may hold this node's lock or bootstrap: "+
			"inspect it, then delete it to start fresh", ErrCorrupt, kept[len(kept)-1])
	}

	return nil, nil
}

// read parses one status file: nil, nil when it does not exist; a corrupt
// one is kept aside and reported.
func (s Store) read(path string) (*election.Status, error) {
	fsys := s.fs()

	data, err := fsys.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}

	if err != nil {
		return nil, fmt.Errorf("read status file %s: %w", path, err)
	}

	st, perr := election.ParseStatus(data)
	if perr == nil {
		return st, nil
	}

	now := time.Now
	if s.Now != nil {
		now = s.Now
	}

	aside := path + ".corrupt-" + now().UTC().Format("20060102T150405.000000000Z")
	if err := fsys.Rename(path, aside); err != nil {
		return nil, fmt.Errorf("status file %s is corrupt (%w), and keeping it aside failed: %w", path, perr, err)
	}

	if err := fsys.SyncDir(s.Dir); err != nil {
		return nil, fmt.Errorf("status file %s is corrupt (%w), kept as %s, but: %w", path, perr, aside, err)
	}

	return nil, fmt.Errorf("%w %s, kept as %s: %w", ErrCorrupt, path, aside, perr)
}

// Save writes the status durably, then publishes it. An error wrapping
// ErrPublished means status.json already holds the new status (only the
// last directory fsync failed; status.json.next was durable, so Load
// restores it after a power loss); any other error means status.json still
// holds the previous one.
func (s Store) Save(st election.Status) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("save status: %w", err)
	}

	data, err := election.MarshalStatus(st)
	if err != nil {
		return fmt.Errorf("save status: %w", err)
	}

	fsys := s.fs()

	if err := fsys.MkdirAll(s.Dir); err != nil {
		return fmt.Errorf("create status directory %s: %w", s.Dir, err)
	}

	if err := s.writeNext(data); err != nil {
		return err
	}

	if err := fsys.Rename(s.next(), s.path()); err != nil {
		return fmt.Errorf("publish %s as %s: %w", s.next(), s.path(), err)
	}

	if err := fsys.SyncDir(s.Dir); err != nil {
		return fmt.Errorf("%w, but: %w", ErrPublished, err)
	}

	return nil
}

// writeNext makes data durable as status.json.next: a temporary file,
// fsynced, renamed, and the directory fsynced.
func (s Store) writeNext(data []byte) error {
	fsys := s.fs()

	tmp, err := fsys.CreateTemp(s.Dir, FileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary status file in %s: %w", s.Dir, err)
	}

	defer fsys.Remove(tmp.Name()) //nolint:errcheck // gone after the rename

	if _, err := tmp.Write(data); err != nil {
		tmp.Close() //nolint:errcheck

		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}

	if err := tmp.Sync(); err != nil {
		tmp.Close() //nolint:errcheck

		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}

	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}

	if err := fsys.Rename(tmp.Name(), s.next()); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), s.next(), err)
	}

	if err := fsys.SyncDir(s.Dir); err != nil {
		return err
	}

	return nil
}
