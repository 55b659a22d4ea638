package credentials

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Default STATE device paths, in the order they are tried. Talos labels the
// GPT partition STATE; when STATE is encrypted that partition holds a LUKS2
// container and Talos opens the XFS inside it as /dev/mapper/luks2-STATE.
const (
	DefaultStatePartlabelDevice = "/dev/disk/by-partlabel/STATE"
	DefaultStateLUKSDevice      = "/dev/mapper/luks2-STATE"
)

// DefaultStateDevices is the device search order used when StateSource.Devices
// is empty.
func DefaultStateDevices() []string {
	return []string{DefaultStatePartlabelDevice, DefaultStateLUKSDevice}
}

var (
	xfsMagic  = []byte("XFSB")
	luksMagic = []byte("LUKS\xba\xbe")
)

// luksError: the device is an encrypted partition, not the opened
// filesystem. Talos v1.12+ opens it as /dev/mapper/luks2-STATE; v1.7–v1.11
// as /dev/mapper/<partition>-encrypted (e.g. sda6-encrypted).
type luksError struct{ partition string }

func (e *luksError) Error() string { return "LUKS container, not the opened filesystem" }

// openedAs is where Talos v1.7–v1.11 map the opened container.
func (e *luksError) openedAs() string {
	return "/dev/mapper/" + filepath.Base(e.partition) + "-encrypted"
}

// deviceAttempt records why one candidate device was not used, so that the
// final error names every path tried.
type deviceAttempt struct {
	path   string
	reason string
}

func describeAttempts(attempts []deviceAttempt) string {
	parts := make([]string, 0, len(attempts))
	for _, a := range attempts {
		parts = append(parts, a.path+" ("+a.reason+")")
	}

	return strings.Join(parts, ", ")
}

// probeXFS checks that path is a block device (or, for images, a regular
// file) whose content starts with the XFS superblock magic. Reading the first
// bytes tells an encrypted STATE partition (a LUKS2 header) apart from the
// opened filesystem without attempting a mount. It returns the path with
// symlinks resolved.
func probeXFS(path string) (string, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("not found: %w", fs.ErrNotExist)
		}

		return "", fmt.Errorf("resolve: %w", err)
	}

	info, err := os.Stat(resolved)
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", resolved, err)
	}

	if info.Mode()&fs.ModeDevice == 0 || info.Mode()&fs.ModeCharDevice != 0 {
		return "", fmt.Errorf("%s is not a block device (mode %s)", resolved, info.Mode())
	}

	f, err := os.Open(resolved)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", resolved, err)
	}
	defer f.Close() //nolint:errcheck // read-only

	head := make([]byte, len(luksMagic))
	if _, err := io.ReadFull(f, head); err != nil {
		return "", fmt.Errorf("read superblock of %s: %w", resolved, err)
	}

	switch {
	case bytes.HasPrefix(head, xfsMagic):
		return resolved, nil
	case bytes.HasPrefix(head, luksMagic):
		return "", &luksError{partition: resolved}
	default:
		return "", errors.New("no XFS superblock")
	}
}
