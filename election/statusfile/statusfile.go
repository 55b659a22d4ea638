// Package statusfile stores the election status as status.json: the only
// I/O of the election. Writes are atomic (temporary file, fsync, rename,
// fsync of the directory) so that a crash or power loss leaves either the
// old or the new status, never a torn one: the status holds locks that must
// not be lost.
package statusfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// DefaultDir survives reboots (EPHEMERAL) and is mounted read-write into the
// extension; peers read it through apid's Read.
const DefaultDir = "/var/lib/kommodity-autobootstrap"

// FileName is the status file's name inside Dir.
const FileName = "status.json"

// Path is where peers and operators read the status.
const Path = DefaultDir + "/" + FileName

// Store reads and writes Dir/status.json.
type Store struct {
	Dir string
	// Now names corrupt files kept aside; time.Now when nil.
	Now func() time.Time
}

func (s Store) path() string { return filepath.Join(s.Dir, FileName) }

// ErrCorrupt: the status file cannot be trusted, and starting from empty
// memory could drop a lock or an unsent bootstrap; an operator must look.
var ErrCorrupt = errors.New("corrupt status file")

// Load returns the saved status, or nil, nil when there is none. A corrupt
// file is moved aside to status.json.corrupt-<time> (never lost) and
// reported as ErrCorrupt naming both files; while such a file exists, Load
// keeps reporting it rather than starting fresh.
func (s Store) Load() (*election.Status, error) {
	data, err := os.ReadFile(s.path())
	if errors.Is(err, fs.ErrNotExist) {
		kept, _ := filepath.Glob(s.path() + ".corrupt-*")
		if len(kept) > 0 {
			return nil, fmt.Errorf("%w: kept as %s; it may hold this node's lock or bootstrap: "+
				"inspect it, then delete it to start fresh", ErrCorrupt, kept[len(kept)-1])
		}

		return nil, nil
	}

	if err != nil {
		return nil, fmt.Errorf("read status file %s: %w", s.path(), err)
	}

	st, perr := election.ParseStatus(data)
	if perr == nil {
		return st, nil
	}

	now := time.Now
	if s.Now != nil {
		now = s.Now
	}

	aside := s.path() + ".corrupt-" + now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(s.path(), aside); err != nil {
		return nil, fmt.Errorf("status file %s is corrupt (%w), and keeping it aside failed: %w", s.path(), perr, err)
	}

	if err := syncDir(s.Dir); err != nil {
		return nil, fmt.Errorf("status file %s is corrupt (%w), kept as %s, but: %w", s.path(), perr, aside, err)
	}

	return nil, fmt.Errorf("%w %s, kept as %s: %w", ErrCorrupt, s.path(), aside, perr)
}

// Save writes the status atomically and durably.
func (s Store) Save(st election.Status) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("save status: %w", err)
	}

	data, err := election.MarshalStatus(st)
	if err != nil {
		return fmt.Errorf("save status: %w", err)
	}

	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("create status directory %s: %w", s.Dir, err)
	}

	tmp, err := os.CreateTemp(s.Dir, FileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary status file in %s: %w", s.Dir, err)
	}

	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename

	if _, err := tmp.Write(data); err != nil {
		tmp.Close() //nolint:errcheck

		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}

	// Peers read it through apid as root; world-readable like Talos's own files.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close() //nolint:errcheck

		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}

	if err := tmp.Sync(); err != nil {
		tmp.Close() //nolint:errcheck

		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}

	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}

	if err := os.Rename(tmp.Name(), s.path()); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), s.path(), err)
	}

	if err := syncDir(s.Dir); err != nil {
		return err
	}

	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}

	defer d.Close() //nolint:errcheck

	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}

	return nil
}
