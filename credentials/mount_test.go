package credentials

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"golang.org/x/sys/unix"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// stateImageSize: mkfs.xfs refuses filesystems below 300 MiB. The image is
// sparse, so it costs a few MiB of disk.
const stateImageSize = 300 << 20

// newLoopDevice attaches img to a free loop device, detached at cleanup.
func newLoopDevice(t *testing.T, img string) string {
	t.Helper()

	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup %s: %v", img, err)
	}

	dev := strings.TrimSpace(string(out))

	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})

	return dev
}

// newStateDevice makes an XFS filesystem labelled STATE on a loop device,
// holding config.yaml with the given content (none when content is nil).
func newStateDevice(t *testing.T, content []byte) string {
	t.Helper()
	requireRoot(t, "losetup", "mkfs.xfs")

	img := filepath.Join(t.TempDir(), "state.img")

	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}

	if err := f.Truncate(stateImageSize); err != nil {
		t.Fatal(err)
	}

	f.Close() //nolint:errcheck

	dev := newLoopDevice(t, img)

	if out, err := exec.Command("mkfs.xfs", "-q", "-L", "STATE", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs %s: %v: %s", dev, err, out)
	}

	if content != nil {
		dir := t.TempDir()
		if err := unix.Mount(dev, dir, "xfs", 0, ""); err != nil {
			t.Fatalf("mount %s to write config.yaml: %v", dev, err)
		}

		werr := os.WriteFile(filepath.Join(dir, ConfigFileName), content, 0o600)

		if err := unix.Unmount(dir, 0); err != nil {
			t.Fatalf("unmount %s: %v", dir, err)
		}

		if werr != nil {
			t.Fatal(werr)
		}
	}

	return dev
}

// holdReadWrite mounts dev read-write the way Talos holds STATE: attached at
// a path (v1.6–v1.9) or, with detached, as a mount with no path whose
// superblock stays alive through an open file descriptor (v1.12+).
func holdReadWrite(t *testing.T, dev string, detached bool) (dir string) {
	t.Helper()

	dir = t.TempDir()
	if err := unix.Mount(dev, dir, "xfs", 0, ""); err != nil {
		t.Fatalf("mount %s read-write: %v", dev, err)
	}

	if !detached {
		t.Cleanup(func() {
			if err := unix.Unmount(dir, 0); err != nil {
				t.Errorf("unmount the read-write holder %s: %v", dir, err)
			}
		})

		return dir
	}

	holder, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}

	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		t.Fatalf("detach %s: %v", dir, err)
	}

	t.Cleanup(func() { holder.Close() }) //nolint:errcheck

	if m := mountsOf(t, dev); len(m) != 0 {
		t.Fatalf("detached holder still visible: %v", m)
	}

	return ""
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point        string
	options      string // per-mount
	superOptions string // superblock
}

func readMountinfo(t *testing.T) []struct {
	devNum string
	mountEntry
} {
	t.Helper()

	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}

	var entries []struct {
		devNum string
		mountEntry
	}

	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)

		if !ok || len(fields) < 6 || len(postFields) < 3 {
			t.Fatalf("unexpected mountinfo line %q", line)
		}

		entries = append(entries, struct {
			devNum string
			mountEntry
		}{fields[2], mountEntry{point: fields[4], options: fields[5], superOptions: postFields[2]}})
	}

	return entries
}

// mountsOf lists the mounts of block device dev.
func mountsOf(t *testing.T, dev string) []mountEntry {
	t.Helper()

	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}

	devNum := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))

	var out []mountEntry

	for _, e := range readMountinfo(t) {
		if e.devNum == devNum {
			out = append(out, e.mountEntry)
		}
	}

	return out
}

// assertNoLeftovers checks that nothing is mounted under base and that base
// holds no temporary directory, and that the mount slot is free.
func assertNoLeftovers(t *testing.T, base string) {
	t.Helper()

	for _, e := range readMountinfo(t) {
		if strings.HasPrefix(e.point, base) {
			t.Errorf("leftover mount %s (%s)", e.point, e.options)
		}
	}

	entries, err := os.ReadDir(base)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}

	for _, e := range entries {
		t.Errorf("leftover mount point %s", filepath.Join(base, e.Name()))
	}

	if len(mountSlot) != 0 {
		t.Error("mount slot still taken")
	}
}

// observedMount is what the hook saw while STATE was mounted by us.
type observedMount struct {
	entry     mountEntry
	writeErr  error
	dirMode   os.FileMode
	sawConfig bool
}

// observeMounts installs afterMountHook for the test: it records the mount
// as mountinfo shows it and tries to write through it.
func observeMounts(t *testing.T) *[]observedMount {
	t.Helper()

	var (
		mu   sync.Mutex
		seen []observedMount
	)

	afterMountHook = func(dir string) {
		var o observedMount

		for _, e := range readMountinfo(t) {
			if e.point == dir {
				o.entry = e.mountEntry
			}
		}

		// The private directory around the mount point (the mount point's
		// own mode is hidden by the mounted root).
		if info, err := os.Lstat(filepath.Dir(dir)); err == nil {
			o.dirMode = info.Mode().Perm()
		}

		_, err := os.Stat(filepath.Join(dir, ConfigFileName))
		o.sawConfig = err == nil
		o.writeErr = os.WriteFile(filepath.Join(dir, "written-by-test"), []byte("x"), 0o600)

		mu.Lock()
		seen = append(seen, o)
		mu.Unlock()
	}

	t.Cleanup(func() { afterMountHook = nil })

	return &seen
}

func hasOptions(options string, want ...string) bool {
	set := strings.Split(options, ",")
	for _, w := range want {
		found := false

		for _, o := range set {
			if o == w {
				found = true
			}
		}

		if !found {
			return false
		}
	}

	return true
}

// checkReadOnlyMount asserts our mount was ro,nosuid,nodev,noexec inside a
// 0700 directory and refused a write; sharedWant says whether the superblock was
// Talos's read-write one (the EBUSY path).
func checkReadOnlyMount(t *testing.T, o observedMount, sharedWant bool) {
	t.Helper()

	if !hasOptions(o.entry.options, "ro", "nosuid", "nodev", "noexec") {
		t.Errorf("mount options %q, want ro,nosuid,nodev,noexec", o.entry.options)
	}

	if o.dirMode != 0o700 {
		t.Errorf("mount point's directory mode %o, want 700", o.dirMode)
	}

	if !errors.Is(o.writeErr, unix.EROFS) {
		t.Errorf("write through our mount: %v, want EROFS", o.writeErr)
	}

	shared := hasOptions(o.entry.superOptions, "rw")
	if shared != sharedWant {
		t.Errorf("superblock options %q: shared read-write superblock = %v, want %v", o.entry.superOptions, shared, sharedWant)
	}
}

func TestStateSourceReadsUnmountedFilesystem(t *testing.T) {
	for _, contract := range []*config.VersionContract{config.TalosVersion1_9, config.TalosVersionCurrent} {
		t.Run(contractName(contract), func(t *testing.T) {
			g := generateConfigs(t, contract)
			dev := newStateDevice(t, g.controlPlane)
			seen := observeMounts(t)
			base := filepath.Join(t.TempDir(), "run")

			// A by-partlabel-style symlink, after a device that is missing.
			link := filepath.Join(t.TempDir(), "STATE")
			if err := os.Symlink(dev, link); err != nil {
				t.Fatal(err)
			}

			src := StateSource{Devices: []string{filepath.Join(t.TempDir(), "absent"), link}, MountBase: base}

			mt, id, err := src.Load(context.Background())
			if err != nil {
				t.Fatal(err)
			}

			if mt != transport.MachineTypeControlPlane {
				t.Errorf("machine type %q, want controlplane", mt)
			}

			issuer, ok := id.(*MachineIdentity)
			if !ok || !bytes.Equal(issuer.ca.Crt, g.bundle.Certs.OS.Crt) || issuer.SideroLinkAPI() != "" {
				t.Errorf("identity %v does not hold the generated OS CA", id)
			}

			if _, err := id.ClientCertificate(); err != nil {
				t.Error(err)
			}

			if len(*seen) != 1 || !(*seen)[0].sawConfig {
				t.Fatalf("observed mounts %+v, want one with config.yaml", *seen)
			}

			checkReadOnlyMount(t, (*seen)[0], false)
			assertNoLeftovers(t, base)

			if m := mountsOf(t, dev); len(m) != 0 {
				t.Errorf("device still mounted: %v", m)
			}
		})
	}
}

// The Talos case: STATE is already mounted read-write (attached at a path on
// v1.6–v1.9, detached on v1.12+). A read-only mount gets EBUSY; the
// fallback must still read the config, read-only, and leave Talos's mount
// as it was.
// Load hands the SideroLinkConfig document's apiUrl on with the identity:
// the daemon stands down on a machine connected to Omni.
func TestStateSourceReportsSideroLink(t *testing.T) {
	const api = "https://omni.example.com?jointoken=secret"

	g := generateConfigs(t, config.TalosVersionCurrent)
	dev := newStateDevice(t, withSideroLink(g.controlPlane, api))

	_, id, err := StateSource{Devices: []string{dev}, MountBase: filepath.Join(t.TempDir(), "run")}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	if m, ok := id.(*MachineIdentity); !ok || m.SideroLinkAPI() != api {
		t.Fatalf("identity %v: want a MachineIdentity naming %s", id, api)
	}
}

func TestStateSourceSharesTalosReadWriteMount(t *testing.T) {
	g := generateConfigs(t, config.TalosVersionCurrent)

	for _, detached := range []bool{false, true} {
		t.Run(fmt.Sprintf("detached=%v", detached), func(t *testing.T) {
			dev := newStateDevice(t, g.controlPlane)
			holder := holdReadWrite(t, dev, detached)

			// The kernel fact the fallback exists for.
			probe := t.TempDir()
			if err := unix.Mount(dev, probe, "xfs", unix.MS_RDONLY, ""); err == nil {
				unix.Unmount(probe, 0) //nolint:errcheck
				t.Fatal("kernel allowed a read-only mount of a filesystem mounted read-write elsewhere; the EBUSY path cannot be exercised here")
			} else if !errors.Is(err, unix.EBUSY) {
				t.Fatalf("read-only mount while held read-write: %v, want EBUSY", err)
			}

			seen := observeMounts(t)
			base := filepath.Join(t.TempDir(), "run")

			cfg, shared, err := readMachineConfig(context.Background(), dev, base, DefaultMaxConfigSize)
			if err != nil {
				t.Fatal(err)
			}

			if !shared || cfg.machineType != transport.MachineTypeControlPlane {
				t.Errorf("shared = %v, type %q; want the EBUSY fallback and controlplane", shared, cfg.machineType)
			}

			mt, _, err := StateSource{Devices: []string{dev}, MountBase: base}.Load(context.Background())
			if err != nil || mt != transport.MachineTypeControlPlane {
				t.Fatalf("Load: %q, %v", mt, err)
			}

			if len(*seen) != 2 {
				t.Fatalf("observed %d mounts, want 2", len(*seen))
			}

			for _, o := range *seen {
				checkReadOnlyMount(t, o, true)
			}

			assertNoLeftovers(t, base)

			if detached {
				if m := mountsOf(t, dev); len(m) != 0 {
					t.Errorf("device mounts left: %v", m)
				}

				return
			}

			// Talos's mount is untouched: still the only one, still writable.
			if m := mountsOf(t, dev); len(m) != 1 || m[0].point != holder || !hasOptions(m[0].options, "rw") {
				t.Errorf("device mounts after reading: %+v, want only the read-write holder", m)
			}

			if err := os.WriteFile(filepath.Join(holder, "talos-still-writes"), nil, 0o600); err != nil {
				t.Errorf("holder no longer writable: %v", err)
			}

			if _, err := os.Stat(filepath.Join(holder, "written-by-test")); err == nil {
				t.Error("a write through our mount reached the filesystem")
			}
		})
	}
}

func TestStateSourceConcurrentLoadsSerialise(t *testing.T) {
	g := generateConfigs(t, config.TalosVersionCurrent)
	dev := newStateDevice(t, g.controlPlane)
	holdReadWrite(t, dev, true)

	base := filepath.Join(t.TempDir(), "run")

	var (
		mu      sync.Mutex
		maxSeen int
	)

	// While one Load holds its mount, count our mounts; linger a little so
	// that loads running in parallel would overlap if they could.
	afterMountHook = func(string) {
		n := 0

		for _, e := range readMountinfo(t) {
			if strings.HasPrefix(e.point, base) {
				n++
			}
		}

		mu.Lock()
		maxSeen = max(maxSeen, n)
		mu.Unlock()

		time.Sleep(20 * time.Millisecond)
	}

	t.Cleanup(func() { afterMountHook = nil })

	var wg sync.WaitGroup

	errs := make(chan error, 8)

	for range 8 {
		wg.Go(func() {
			_, _, err := StateSource{Devices: []string{dev}, MountBase: base}.Load(context.Background())
			errs <- err
		})
	}

	wg.Wait()
	close(errs)

	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	if maxSeen != 1 {
		t.Errorf("%d mounts at once, want 1", maxSeen)
	}

	assertNoLeftovers(t, base)
}

func TestStateSourceCleansUpOnEveryPath(t *testing.T) {
	current := generateConfigs(t, config.TalosVersionCurrent)

	cases := []struct {
		name     string
		content  []byte
		hook     func(cancel context.CancelFunc)
		wantType transport.MachineType
		check    func(t *testing.T, err error)
	}{
		{
			name: "corrupt config", content: []byte("machine: [\n"),
			check: func(t *testing.T, err error) {
				if err == nil || !isPermanent(err) || !strings.Contains(err.Error(), "parse machine config") {
					t.Errorf("err = %v, want a permanent parse error", err)
				}
			},
		},
		{
			name: "worker config", content: current.worker, wantType: transport.MachineTypeWorker,
			check: func(t *testing.T, err error) {
				if err != nil {
					t.Errorf("worker: %v, want a clean worker result", err)
				}
			},
		},
		{
			name: "no config.yaml", content: nil,
			check: func(t *testing.T, err error) {
				if err == nil || isPermanent(err) || !strings.Contains(err.Error(), ConfigFileName) {
					t.Errorf("err = %v, want a retryable error naming %s", err, ConfigFileName)
				}
			},
		},
		{
			name: "oversized config", content: bytes.Repeat([]byte("#"), DefaultMaxConfigSize+1),
			check: func(t *testing.T, err error) {
				if err == nil || !isPermanent(err) || !strings.Contains(err.Error(), "larger than") {
					t.Errorf("err = %v, want a permanent size error", err)
				}
			},
		},
		{
			name: "cancelled while mounted", content: current.controlPlane,
			hook: func(cancel context.CancelFunc) { cancel() },
			check: func(t *testing.T, err error) {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled", err)
				}
			},
		},
		{
			name: "panic while mounted", content: current.controlPlane,
			hook: func(context.CancelFunc) { panic("boom") },
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "panic: boom") {
					t.Errorf("err = %v, want the recovered panic", err)
				}
			},
		},
	}

	for _, shared := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/shared=%v", tc.name, shared), func(t *testing.T) {
				dev := newStateDevice(t, tc.content)
				if shared {
					holdReadWrite(t, dev, false)
				}

				base := filepath.Join(t.TempDir(), "run")
				ctx, cancel := context.WithCancel(context.Background())

				defer cancel()

				if tc.hook != nil {
					afterMountHook = func(string) { tc.hook(cancel) }

					t.Cleanup(func() { afterMountHook = nil })
				}

				mt, err := loadRecovering(ctx, StateSource{Devices: []string{dev}, MountBase: base})

				tc.check(t, err)

				if mt != tc.wantType {
					t.Errorf("machine type %q, want %q", mt, tc.wantType)
				}

				assertNoLeftovers(t, base)

				if m := mountsOf(t, dev); len(m) != map[bool]int{false: 0, true: 1}[shared] {
					t.Errorf("device mounts left: %+v", m)
				}
			})
		}
	}
}

// loadRecovering turns a panic inside Load into an error, so that the test
// can check the cleanup that ran while it unwound.
func loadRecovering(ctx context.Context, src StateSource) (mt transport.MachineType, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()

	mt, _, err = src.Load(ctx)

	return mt, err
}

func TestStateSourceCancelledBeforeMount(t *testing.T) {
	dev := newStateDevice(t, generateConfigs(t, config.TalosVersionCurrent).controlPlane)
	base := filepath.Join(t.TempDir(), "run")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, _, err := StateSource{Devices: []string{dev}, MountBase: base}.Load(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}

	assertNoLeftovers(t, base)
}

// An encrypted STATE: the partition labelled STATE holds a LUKS2 header and
// the filesystem is at /dev/mapper/luks2-STATE.
func TestStateSourceSkipsLUKSContainer(t *testing.T) {
	requireRoot(t, "losetup", "mkfs.xfs")

	img := filepath.Join(t.TempDir(), "luks.img")
	header := make([]byte, 1<<20)
	copy(header, "LUKS\xba\xbe\x00\x02")

	if err := os.WriteFile(img, header, 0o600); err != nil {
		t.Fatal(err)
	}

	luks := newLoopDevice(t, img)
	xfs := newStateDevice(t, generateConfigs(t, config.TalosVersion1_9).controlPlane)
	base := filepath.Join(t.TempDir(), "run")

	mt, _, err := StateSource{Devices: []string{luks, xfs}, MountBase: base}.Load(context.Background())
	if err != nil || mt != transport.MachineTypeControlPlane {
		t.Fatalf("Load: %q, %v; want the filesystem behind the LUKS container", mt, err)
	}

	missing := filepath.Join(t.TempDir(), "luks2-STATE")

	_, _, err = StateSource{Devices: []string{luks, missing}, MountBase: base}.Load(context.Background())
	if err == nil || isPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}

	// Talos v1.7–v1.11 open it as /dev/mapper/<partition>-encrypted: tried too.
	v17name := "/dev/mapper/" + filepath.Base(luks) + "-encrypted"

	for _, want := range []string{luks, "LUKS container", missing, "not found", v17name} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	assertNoLeftovers(t, base)
}

// Needs no root: nothing exists, nothing is mounted.
func TestStateSourceNoDevice(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")

	if err := os.WriteFile(regular, []byte("XFSB"), 0o600); err != nil {
		t.Fatal(err)
	}

	devices := []string{filepath.Join(dir, "by-partlabel", "STATE"), filepath.Join(dir, "mapper", "luks2-STATE"), regular}

	_, _, err := StateSource{Devices: devices, MountBase: filepath.Join(dir, "run")}.Load(context.Background())
	if err == nil || isPermanent(err) {
		t.Fatalf("err = %v, want a retryable error (the device may appear while Talos boots)", err)
	}

	for _, d := range devices {
		if !strings.Contains(err.Error(), d) {
			t.Errorf("error %q does not name %s", err, d)
		}
	}

	if !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("error %q does not say why %s was skipped", err, regular)
	}

	if got := (StateSource{}).Describe(); !strings.Contains(got, DefaultStatePartlabelDevice) || !strings.Contains(got, DefaultStateLUKSDevice) {
		t.Errorf("Describe() = %q, want both default devices", got)
	}
}
