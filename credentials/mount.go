package credentials

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultMountBase is where temporary STATE mount points are created. The
// extension gets /run read-write from Talos; everything else is read-only.
const DefaultMountBase = "/run/kommodity-autobootstrap"

const (
	stateFSType = "xfs"
	// mountSafety are the per-mount flags every STATE mount carries: the
	// filesystem is only ever read, nothing on it is executed or trusted.
	mountSafety = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
)

// mountSlot serialises STATE mounts process-wide: two concurrent mounts of
// the same device would only widen the window in which Talos itself cannot
// remount STATE read-write. A channel rather than a sync.Mutex so that
// waiting for it honours the context.
var mountSlot = make(chan struct{}, 1)

// afterMountHook, when set by tests, runs right after the mount succeeded and
// before anything is read; tests use it to panic or cancel at that point.
var afterMountHook func(dir string)

// withStateMounted mounts the XFS filesystem on device read-only on a fresh
// directory inside a fresh 0700 directory under baseDir, calls fn with it,
// and always unmounts and removes both directories afterwards, including
// when fn fails or panics. shared reports that the filesystem was already mounted read-write
// elsewhere and the EBUSY fallback was used.
func withStateMounted(ctx context.Context, device, baseDir string, fn func(root string) error) (shared bool, err error) {
	select {
	case mountSlot <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("wait for the STATE mount slot: %w", ctx.Err())
	}
	defer func() { <-mountSlot }()

	if err := ctx.Err(); err != nil {
		return false, err
	}

	if err := os.MkdirAll(baseDir, 0o700); err != nil {
		return false, fmt.Errorf("create mount base %s: %w", baseDir, err)
	}

	// The mount point sits in a private 0700 directory: once mounted, the
	// mount point's own mode is hidden behind the filesystem's root, but
	// the parent's still stops anyone but root from walking into STATE.
	private, err := os.MkdirTemp(baseDir, "state-")
	if err != nil {
		return false, fmt.Errorf("create mount point under %s: %w", baseDir, err)
	}

	defer func() {
		if rmErr := os.Remove(private); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove mount point: %w", rmErr))
		}
	}()

	dir := filepath.Join(private, "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return false, fmt.Errorf("create mount point: %w", err)
	}

	defer func() {
		if rmErr := os.Remove(dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove mount point: %w", rmErr))
		}
	}()

	shared, err = mountReadOnly(device, dir)
	if err != nil {
		return shared, err
	}

	defer func() {
		if umErr := unmount(dir); umErr != nil {
			err = errors.Join(err, umErr)
		}
	}()

	if afterMountHook != nil {
		afterMountHook(dir)
	}

	if err := ctx.Err(); err != nil {
		return shared, err
	}

	return shared, fn(dir)
}

// mountReadOnly mounts device on dir read-only. A plain read-only mount is
// refused with EBUSY when the filesystem is already mounted read-write (the
// kernel would have to change the shared superblock's RO state): Talos holds
// STATE that way on v1.6–v1.9 (at /system/state) and v1.12+ (detached). Then
// a mount with the same read-write superblock flags shares the existing
// superblock, and an immediate bind-remount makes this mount point read-only
// before anything is read. Nothing is ever written through either mount.
//
// Known window: if Talos unmounts STATE between the EBUSY and the shared
// mount, the second mount creates a fresh read-write superblock and XFS writes its own
// metadata (log, superblock) on mount and unmount; files are not touched.
func mountReadOnly(device, dir string) (shared bool, err error) {
	const readOnly = unix.MS_RDONLY | mountSafety

	err = retryEINTR(func() error { return unix.Mount(device, dir, stateFSType, readOnly, "") })
	if err == nil {
		return false, nil
	}

	if !errors.Is(err, unix.EBUSY) {
		return false, fmt.Errorf("mount %s read-only on %s: %w", device, dir, err)
	}

	if err := retryEINTR(func() error { return unix.Mount(device, dir, stateFSType, mountSafety, "") }); err != nil {
		return true, fmt.Errorf("mount %s on %s: read-only mount refused with EBUSY (held read-write elsewhere), shared mount failed: %w", device, dir, err)
	}

	if err := retryEINTR(func() error { return unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|readOnly, "") }); err != nil {
		return true, errors.Join(
			fmt.Errorf("bind-remount %s read-only: %w", dir, err),
			unmount(dir),
		)
	}

	return true, nil
}

// unmount detaches dir, lazily when a plain unmount fails (for example when
// something still holds a file open), so that no mount outlives the call.
func unmount(dir string) error {
	err := retryEINTR(func() error { return unix.Unmount(dir, 0) })
	if err == nil {
		return nil
	}

	if lazyErr := retryEINTR(func() error { return unix.Unmount(dir, unix.MNT_DETACH) }); lazyErr != nil {
		return fmt.Errorf("unmount %s: %w (lazy unmount: %w)", dir, err, lazyErr)
	}

	return nil
}

func retryEINTR(call func() error) error {
	for {
		err := call()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
