package simulation

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
)

// disk is a node's /var/lib/kommodity-autobootstrap as the kernel keeps
// it: the names and bytes that readers (apid, the daemon) see, which a
// process kill leaves alone, and what a power loss leaves: the names as of
// the last directory fsync, each file holding only its fsynced bytes.
type disk struct {
	names   map[string]*inode
	durable map[string]*inode
	seq     int
	// gen counts the operations that may have changed a name or bytes;
	// status() keeps its answer until it moves (the invariant checker
	// reads every node's status file after every event).
	gen       uint64
	statusGen uint64
	statusNow []byte
}

type inode struct {
	data   []byte
	synced []byte
}

func newDisk() *disk { return &disk{names: map[string]*inode{}, durable: map[string]*inode{}} }

// read is what a reader sees under name now.
func (k *disk) read(name string) ([]byte, bool) {
	i, ok := k.names[name]
	if !ok {
		return nil, false
	}

	return i.data, true
}

// status is status.json as apid serves it.
func (k *disk) status() []byte {
	if k.statusGen != k.gen+1 {
		k.statusNow, _ = k.read(statusfile.FileName)
		k.statusGen = k.gen + 1
	}

	return k.statusNow
}

// place writes a file durably (a scenario's file from an earlier release).
func (k *disk) place(name string, data []byte) {
	i := &inode{data: data, synced: data}
	k.names[name], k.durable[name] = i, i
	k.gen++
}

// wipe is a reset of EPHEMERAL.
func (k *disk) wipe() {
	k.names, k.durable = map[string]*inode{}, map[string]*inode{}
	k.gen++
}

// powerLoss keeps only what was durable: unsynced bytes are gone, and so
// are the renames (and creations) no directory fsync made durable.
func (k *disk) powerLoss() {
	k.names = map[string]*inode{}
	k.gen++

	for name, i := range k.durable {
		i.data = i.synced
		k.names[name] = i
	}
}

// Storage fault kinds a seed may switch on (swarm testing: each seed picks
// a random subset, so that rare combinations are explored).
const (
	faultENOSPCWrite   = "ENOSPC on write"
	faultEIOWrite      = "EIO on write"
	faultENOSPCFsync   = "ENOSPC on fsync"
	faultEIOFsync      = "EIO on fsync"
	faultENOSPCRename  = "ENOSPC on rename"
	faultEIORename     = "EIO on rename"
	faultENOSPCDirSync = "ENOSPC on directory fsync"
	faultEIODirSync    = "EIO on directory fsync"
	faultReadOnly      = "read-only /var"
	faultKill          = "process kill at an effect boundary"
	faultPowerLoss     = "power loss at an effect boundary"
)

var faultKinds = []string{
	faultENOSPCWrite, faultEIOWrite, faultENOSPCFsync, faultEIOFsync, faultENOSPCRename, faultEIORename,
	faultENOSPCDirSync, faultEIODirSync, faultReadOnly, faultKill, faultPowerLoss,
}

// storageFaults is one seed's choice: the kinds switched on, how often an
// operation fails inside a bad-disk window, and how often an effect
// boundary (a file operation, an RPC leaving or its answer arriving)
// crashes the daemon.
type storageFaults struct {
	on        map[string]bool
	opRate    float64
	crashRate float64
}

// bootstrapCrashRate is how often a Bootstrap boundary (the RPC leaving,
// its answer arriving) crashes the daemon: twenty times a file operation's
// rate. A node sends Bootstrap once or twice per scenario, against dozens
// of file operations, yet a crash there is the one that can lose a send
// machined accepted; at the file rate, 1 scenario in 10,000 reached it.
func (f storageFaults) bootstrapCrashRate() float64 { return 20 * f.crashRate }

func (f storageFaults) kinds() []string {
	var out []string

	for _, k := range faultKinds {
		if f.on[k] {
			out = append(out, k)
		}
	}

	return out
}

// drawStorageFaults switches on a random subset of the fault kinds.
func (w *world) drawStorageFaults() storageFaults {
	f := storageFaults{on: map[string]bool{}}

	if !w.chance(0.5) {
		return f
	}

	for _, k := range faultKinds {
		if w.chance(0.3) {
			f.on[k] = true
		}
	}

	f.opRate = []float64{0.05, 0.2, 0.5}[w.rng.IntN(3)]
	f.crashRate = []float64{0.005, 0.02}[w.rng.IntN(2)]

	return f
}

// badDiskWindows gives a control-plane node a minute or so of failing
// writes during the chaos, when a write fault kind is on.
func (w *world) badDiskWindows(n *tnode) {
	f := w.p.disk
	if len(f.on) == 0 || w.p.chaosEnd < 30*time.Second {
		return
	}

	for range w.rng.IntN(3) {
		from := w.dur(0, w.p.chaosEnd-20*time.Second)
		n.badDisk = append(n.badDisk, window{from: from, to: min(from+w.dur(5*time.Second, 90*time.Second), w.p.chaosEnd)})
	}
}

type window struct{ from, to time.Duration }

func (n *tnode) diskBad(now time.Duration) bool {
	for _, b := range n.badDisk {
		if now >= b.from && now < b.to {
			return true
		}
	}

	return false
}

// diskFS is the daemon run's view of its node's disk: statusfile.Store
// runs on it unchanged. Every call takes the world's lock; a dead process
// touches nothing.
type diskFS struct {
	w   *world
	d   *daemonRun
	rng *rand.Rand // the run's own: drawn only from its main goroutine
}

var _ statusfile.FS = (*diskFS)(nil)

var errProcessGone = errors.New("simulation: the process is gone")

// op runs one file operation under the world's lock: maybe a crash before
// it, maybe an injected error instead of it, maybe a crash after it.
func (f *diskFS) op(kind string, fn func(k *disk) error) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()

	if f.d.dead {
		return errProcessGone
	}

	if f.crashHere(kind, "before") {
		return errProcessGone
	}

	if err := f.fault(kind); err != nil {
		w.path("storage fault: " + kind + ": " + err.Error())
		w.tracef(f.d.node, "disk: %s fails: %v", kind, err)

		return &fs.PathError{Op: kind, Path: statusfile.DefaultDir, Err: err}
	}

	k := f.d.node.disk
	if kind != "read" && kind != "glob" {
		k.gen++
	}

	if err := fn(k); err != nil {
		return err
	}

	if f.crashHere(kind, "after") {
		return errProcessGone
	}

	return nil
}

// fault is the error a bad disk answers to an operation of this kind.
func (f *diskFS) fault(kind string) error {
	w, n := f.w, f.d.node
	on := w.p.disk.on

	if kind == "syncdir" && w.now < n.failDirSyncUntil {
		return syscall.EIO
	}

	if kind == "read" || kind == "glob" || !n.diskBad(w.now) {
		return nil
	}

	if on[faultReadOnly] {
		return syscall.EROFS
	}

	var errs []syscall.Errno

	add := func(k string, e syscall.Errno) {
		if on[k] {
			errs = append(errs, e)
		}
	}

	switch kind {
	case "write", "create":
		add(faultENOSPCWrite, syscall.ENOSPC)
		add(faultEIOWrite, syscall.EIO)
	case "fsync":
		add(faultENOSPCFsync, syscall.ENOSPC)
		add(faultEIOFsync, syscall.EIO)
	case "rename":
		add(faultENOSPCRename, syscall.ENOSPC)
		add(faultEIORename, syscall.EIO)
	case "syncdir":
		add(faultENOSPCDirSync, syscall.ENOSPC)
		add(faultEIODirSync, syscall.EIO)
	}

	if len(errs) == 0 || f.rng.Float64() >= w.p.disk.opRate {
		return nil
	}

	return errs[f.rng.IntN(len(errs))]
}

// crashHere ends the process at this boundary, by a kill or a power loss,
// when the seed says so (during the chaos only).
func (f *diskFS) crashHere(kind, when string) bool {
	if !f.w.inChaos() || f.w.p.disk.crashRate == 0 {
		return false // as crashPoint would, without building its label
	}

	return f.w.crashPoint(f.d, f.rng, when+" "+kind, f.w.p.disk.crashRate)
}

// crashPoint is one effect boundary of run d (mu held): with the seed's
// rate it kills the process or cuts the machine's power, during the chaos.
func (w *world) crashPoint(d *daemonRun, rng *rand.Rand, where string, rate float64) bool {
	f := w.p.disk
	if !w.inChaos() || rate == 0 || (!f.on[faultKill] && !f.on[faultPowerLoss]) || rng.Float64() >= rate {
		return false
	}

	w.crashAt(d, rng, where)

	return true
}

// crashAt kills run d's process or cuts its machine's power, as the
// scenario's fault kinds allow (mu held).
func (w *world) crashAt(d *daemonRun, rng *rand.Rand, where string) {
	f := w.p.disk
	if f.on[faultPowerLoss] && (!f.on[faultKill] || rng.IntN(2) == 0) {
		w.path("power loss at an effect boundary")
		w.powerLoss(d.node, where)
	} else {
		w.path("process kill at an effect boundary")
		w.crash(d.node, where)
	}
}

// bootstrapCrashPoint is a Bootstrap boundary (mu held). Unlike the other
// boundaries it may also crash once per node after the chaos, when most
// Bootstrap calls are made: a power loss just after a send is an ordinary
// event on a real machine, not only a fault of a chaotic start.
func (w *world) bootstrapCrashPoint(d *daemonRun, rng *rand.Rand, where string) bool {
	f := w.p.disk
	if !f.on[faultKill] && !f.on[faultPowerLoss] {
		return false
	}

	late := !w.inChaos()
	if late && d.node.lateBootstrapCrash || rng.Float64() >= f.bootstrapCrashRate() {
		return false
	}

	d.node.lateBootstrapCrash = d.node.lateBootstrapCrash || late
	w.crashAt(d, rng, where)

	return true
}

// bootstrapCrash is the effect boundary before a Bootstrap leaves (the
// daemon's goroutine).
func (w *world) bootstrapCrash(d *daemonRun, rng *rand.Rand, where string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()

	if d.dead {
		return true
	}

	return w.bootstrapCrashPoint(d, rng, where)
}

// powerLoss cuts a machine's power: the disk keeps only what was durable,
// and the machine boots again.
func (w *world) powerLoss(n *tnode, where string) {
	if !n.up {
		return
	}

	w.tracef(n, "power loss %s", where)
	n.disk.powerLoss()
	w.chk.diskReverted(n)
	w.down(n, "power loss "+where)
}

func (f *diskFS) MkdirAll(string) error { return f.op("mkdir", func(*disk) error { return nil }) }

func (f *diskFS) CreateTemp(_, pattern string) (statusfile.File, error) {
	var name string

	err := f.op("create", func(k *disk) error {
		k.seq++
		name = strings.Replace(pattern, "*", fmt.Sprint(k.seq), 1)
		k.names[name] = &inode{}

		return nil
	})
	if err != nil {
		return nil, err
	}

	return &diskFile{f: f, name: name}, nil
}

func (f *diskFS) Rename(from, to string) error {
	from, to = path.Base(from), path.Base(to)

	return f.op("rename", func(k *disk) error {
		i, ok := k.names[from]
		if !ok {
			return &fs.PathError{Op: "rename", Path: from, Err: fs.ErrNotExist}
		}

		delete(k.names, from)
		k.names[to] = i

		if to == statusfile.FileName {
			f.w.chk.published(f.w, f.d, i.data)
		}

		return nil
	})
}

func (f *diskFS) Remove(name string) error {
	name = path.Base(name)

	return f.op("remove", func(k *disk) error {
		if _, ok := k.names[name]; !ok {
			return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
		}

		delete(k.names, name)

		return nil
	})
}

func (f *diskFS) ReadFile(name string) ([]byte, error) {
	var data []byte

	name = path.Base(name)
	err := f.op("read", func(k *disk) error {
		// Only Load reads the file: the run acts on nothing until it
		// adopts the status it loads (Connect derives it from the file).
		f.d.adopted = nil

		d, ok := k.read(name)
		if !ok {
			return &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}

		data = slices.Clone(d)

		return nil
	})

	return data, err
}

func (f *diskFS) Glob(pattern string) ([]string, error) {
	var out []string

	dir, pat := path.Split(pattern)
	err := f.op("glob", func(k *disk) error {
		for name := range k.names {
			if ok, _ := path.Match(pat, name); ok {
				out = append(out, dir+name)
			}
		}

		return nil
	})
	slices.Sort(out)

	return out, err
}

func (f *diskFS) SyncDir(string) error {
	return f.op("syncdir", func(k *disk) error {
		k.durable = map[string]*inode{}
		for name, i := range k.names {
			k.durable[name] = i
		}

		return nil
	})
}

// diskFile is a temporary file being written.
type diskFile struct {
	f    *diskFS
	name string
}

func (x *diskFile) Name() string { return statusfile.DefaultDir + "/" + x.name }

func (x *diskFile) Write(p []byte) (int, error) {
	err := x.f.op("write", func(k *disk) error {
		i, ok := k.names[x.name]
		if !ok {
			return &fs.PathError{Op: "write", Path: x.name, Err: fs.ErrNotExist}
		}

		i.data = append(slices.Clip(i.data), p...)

		return nil
	})
	if err != nil {
		return 0, err
	}

	return len(p), nil
}

func (x *diskFile) Sync() error {
	return x.f.op("fsync", func(k *disk) error {
		if i, ok := k.names[x.name]; ok {
			i.synced = i.data
		}

		return nil
	})
}

func (x *diskFile) Close() error { return nil }
