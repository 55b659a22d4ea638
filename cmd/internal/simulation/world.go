package simulation

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// world is one simulated site: machines, links, the Talos model's events
// and the checker's records.
type world struct {
	*sched

	opts  Options
	p     params
	nodes []*tnode
	// aliases are extra addresses in the range that forward to a node's
	// apid (a VIP, a load balancer, NAT): the node answers there too.
	aliases map[netip.Addr]*tnode
	cuts    []cut
	latency map[[2]int]time.Duration

	chk checker
	// bootOwner is the machine of every boot id seen.
	bootOwner map[string]*tnode
	trace     []string
	// daemonLines wait for flushDaemonLines.
	daemonLines []tracedLine
	paths       map[string]int
	hooks       hooks
	// capiDone: the Cluster API provider considers the cluster bootstrapped.
	capiDone bool
	// quietWatch ends a run whose world stopped changing (quiet.go).
	quietWatch quietWatch
}

// hooks let a scenario family act at the moment something happens.
type hooks struct {
	clusterCreated func(m *tnode)
	mounted        func(n *tnode)
	// saved runs in the daemon's goroutine (mu held): it may only register.
	saved func(d *daemonRun, st election.Status)
	// rpc sees each request as it reaches machine m: drop loses it (the
	// caller's deadline answers), hold delays its arrival (a retransmit).
	rpc func(from, m *tnode, method string) (drop bool, hold time.Duration)
}

// cut is a set of directed links that drop everything for a while.
type cut struct {
	from, to time.Duration
	links    map[[2]int]bool
}

func (w *world) inChaos() bool { return w.now < w.p.chaosEnd }

func (w *world) tracef(n *tnode, format string, args ...any) {
	if !w.opts.Trace {
		return
	}

	who, idx := "sim", -1
	if n != nil {
		who, idx = n.String(), n.idx
	}

	line := fmt.Sprintf("%9.3fs %-18s %s", w.now.Seconds(), who, fmt.Sprintf(format, args...))

	if !w.stepping {
		// A daemon goroutine: others woken in the same step run in
		// parallel, so their lines wait to be put in machine order. A
		// line of no machine (the checker's verdict on what a daemon
		// just did) goes after the lines that led to it.
		if n == nil {
			idx = math.MaxInt
		}

		w.daemonLines = append(w.daemonLines, tracedLine{idx: idx, line: line})

		return
	}

	w.trace = append(w.trace, line)
}

// tracedLine is a line a daemon goroutine wrote, and its machine.
type tracedLine struct {
	idx  int
	line string
}

// flushDaemonLines appends the lines the daemons wrote during the last
// step, by machine: the order in which parallel goroutines took the lock
// is not the seed's. One machine's lines keep their order.
func (w *world) flushDaemonLines() {
	if len(w.daemonLines) == 0 {
		return
	}

	slices.SortStableFunc(w.daemonLines, func(a, b tracedLine) int {
		if a.idx == math.MaxInt && b.idx == math.MaxInt {
			return strings.Compare(a.line, b.line) // the checker's, from two daemons
		}

		return cmp.Compare(a.idx, b.idx)
	})

	for _, l := range w.daemonLines {
		w.trace = append(w.trace, l.line)
	}

	w.daemonLines = w.daemonLines[:0]
}

func (w *world) path(name string) { w.paths[name]++ }

// nodeAt is the machine answering at addr now (nil when nobody does).
func (w *world) nodeAt(addr netip.Addr) *tnode {
	if n, ok := w.aliases[addr]; ok {
		return n
	}

	for _, n := range w.nodes {
		if n.ip == addr {
			return n
		}
	}

	return nil
}

// reachable: a can open connections to b now. Cuts are directed, as a
// stateful firewall is: the answer on a connection a opened comes back even
// when b could not reach a by itself. etcd needs both directions.
func (w *world) reachable(a, b *tnode) bool {
	if !a.up || !b.up {
		return false
	}

	for _, c := range w.cuts {
		if w.now >= c.from && w.now < c.to && c.links[[2]int{a.idx, b.idx}] {
			return false
		}
	}

	return true
}

func (w *world) delay(a, b *tnode) time.Duration {
	if a == b {
		return 100 * time.Microsecond
	}

	return w.latency[[2]int{a.idx, b.idx}]
}

// lost: one RPC of the chaos period is dropped.
func (w *world) lost() bool { return w.inChaos() && w.chance(w.p.loss) }

// boot starts a machine: apid early, /var later, then etcd and the daemon.
func (w *world) boot(n *tnode) {
	n.boots++
	n.up = true
	n.bootID = fmt.Sprintf("%02d-%d-%08x", n.idx, n.boots, w.rng.Uint32())
	w.bootOwner[n.bootID] = n
	n.bootAt = w.now
	n.synced, n.apidUp, n.varMounted, n.services, n.etcdMounted = false, false, false, false, false
	n.pending, n.joining, n.healthy, n.etcd, n.etcdMsg, n.bootstrap, n.stopping = nil, false, false, "", "", 0, false
	boots := n.boots
	alive := func() bool { return n.up && n.boots == boots && !n.stopping }

	w.tracef(n, "boot %s (cp=%v foreign=%v data=%d offset=%s)", n.bootID, n.cp, n.foreign, n.data, n.offset)

	if n.foreign {
		n.apidUp, n.synced = true, true

		return
	}

	if !n.neverSync {
		syncAt := w.dur(time.Second, 30*time.Second)
		if w.chance(w.p.lateSync) {
			syncAt = w.dur(time.Minute, 4*time.Minute)
		}

		w.at(syncAt, func() {
			if alive() {
				n.synced = true
				n.offset = 0 // Talos steps the clock at the first sync: boot time moves
				w.tracef(n, "time synced")
			}
		})
	}

	apidAt := w.dur(time.Second, 10*time.Second)
	w.at(apidAt, func() {
		if alive() {
			n.apidUp = true
		}
	})

	if !n.cp {
		return
	}

	// The pre-mount window: seconds normally, minutes with a network KMS,
	// a TPM unlock, a repair or a resize.
	window := w.dur(0, 5*time.Second)
	if w.chance(w.p.slowMount) {
		window = w.dur(20*time.Second, 3*time.Minute)
	}

	if n.mountWindow != nil {
		window = n.mountWindow()
	}

	n.mountAt = w.now + apidAt + window
	w.at(apidAt+window, func() {
		if !alive() {
			return
		}

		n.varMounted = true
		w.tracef(n, "/var mounted (data=%d, status file=%v)", n.data, n.storage().status() != nil)

		if w.hooks.mounted != nil {
			w.hooks.mounted(n)
		}

		// Talos starts extension services from a controller, each once its
		// own dependencies hold (containerd, apid, network, its
		// configuration), not at StartAllServices; it can create the
		// daemon's /var mount only once EPHEMERAL is mounted. So the daemon
		// may run before the ETCD volume is mounted and etcd is loaded.
		if w.chance(0.5) {
			w.at(w.dur(0, 2*time.Second), func() {
				if alive() && n.daemon == nil {
					w.path("daemon started before StartAllServices")
					w.startDaemon(n)
				}
			})
		}

		// Talos mounts every volume before StartAllServices: an ETCD volume
		// (KMS, TPM, repair) holds etcd back.
		volumeAt := time.Duration(0)
		if n.etcdVolume {
			volumeAt = w.dur(0, 5*time.Second)
			if w.chance(w.p.slowMount) {
				volumeAt = w.dur(20*time.Second, 2*time.Minute)
			}

			if n.etcdVolumeWindow != nil {
				volumeAt = n.etcdVolumeWindow()
			}
		}

		w.at(volumeAt, func() {
			if !alive() {
				return
			}

			if n.etcdVolume {
				n.etcdMounted, n.etcdMountPoint = true, true
				w.tracef(n, "ETCD volume mounted (data=%d)", n.data)
			}
			w.at(w.dur(0, 3*time.Second), func() {
				if !alive() {
					return
				}

				n.services = true
				n.etcd = "Preparing"

				if n.init && n.data == 0 {
					// Talos's StartAllServices on an init node: etcd in
					// bootstrap mode, no Bootstrap call, once its image is
					// pulled (seconds, or minutes).
					w.at(n.initPull, func() {
						if alive() && n.data == 0 && n.pending == nil {
							w.accept(n, "init node")
						}
					})
				}

				if n.data != 0 {
					w.at(cmp.Or(n.etcdRunAfter, 2*time.Second), func() {
						if alive() && n.data != 0 && n.etcd != "" {
							n.etcd, n.healthy = "Running", true
						}
					})
				}

				w.etcdLoop(n, boots)
				w.at(w.dur(0, 5*time.Second), func() {
					if alive() && n.daemon == nil {
						w.startDaemon(n)
					}
				})
			})
		})
	})
}

// etcdLoop is a control-plane node's etcd waiting to join: once a member
// it can reach runs, it joins after seconds to minutes.
func (w *world) etcdLoop(n *tnode, boots int) {
	w.at(etcdLoop, func() {
		if !n.up || n.boots != boots {
			return
		}

		// An init node's etcd starts in bootstrap mode: it founds, never joins.
		if n.data == 0 && n.pending == nil && !n.joining && n.etcd == "Preparing" && !n.init {
			for _, m := range w.nodes {
				if m != n && m.cp && m.healthy && m.data != 0 && w.reachable(n, m) && w.reachable(m, n) {
					n.joining = true
					cluster := m.data

					w.at(w.dur(time.Second, w.p.joinMax), func() {
						n.joining = false

						// Joining needs a member of that cluster to answer.
						if n.up && n.boots == boots && !n.stopping && n.data == 0 && n.pending == nil && w.memberReachable(n, cluster) {
							n.data, n.etcd, n.healthy = cluster, "Running", true
							w.tracef(n, "etcd joined cluster %d", cluster)
						}
					})

					break
				}
			}
		}

		w.etcdLoop(n, boots)
	})
}

// memberReachable: a healthy member of cluster talks with n.
func (w *world) memberReachable(n *tnode, cluster int) bool {
	for _, m := range w.nodes {
		if m != n && m.healthy && m.data == cluster && w.reachable(n, m) && w.reachable(m, n) {
			return true
		}
	}

	return false
}

// reboot takes the machine down (the in-memory Bootstrap request dies) and
// boots it again, maybe at another address (DHCP) and clock error.
func (w *world) reboot(n *tnode, why string) {
	if !n.up || n.stopping {
		return
	}

	if n.services && w.chance(0.5) {
		w.shutdown(n, why)

		return
	}

	w.down(n, why)
}

// shutdown is Talos's reboot sequence: the services that depend on cri
// stop first (etcd, and with it a pending Bootstrap, which lived in
// memory), volumes are unmounted, and apid and extension services, this
// daemon among them, stop last. For those seconds etcd shows Finished,
// since v1.14 also when it never ran (it still waited to join), and the
// daemon still runs, its own data directory gone.
func (w *world) shutdown(n *tnode, why string) {
	w.tracef(n, "reboot sequence: %s: services stop, apid and the daemon a few seconds more (etcd was %q)", why, n.etcd)
	w.path("graceful reboot: etcd Finished while apid answers")
	stopServices(n)

	// Talos's reboot and upgrade sequences unmount the ETCD volume, then
	// EPHEMERAL, after the services stopped and before apid stops: for a
	// moment apid lists an empty /var/lib/etcd on a node holding data.
	boots := n.boots
	w.at(w.dur(100*time.Millisecond, 1500*time.Millisecond), func() { w.unmount(n, boots) })
	w.at(w.dur(2*time.Second, 8*time.Second), func() {
		if n.up && n.boots == boots {
			w.down(n, why)
		}
	})
}

// stopServices is the first step of a reboot or upgrade sequence: the
// services that depend on cri stop (etcd, and with it a pending Bootstrap);
// apid and extension services stay.
func stopServices(n *tnode) {
	n.stopping, n.services, n.pending, n.joining = true, false, nil, false

	if n.etcd != "" {
		n.etcd, n.etcdMsg, n.healthy = "Finished", "Service finished successfully", false
	}
}

// upgrade is Talos's upgrade sequence: a reboot's, but the installer runs
// between the unmounts and the reboot, so apid and the daemon answer on for
// tens of seconds with /var gone. installed runs just before the reboot.
func (w *world) upgrade(n *tnode, why string, unmountAfter time.Duration, installed func()) {
	w.tracef(n, "upgrade: %s: services stop, the ETCD volume and /var unmount, the installer runs (etcd was %q)", why, n.etcd)
	stopServices(n)

	boots := n.boots
	w.at(unmountAfter, func() { w.unmount(n, boots) })
	w.at(w.dur(30*time.Second, 60*time.Second), func() {
		if n.up && n.boots == boots {
			if installed != nil {
				installed()
			}

			w.down(n, "upgrade installed")
		}
	})
}

// unmount takes the ETCD volume and /var away in a reboot sequence, while
// apid still answers.
func (w *world) unmount(n *tnode, boots int) {
	if !n.up || n.boots != boots || !n.varMounted {
		return
	}

	n.etcdMounted, n.varMounted = false, false
	w.tracef(n, "reboot sequence: ETCD volume and /var unmounted, apid answers on")
}

// down takes the machine off and boots it again a little later.
func (w *world) down(n *tnode, why string) {
	w.tracef(n, "reboot: %s (bootstrap pending: %v)", why, n.pending != nil)

	if n.pending != nil {
		w.path("reboot with a pending bootstrap request")
	}

	w.kill(n)
	w.chk.bootEnded(n)
	n.up = false
	n.pending = nil
	n.etcd, n.healthy = "", false

	w.at(w.dur(5*time.Second, 30*time.Second), func() {
		if w.chance(w.p.ipChange) {
			n.ip = w.freeAddr()
			w.path("address changed across a reboot")
			w.tracef(n, "comes back at a new address")
		}

		n.offset = []time.Duration{0, 40 * time.Second, -40 * time.Second}[w.rng.IntN(3)]
		w.boot(n)
	})
}

// resetEphemeral is `talosctl reset --system-labels-to-wipe EPHEMERAL`:
// /var is wiped (etcd data and the status file), the node keeps its config
// and reboots.
func (w *world) resetEphemeral(n *tnode) {
	if !n.up {
		return
	}

	w.tracef(n, "reset EPHEMERAL (data=%d)", n.data)
	w.path("EPHEMERAL reset")
	w.kill(n)
	n.storage().wipe()
	w.chk.diskReverted(n)
	n.data, n.wasReset, n.etcdMountPoint = 0, true, false
	n.pending, n.etcd, n.healthy = nil, "", false
	n.up = false
	w.at(w.dur(5*time.Second, 30*time.Second), func() { w.boot(n) })
}

func (w *world) freeAddr() netip.Addr {
	for {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(2 + w.rng.IntN(250))})
		if w.nodeAt(a) == nil {
			return a
		}
	}
}

// members lists the control-plane nodes holding data of cluster id.
func (w *world) members(id int) []string {
	var out []string

	for _, o := range w.nodes {
		if o.cp && id != 0 && o.data == id {
			out = append(out, o.ip.String())
		}
	}

	return out
}
