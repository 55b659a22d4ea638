package statusfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// FS is the part of a filesystem the store uses. Every call may fail as a
// disk does (ENOSPC, EIO, a read-only mount); the store's error says how
// far a Save got.
type FS interface {
	MkdirAll(dir string) error
	// CreateTemp creates a new file readable by everyone (peers read the
	// status through apid as root, like Talos's own files).
	CreateTemp(dir, pattern string) (File, error)
	Rename(from, to string) error
	Remove(name string) error
	ReadFile(name string) ([]byte, error)
	Glob(pattern string) ([]string, error)
	// SyncDir fsyncs a directory, making the renames in it durable.
	SyncDir(dir string) error
}

// File is a file being written.
type File interface {
	Name() string
	Write(p []byte) (int, error)
	Sync() error
	Close() error
}

// OS is the host's filesystem.
type OS struct{}

// MkdirAll creates dir and its parents.
func (OS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// CreateTemp creates a world-readable temporary file in dir.
func (OS) CreateTemp(dir, pattern string) (File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}

	if err := f.Chmod(0o644); err != nil {
		f.Close()           //nolint:errcheck
		os.Remove(f.Name()) //nolint:errcheck

		return nil, fmt.Errorf("chmod %s: %w", f.Name(), err)
	}

	return f, nil
}

// Rename renames from to to.
func (OS) Rename(from, to string) error { return os.Rename(from, to) }

// Remove removes a file.
func (OS) Remove(name string) error { return os.Remove(name) }

// ReadFile reads a whole file.
func (OS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

// Glob lists the names matching pattern.
func (OS) Glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }

// SyncDir fsyncs dir.
func (OS) SyncDir(dir string) error {
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
