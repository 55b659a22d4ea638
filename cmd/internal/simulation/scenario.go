package simulation

import (
	"fmt"
	"strings"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"net/netip"
	"time"
)

// params are one seed's scenario.
type params struct {
	nCP, nWorkers     int
	quorum            int
	mixedQuorum       bool // one node runs with QUORUM_NODES missing (1)
	cfg               daemonConfig
	chaosEnd          time.Duration
	loss, replyLoss   float64
	crashRate         float64
	syncFlap          float64
	lateSync          float64
	slowMount         float64
	etcdVolume        float64 // chance a node's /var/lib/etcd is its own ETCD volume (Talos v1.14)
	slowPull          float64 // chance an accepted Bootstrap's data fills only after the resend wait
	ipChange          float64
	preBootstrapped   bool
	neverSync         bool
	rebootAfterAccept float64
	fillMax, joinMax  time.Duration
	aliases           int
	resets            bool
	disk              storageFaults
	initNode          bool // one control-plane node is of machine type init
	capi              bool // the Cluster API provider bootstraps too
}

func (w *world) setup() {
	p := &w.p
	p.nCP = 1 + w.rng.IntN(7)
	p.nWorkers = w.rng.IntN(3)
	majority := p.nCP/2 + 1
	p.quorum = majority + w.rng.IntN(p.nCP-majority+1)
	p.mixedQuorum = p.nCP >= 3 && w.chance(0.1)
	p.cfg = daemonConfig{
		Quorum:                p.quorum,
		ScanInterval:          w.dur(5*time.Second, 30*time.Second),
		ScanTimeout:           2 * time.Second,
		FollowerCheckInterval: w.dur(3*time.Second, 15*time.Second),
		PreBootstrapDelay:     w.dur(5*time.Second, 30*time.Second),
		MaxBackoff:            w.dur(10*time.Second, 2*time.Minute),
	}
	p.fillMax = w.dur(time.Second, 90*time.Second)
	p.joinMax = w.dur(2*time.Second, []time.Duration{20 * time.Second, 5 * time.Minute}[w.rng.IntN(2)])
	// Longer than any data directory takes to fill here, as the daemon's
	// 5 minutes are longer than an etcd image pull.
	p.cfg.EtcdWait = 2*p.fillMax + 30*time.Second
	p.cfg.LeaderOrder = []election.LeaderOrder{election.OrderBootTime, election.OrderAddress}[w.rng.IntN(2)]
	p.chaosEnd = w.dur(60*time.Second, 400*time.Second)
	p.loss = []float64{0, 0.02, 0.1, 0.3}[w.rng.IntN(4)]
	p.replyLoss = []float64{0, 0.3, 0.7}[w.rng.IntN(3)]
	p.crashRate = []float64{0, 0.01, 0.05}[w.rng.IntN(3)]
	p.syncFlap = []float64{0, 0.15}[w.rng.IntN(2)]
	p.lateSync = []float64{0, 0.2}[w.rng.IntN(2)]
	p.slowMount = []float64{0, 0.1, 0.5}[w.rng.IntN(3)]
	p.ipChange = []float64{0, 0.5}[w.rng.IntN(2)]
	p.rebootAfterAccept = []float64{0, 0.3}[w.rng.IntN(2)]
	p.preBootstrapped = w.chance(0.1)
	p.neverSync = p.nCP >= 3 && w.chance(0.1)
	p.aliases = w.rng.IntN(3)
	p.resets = w.chance(0.2)
	p.etcdVolume = []float64{0, 0.5}[w.rng.IntN(2)]
	p.slowPull = []float64{0, 0.3}[w.rng.IntN(2)]
	p.disk = w.drawStorageFaults()

	// Addresses in random order, so that numeric and string order differ.
	hosts := w.rng.Perm(250)
	total := p.nCP + p.nWorkers + 1

	for i := range total {
		n := &tnode{idx: i, ip: netip.AddrFrom4([4]byte{198, 18, 0, byte(hosts[i] + 2)}), cp: i < p.nCP, quorum: p.quorum}
		n.foreign = i == total-1 // another cluster's node (other CA), up from the start
		n.etcdVolume = n.cp && w.chance(p.etcdVolume)
		w.nodes = append(w.nodes, n)
	}

	// A Talos init node founds etcd by itself. QUORUM_NODES is then the
	// number of control-plane nodes, as the README asks, so that no quorum
	// forms before the init node is seen.
	p.initNode = p.nCP >= 2 && !p.preBootstrapped && !p.mixedQuorum && w.chance(0.1)
	if p.initNode {
		n := w.nodes[w.rng.IntN(p.nCP)]
		n.init, n.initPull = true, w.dur(time.Second, 3*time.Minute)
		p.quorum, p.cfg.Quorum = p.nCP, p.nCP

		for _, m := range w.nodes {
			m.quorum = p.nCP
		}
	}

	// The Cluster API provider beside the daemons, as the parent project
	// deploys it: the shipped order (address) and QUORUM_NODES = replicas.
	p.capi = !p.initNode && !p.preBootstrapped && !p.mixedQuorum && p.cfg.LeaderOrder == election.OrderAddress && w.chance(0.2)
	if p.capi {
		// No DHCP moves beside the provider: a node that reboots onto a
		// lower address while the provider's accepted Bootstrap still
		// pulls its image is invisible to the daemons, which then pick
		// that node (a known limitation, see the README).
		p.ipChange = 0
		p.quorum, p.cfg.Quorum = p.nCP, p.nCP

		for _, m := range w.nodes {
			m.quorum = p.nCP
		}

		w.capiLoop()
	}

	mixed := -1
	if p.mixedQuorum {
		mixed = w.rng.IntN(p.nCP)
		w.nodes[mixed].quorum = 1
	}

	if p.neverSync {
		w.nodes[w.rng.IntN(p.nCP)].neverSync = true
	}

	w.aliases = map[netip.Addr]*tnode{}
	for range p.aliases {
		// An address that forwards to one node's apid: to a control-plane
		// node (maybe the prober itself) or a worker.
		w.aliases[w.freeAddr()] = w.nodes[w.rng.IntN(p.nCP+p.nWorkers)]
	}

	w.latency = map[[2]int]time.Duration{}
	for i := range total {
		for j := range total {
			w.latency[[2]int{i, j}] = w.dur(200*time.Microsecond, 200*time.Millisecond)
		}
	}

	if p.preBootstrapped {
		// A cluster made earlier (by hand): recognisable only if every
		// quorum holds a member, so more than nCP-quorum members, and the
		// node with QUORUM_NODES=1 is one.
		members := p.nCP - p.quorum + 1 + w.rng.IntN(p.quorum)
		id := w.chk.existing()

		for _, i := range w.rng.Perm(p.nCP)[:members] {
			w.nodes[i].data = id
			w.nodes[i].etcdMountPoint = w.nodes[i].etcdVolume // it booted before
		}

		if mixed >= 0 {
			// QUORUM_NODES=1 makes the node its own quorum: a cluster it
			// cannot see is recognisable to it only in its own data.
			w.nodes[mixed].data = id
		}
	}

	// Boots: ties on purpose (same second, same clock error), late joiners.
	offsets := []time.Duration{0, 0, 30 * time.Second, -45 * time.Second, 90 * time.Second}
	for _, n := range w.nodes {
		at := w.dur(0, 60*time.Second).Truncate(5 * time.Second)
		if w.chance(0.15) {
			at = w.dur(0, p.chaosEnd)
		}

		n.offset = offsets[w.rng.IntN(len(offsets))]
		if n.foreign {
			at, n.offset = 0, -time.Hour
		}

		w.at(at, func() { w.boot(n) })
	}

	w.chaos()
}

func (w *world) chaos() {
	p := w.p

	for range w.rng.IntN(3) {
		c := cut{from: w.dur(0, p.chaosEnd), links: map[[2]int]bool{}}
		c.to = min(c.from+w.dur(10*time.Second, 120*time.Second), p.chaosEnd)

		switch w.rng.IntN(3) {
		case 0: // two sides
			side := make([]bool, len(w.nodes))
			for i := range side {
				side[i] = w.chance(0.5)
			}

			for i := range w.nodes {
				for j := range w.nodes {
					if side[i] != side[j] && !p.mixedQuorum {
						c.links[[2]int{i, j}] = true
					}
				}
			}
		case 1: // non-transitive: A and B cannot talk, both reach C
			for i := range w.nodes {
				for j := i + 1; j < len(w.nodes); j++ {
					if w.chance(0.3) && !p.mixedQuorum {
						c.links[[2]int{i, j}], c.links[[2]int{j, i}] = true, true
					}
				}
			}
		default: // one-way
			// Not with a node whose QUORUM_NODES is 1 either: cut off from
			// every peer it bootstraps alone, as configured, and no rule
			// can stop it (the README asks for a majority on every node).
			for i := range w.nodes {
				for j := range w.nodes {
					if i != j && w.chance(0.2) && !p.mixedQuorum {
						c.links[[2]int{i, j}] = true
					}
				}
			}
		}

		w.cuts = append(w.cuts, c)
		w.at(c.from, func() { w.tracef(nil, "partition begins, %d links cut until %.1fs", len(c.links), c.to.Seconds()) })
	}

	for _, n := range w.nodes {
		if !n.cp {
			continue
		}

		w.badDiskWindows(n)

		// Crashes at random moments: wherever the daemon is, it dies.
		if p.crashRate > 0 {
			w.crashLoop(n)
		}

		if w.chance(0.3) {
			w.at(w.dur(0, p.chaosEnd-30*time.Second), func() { w.reboot(n, "chaos") })
		}

		if w.chance(0.2) {
			w.at(w.dur(0, p.chaosEnd), func() {
				if n.up && n.synced {
					step := w.dur(-20*time.Second, 20*time.Second)
					n.offset += step
					w.tracef(n, "clock stepped by %s", step)
				}
			})
		}

		if p.resets && !n.init && w.chance(0.3) {
			// An operator resets EPHEMERAL of a node that is done (it had
			// joined), one node at a time as the README asks: it comes
			// back empty and must rejoin, never found a cluster of its own.
			w.at(w.dur(0, p.chaosEnd), func() {
				if n.up && n.daemon != nil && n.daemon.finished && n.healthy && w.otherMember(n) && !w.rejoining() {
					w.resetEphemeral(n)
				}
			})
		}
	}
}

func (w *world) crashLoop(n *tnode) {
	w.at(w.dur(time.Second, 10*time.Second), func() {
		if !w.inChaos() {
			return
		}

		if w.chance(w.p.crashRate * 10) {
			w.crash(n, "at a random moment")
		}

		w.crashLoop(n)
	})
}

func (w *world) configOf(n *tnode) daemonConfig {
	c := w.p.cfg
	c.Quorum = n.quorum

	return c
}

func (w *world) describe() string {
	p := w.p

	return fmt.Sprintf("order=%s cp=%d workers=%d quorum=%d mixed=%v scan=%s confirm=%s delay=%s chaos=%s loss=%.2f replyLoss=%.1f crash=%.2f slowMount=%.1f etcdVolume=%.1f slowPull=%.1f ipChange=%.1f neverSync=%v preBootstrapped=%v aliases=%d resets=%v cuts=%d fill=%s join=%s init=%v capi=%v disk=[%s]",
		p.cfg.LeaderOrder, p.nCP, p.nWorkers, p.quorum, p.mixedQuorum, p.cfg.ScanInterval.Round(time.Millisecond), p.cfg.FollowerCheckInterval.Round(time.Millisecond),
		p.cfg.PreBootstrapDelay.Round(time.Millisecond), p.chaosEnd.Round(time.Second), p.loss, p.replyLoss, p.crashRate,
		p.slowMount, p.etcdVolume, p.slowPull, p.ipChange, p.neverSync, p.preBootstrapped, len(w.aliases), p.resets, len(w.cuts), p.fillMax.Round(time.Second), p.joinMax.Round(time.Second),
		p.initNode, p.capi, strings.Join(p.disk.kinds(), ", "))
}

// faults names the kinds of fault and of other bootstrapper this scenario
// switched on, for a long run's tally of what it exercised.
func (w *world) faults() []string {
	p := w.p

	var out []string

	add := func(on bool, kind string) {
		if on {
			out = append(out, kind)
		}
	}

	add(p.loss > 0, "lost RPCs")
	add(p.replyLoss > 0, "lost Bootstrap replies")
	add(p.crashRate > 0, "daemon crashes")
	add(len(w.cuts) > 0, "link cuts")
	add(p.slowMount > 0, "slow /var mounts")
	add(p.slowPull > 0, "slow etcd image pulls")
	add(p.ipChange > 0, "address changes")
	add(p.neverSync, "a clock that never syncs")
	add(len(w.aliases) > 0, "address aliases")
	add(p.resets, "resets")
	add(p.mixedQuorum, "mixed QUORUM_NODES")
	add(p.preBootstrapped, "a cluster made by hand")
	add(p.initNode, "a Talos init node")
	add(p.capi, "the Cluster API provider")

	return append(out, p.disk.kinds()...)
}
