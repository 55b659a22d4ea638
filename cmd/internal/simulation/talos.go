package simulation

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// The Talos model, after machined's sequencer and Bootstrap handler
// (siderolabs/talos v1.13, see ../../../shared/TALOS-FACTS.md):
//   - apid starts among the early services and answers (boot id, boot time,
//     machine type) while /var is still the root filesystem's empty
//     directory: reads of /var files are NotFound, List /var/lib/etcd is
//     Unknown "lstat ...: no such file or directory", there is no etcd
//     service, and Bootstrap is "not available yet";
//   - EPHEMERAL mounts after a window of seconds, sometimes minutes; only
//     then do etcd and the extension services (this daemon) start;
//   - Bootstrap checks readiness, machine type, time sync (waiting 5 s),
//     an empty /var/lib/etcd, then restarts etcd in bootstrap mode: the
//     request lives in memory, the data directory fills seconds to minutes
//     after the reply, and a repeat while it is still empty is the same
//     cluster;
//   - a control-plane node whose etcd waits joins a reachable member after
//     seconds to minutes (endpoints come from discovery or Kubernetes);
//   - boot time is wall clock minus uptime, so it moves when time first
//     syncs (the clock is stepped) or is stepped later.

// Fixed model constants.
const (
	timeSyncWait = 5 * time.Second // Bootstrap waits this long for time sync
	etcdLoop     = 3 * time.Second // a waiting etcd looks for a member this often
	apidPort     = 50000
)

// tnode is one machine.
type tnode struct {
	idx     int
	cp      bool
	foreign bool // another cluster's CA (or maintenance mode): fails the CA check
	init    bool // machine type init: Talos founds etcd here by itself
	omni    bool // connected to Omni (SideroLink): Omni bootstraps its cluster
	// lateBootstrapCrash: a Bootstrap boundary after the chaos crashed
	// this node once already; it does not again, so the scenario settles.
	lateBootstrapCrash bool
	// initPull is how long an init node's etcd image takes to pull.
	initPull time.Duration
	ip       netip.Addr
	quorum   int // its QUORUM_NODES

	up         bool
	boots      int
	bootID     string
	bootAt     time.Duration
	offset     time.Duration // clock error; stepped to 0 at time sync
	synced     bool
	neverSync  bool
	apidUp     bool
	varMounted bool
	mountAt    time.Duration // when this boot's /var mounts
	// etcdVolume: /var/lib/etcd is its own volume (v1.14), mounted after
	// /var; until then it is the bare mount point, created at the first
	// mount and never removed: an empty directory from the second boot on.
	etcdVolume     bool
	etcdMounted    bool
	etcdMountPoint bool
	services       bool // StartAllServices ran: etcd service exists, Bootstrap available

	// Disk: /var survives reboots, a reset of EPHEMERAL wipes it.
	disk     *disk
	badDisk  []window // when its writes fail (the seed's storage faults)
	data     int      // /var/lib/etcd: 0 empty, else the cluster ID
	wasReset bool     // EPHEMERAL was reset at least once

	etcd      string // etcd service state, "" when absent
	etcdMsg   string // its last event's message
	stopping  bool   // Talos's reboot sequence: services stopped, apid still answers
	healthy   bool
	pending   *pendingBootstrap
	joining   bool
	bootstrap int // Bootstrap requests machined accepted in this boot

	daemon *daemonRun
	runs   int
	inv    record // the invariant checker's memory of this machine

	// Set by scenario families: a fixed pre-mount window, and machined
	// answering "time is not in sync yet" until a moment.
	mountWindow func() time.Duration
	// etcdVolumeWindow: a fixed delay of the ETCD volume after /var.
	etcdVolumeWindow func() time.Duration
	// etcdRunAfter: how long etcd with data stays Preparing after the
	// services start (0: two seconds).
	etcdRunAfter    time.Duration
	refuseSyncUntil time.Duration
	// crashAfterBootstrap: the next answer to this node's Bootstrap kills
	// its daemon before it is recorded, then runs.
	crashAfterBootstrap func()
	// failDirSyncUntil: directory fsyncs fail with EIO until then.
	failDirSyncUntil time.Duration
}

type pendingBootstrap struct {
	bootID string
	fillAt time.Duration
}

// storage is the node's /var/lib/kommodity-autobootstrap.
func (n *tnode) storage() *disk {
	if n.disk == nil {
		n.disk = newDisk()
	}

	return n.disk
}

// etcdVisible: /var/lib/etcd shows its data (/var and, on a node with its
// own ETCD volume, that volume are mounted).
// ownStatusReadable: peers read a status file this boot's daemon wrote.
func (n *tnode) ownStatusReadable() bool {
	return n.varMounted && strings.Contains(string(n.storage().status()), n.bootID)
}

func (n *tnode) etcdVisible() bool { return n.varMounted && (!n.etcdVolume || n.etcdMounted) }

func (n *tnode) String() string { return fmt.Sprintf("n%d(%s)", n.idx, n.ip) }

func (n *tnode) wall(now time.Duration) time.Time { return epoch.Add(now + n.offset) }

// bootTime is kernel btime as SystemStat reports it: whole seconds of wall
// clock minus uptime.
func (n *tnode) bootTime() time.Time {
	return epoch.Add(n.bootAt + n.offset).Truncate(time.Second)
}

func (n *tnode) bootTimeUnix() int64 { return n.bootTime().Unix() }
