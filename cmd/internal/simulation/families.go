package simulation

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
)

// Families are scripted scenarios, one per fault found by the simulator or
// a review: the shape of the fault is fixed, its timings come from the seed.
// TestSimulation runs each with every rule on (no failure allowed); a
// mutant without a rule (TestMutants) runs its family and must fail.
var Families = []string{"leader-reboots-before-join", "peer-reboots-while-send-refused", "quorum-mismatch-cut-off", "alias-across-split", "two-first-ranked-views", "capi-address", "reset-one", "graceful-reboot", "resend-refused",
	"cloned-var", "cloned-var-all", "forgotten-send", "lock-published-not-held", "unsynced-lock-power-loss", "init-node", "omni", "straddled-read", "straddled-unmount", "withdrawn-in-own-reboot", "daemon-before-etcd-volume",
	"bootstrap-aborted-after-stopping-etcd"}

// rebootBeforeJoin reboots a, the founder, a few seconds after its cluster
// is created, before its followers joined, with slow set on it for the new
// boot; once its /var is mounted again, a follower round and lo to hi
// later, a drops off the network for five minutes.
func (w *world) rebootBeforeJoin(a *tnode, slow func(a *tnode), lo, hi time.Duration) {
	w.p.joinMax = 5 * time.Minute
	rebooted := false

	w.hooks.clusterCreated = func(m *tnode) {
		if m != a || rebooted {
			return
		}

		rebooted = true
		slow(a)
		w.at(w.dur(time.Second, 3*time.Second), func() { w.reboot(a, "before the followers joined") })
	}
	w.hooks.mounted = func(n *tnode) {
		if n == a && rebooted && len(w.cuts) == 0 {
			from := w.now + w.p.cfg.FollowerCheckInterval + w.dur(lo, hi)
			w.isolate(a, from, from+5*time.Minute)
			w.p.chaosEnd = from + 5*time.Minute
		}
	}
}

// site is a family's cluster: control-plane nodes booting in rank order
// (the first oldest), addresses in the same order, no workers, no chaos.
func (w *world) site(quorum int, bootAt ...time.Duration) {
	p := &w.p
	p.nCP, p.quorum = len(bootAt), quorum
	p.cfg = daemonConfig{
		Quorum:                quorum,
		ScanInterval:          w.dur(5*time.Second, 15*time.Second),
		ScanTimeout:           2 * time.Second,
		FollowerCheckInterval: w.dur(3*time.Second, 8*time.Second),
		PreBootstrapDelay:     w.dur(5*time.Second, 15*time.Second),
		MaxBackoff:            w.dur(10*time.Second, 30*time.Second),
	}
	p.fillMax = w.dur(time.Second, 5*time.Second)
	p.joinMax = w.dur(5*time.Second, 30*time.Second)
	p.cfg.EtcdWait = 2*p.fillMax + 30*time.Second
	p.chaosEnd = 10 * time.Minute

	for i, at := range bootAt {
		n := &tnode{idx: i, cp: true, quorum: quorum, ip: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})}
		w.nodes = append(w.nodes, n)
		w.at(at, func() { w.boot(n) })
	}

	w.aliases = map[netip.Addr]*tnode{}
	w.latency = map[[2]int]time.Duration{}

	for i := range w.nodes {
		for j := range w.nodes {
			w.latency[[2]int{i, j}] = w.dur(200*time.Microsecond, 20*time.Millisecond)
		}
	}
}

// isolate cuts n off from every other node, both ways, for a while.
func (w *world) isolate(n *tnode, from, to time.Duration) {
	c := cut{from: from, to: to, links: map[[2]int]bool{}}

	for _, m := range w.nodes {
		if m != n {
			c.links[[2]int{n.idx, m.idx}], c.links[[2]int{m.idx, n.idx}] = true, true
		}
	}

	w.cuts = append(w.cuts, c)
	w.at(from-w.now, func() { w.tracef(n, "isolated until %.1fs", to.Seconds()) })
}

func (w *world) setupFamily(name string) error {
	switch name {
	case "leader-reboots-before-join":
		// A bootstraps with B and C locked to it and reboots before they
		// joined; its /var takes minutes to mount, during which apid shows
		// no status file and no data directory. Soon after the mount A
		// drops off the network for minutes.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		w.rebootBeforeJoin(w.nodes[0], func(a *tnode) {
			a.mountWindow = func() time.Duration { return w.dur(time.Minute, 2*time.Minute) }
		}, 5*time.Second, 15*time.Second)
	case "daemon-before-etcd-volume":
		// Every node has its own ETCD volume (v1.14). A bootstraps with B
		// and C locked and reboots before they joined; its /var mounts at
		// once but its ETCD volume takes minutes (KMS, TPM), and its daemon
		// starts meanwhile: its new boot's status is readable while
		// /var/lib/etcd is the bare, empty mount point and no etcd service
		// exists. Then A drops off the network for minutes.
		w.site(2, 0, 5*time.Second, 10*time.Second)

		for _, n := range w.nodes {
			n.etcdVolume = true
		}

		w.rebootBeforeJoin(w.nodes[0], func(a *tnode) {
			a.mountWindow = func() time.Duration { return w.dur(time.Second, 3*time.Second) }
			a.etcdVolumeWindow = func() time.Duration { return w.dur(time.Minute, 2*time.Minute) }
		}, 20*time.Second, 40*time.Second)
	case "straddled-read":
		// Quorum 2 of 3, C powered on late. A bootstraps with B locked and
		// reboots before B joined; its /var mounts minutes later. One of
		// B's rounds straddles the mount, in one of two ways:
		//   - its ServiceList request to A is lost (the 5 s deadline
		//     answers), List /var/lib/etcd answers the bare root
		//     filesystem's lstat error, EtcdMemberList waits out its
		//     deadline, and by then A's daemon has written the new boot's
		//     status;
		//   - its requests to A arrive late (retransmits, each within its
		//     deadline): the listing just before the mount, the next ones
		//     once A's daemon has written the new boot's status.
		// Then A drops off the network for minutes, so that nothing B
		// reads later shows A's data.
		w.site(2, 0, 5*time.Second, 4*time.Minute)
		a, b := w.nodes[0], w.nodes[1]
		w.p.joinMax = 5 * time.Minute
		held := w.chance(0.5)
		rebooted, lost, straddling, isolated := false, false, false, false
		heldSince := map[string]time.Duration{}

		w.hooks.clusterCreated = func(m *tnode) {
			if m != a || rebooted {
				return
			}

			rebooted = true
			a.mountWindow = func() time.Duration { return w.dur(time.Minute, 2*time.Minute) }
			w.at(w.dur(time.Second, 3*time.Second), func() { w.down(a, "before the followers joined") })
		}
		w.hooks.rpc = func(from, m *tnode, method string) (bool, time.Duration) {
			if from != b || m != a || !rebooted || a.boots < 2 {
				return false, 0
			}

			untilMount := a.mountAt - w.now
			ownStatus := a.ownStatusReadable()

			if ownStatus && !isolated && strings.HasPrefix(method, "Read /var") {
				isolated = true
				w.isolate(a, w.now+100*time.Millisecond, w.now+8*time.Minute)
				w.p.chaosEnd = w.now + 8*time.Minute
			}

			switch {
			case !held && method == "ServiceList" && !lost && !a.varMounted && untilMount > 5100*time.Millisecond && untilMount < 7*time.Second:
				lost = true
				w.tracef(b, "ServiceList to %s lost, %.1fs before its /var mounts", a, untilMount.Seconds())

				return true, 0
			case held && !straddling && method == "ServiceList" && !a.varMounted && untilMount > 0 && untilMount < 4*time.Second:
				straddling = true
				w.tracef(b, "requests to %s arrive late, %.1fs before its /var mounts", a, untilMount.Seconds())
			case held && straddling && strings.HasPrefix(method, "List") && untilMount > 50*time.Millisecond:
				return false, untilMount - 50*time.Millisecond
			case held && straddling && !ownStatus && (method == "ServiceList" || strings.HasPrefix(method, "Read /var")):
				// Held in steps until the status exists, within the
				// request's deadline.
				since, ok := heldSince[method]
				if !ok {
					since, heldSince[method] = w.now, w.now
				}

				if w.now-since < 4500*time.Millisecond {
					return false, 200 * time.Millisecond
				}

				delete(heldSince, method)
			default:
				delete(heldSince, method)
			}

			return false, 0
		}
	case "straddled-unmount":
		// Quorum 2 of 3, C powered on late. A bootstraps with B locked and
		// reboots before B joined; its second boot holds the data, and its
		// daemon writes that boot's status. Then A is upgraded: Talos
		// stops the services (etcd Finished), unmounts the ETCD volume and
		// /var, and runs the installer for tens of seconds while apid
		// answers; A then comes back cut off for minutes. One of B's rounds
		// straddles the unmount, in one of two ways:
		//   - its ServiceList to A is lost just before the unmount, and the
		//     listing after it finds no /var/lib/etcd;
		//   - its ServiceList is answered while A's etcd has not run yet
		//     in this boot (an image pulled again), the upgrade starts at
		//     once, and the listing arrives late (a retransmit), after the
		//     unmount.
		w.site(2, 0, 5*time.Second, 4*time.Minute)
		a, b := w.nodes[0], w.nodes[1]
		w.p.joinMax = 5 * time.Minute
		answered := w.chance(0.5)
		rebooted, upgrading, lost := false, false, false

		var unmountAt time.Duration

		upgrade := func() {
			if upgrading || !a.up || a.boots != 2 {
				return
			}

			upgrading = true
			unmountAt = w.now + w.dur(time.Second, 3*time.Second)
			w.upgrade(a, "soon after the daemon wrote its status", unmountAt-w.now, func() {
				w.isolate(a, w.now, w.now+8*time.Minute)
				w.p.chaosEnd = w.now + 8*time.Minute
			})
		}

		w.hooks.clusterCreated = func(m *tnode) {
			if m != a || rebooted {
				return
			}

			rebooted = true
			if answered {
				a.etcdRunAfter = 2 * time.Minute
			}

			w.at(w.dur(time.Second, 3*time.Second), func() { w.down(a, "before the followers joined") })
		}
		w.hooks.saved = func(d *daemonRun, st election.Status) {
			if answered || d.node != a || !rebooted || a.boots != 2 || st.Incarnation.BootID != a.bootID {
				return
			}

			w.register(d.key("family straddled-unmount"), func() { w.at(w.dur(0, 5*time.Second), upgrade) })
		}
		w.hooks.rpc = func(from, m *tnode, method string) (bool, time.Duration) {
			if from != b || m != a || a.boots != 2 {
				return false, 0
			}

			ownStatus := a.ownStatusReadable()

			switch {
			case !answered && method == "ServiceList" && a.stopping && a.varMounted && !lost:
				lost = true
				w.tracef(b, "ServiceList to %s lost, just before its /var unmounts", a)

				return true, 0
			case answered && method == "ServiceList" && !upgrading && ownStatus && a.etcd == "Preparing":
				w.at(0, upgrade) // after this answer
			case answered && strings.HasPrefix(method, "List") && upgrading && a.varMounted:
				w.tracef(b, "List to %s held until after its /var unmounts (a retransmit)", a)

				return false, unmountAt - w.now + 100*time.Millisecond
			}

			return false, 0
		}
	case "withdrawn-in-own-reboot":
		// Quorum 2 of 3, C powered on late. A bootstraps with B locked and
		// reboots before B joined; B and C cannot reach it. In its second
		// boot A's etcd does not run for minutes (its image pulled again),
		// so its daemon, holding the bootstrap of the first boot, waits; as
		// that wait runs out the operator upgrades A, and the daemon, which
		// Talos stops last, looks at its own node after etcd stopped and
		// /var was unmounted. In the third boot A's etcd runs within a
		// minute. B (not C) reaches A again and reads A's status of that
		// boot; the requests that would show A's etcd are lost in that round
		// (its boot id still answers), and then A drops off the network for
		// minutes.
		w.site(2, 0, 5*time.Second, 4*time.Minute)
		a, b := w.nodes[0], w.nodes[1]
		w.p.joinMax = 5 * time.Minute
		rebooted, lists, hiding, isolated, apartIdx := false, 0, false, false, -1
		c := w.nodes[2]
		// B and C cannot reach A (A still reaches them, for its quorum).
		apart := cut{links: map[[2]int]bool{{b.idx, a.idx}: true, {c.idx, a.idx}: true}}

		w.hooks.clusterCreated = func(m *tnode) {
			if m != a || rebooted {
				return
			}

			rebooted = true
			apart.from, apart.to, apartIdx = w.now, w.now+8*time.Minute, len(w.cuts)
			w.cuts = append(w.cuts, apart)
			w.p.chaosEnd = apart.to
			a.etcdRunAfter = time.Hour
			w.at(w.dur(10*time.Millisecond, 500*time.Millisecond), func() { w.down(a, "before the followers joined") })
		}
		w.hooks.saved = func(d *daemonRun, st election.Status) {
			if d.node == a && a.boots == 3 && st.Incarnation.BootID == a.bootID && apartIdx >= 0 && w.cuts[apartIdx].links[[2]int{b.idx, a.idx}] {
				w.register(d.key("family withdrawn-in-own-reboot"), func() {
					delete(w.cuts[apartIdx].links, [2]int{b.idx, a.idx})
					w.tracef(a, "reachable from %s again", b)
				})
			}
		}
		w.hooks.rpc = func(from, m *tnode, method string) (bool, time.Duration) {
			switch {
			case from == a && m == a && a.boots == 2 && strings.HasPrefix(method, "List") && !a.stopping:
				// The daemon's own rounds list its data directory: the
				// first on resuming, the next once its etcd wait ran out.
				if lists++; lists == 2 {
					a.etcdRunAfter = w.dur(30*time.Second, time.Minute)
					w.upgrade(a, "operator upgrade while etcd did not run", 0, nil)
					w.unmount(a, a.boots)
				}
			case from != b || m != a || a.boots != 3 || isolated:
			case strings.HasPrefix(method, "Read /var") && a.ownStatusReadable():
				hiding = true
			case hiding && method == "Read boot_id":
				isolated = true
				w.cuts[apartIdx].to = w.now
				w.isolate(a, w.now+w.delay(a, b)+time.Millisecond, w.now+8*time.Minute)
				w.p.chaosEnd = w.now + 8*time.Minute
			case hiding:
				w.tracef(b, "%s to %s lost", method, a)

				return true, 0
			}

			return false, 0
		}
	case "peer-reboots-while-send-refused":
		// Quorum 3 of 3. A's Bootstrap is refused ("time is not in sync
		// yet") for minutes, and B reboots meanwhile: A must see B's new
		// boot and its resumed lock.
		w.site(3, 0, 5*time.Second, 10*time.Second)
		a, b := w.nodes[0], w.nodes[1]
		started := false

		w.hooks.saved = func(d *daemonRun, st election.Status) {
			if d.node != a || started || st.Phase != election.PhaseBootstrapping {
				return
			}

			started = true

			w.register(d.key("family peer-reboots-while-send-refused"), func() {
				a.refuseSyncUntil = w.now + 3*time.Minute
				w.p.chaosEnd = w.now + 3*time.Minute
				w.at(w.dur(2*time.Second, 10*time.Second), func() { w.reboot(b, "while the leader's Bootstrap is refused") })
			})
		}
	case "quorum-mismatch-cut-off":
		// B runs with QUORUM_NODES missing (1), A and C with 2. A's /var
		// mounts late; B sees C before it is cut off, alone.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		w.p.mixedQuorum = true
		a, b := w.nodes[0], w.nodes[1]
		b.quorum = 1
		a.mountWindow = func() time.Duration { return w.dur(2*time.Minute, 150*time.Second) }
		from := w.dur(50*time.Second, 70*time.Second)
		w.isolate(b, from, from+5*time.Minute)
		w.p.chaosEnd = from + 5*time.Minute
	case "alias-across-split":
		// Quorum 3 of 5, split {L, B} | {C, D, E} for minutes, and an
		// address that forwards to B's apid: L must not count B twice.
		w.site(3, 0, 5*time.Second, 10*time.Second, 15*time.Second, 20*time.Second)
		b := w.nodes[1]
		w.aliases[netip.AddrFrom4([4]byte{198, 18, 0, 200})] = b
		split := cut{from: 0, to: 4 * time.Minute, links: map[[2]int]bool{}}

		for _, i := range []int{0, 1} {
			for _, j := range []int{2, 3, 4} {
				split.links[[2]int{i, j}], split.links[[2]int{j, i}] = true, true
			}
		}

		w.cuts = append(w.cuts, split)
		w.p.chaosEnd = 4 * time.Minute
	case "two-first-ranked-views":
		// Quorum 2 of 3, C oldest, then A, then B; A and C cannot talk:
		// each ranks first in its own view.
		w.site(2, 5*time.Second, 10*time.Second, 0)
		a, c := w.nodes[0], w.nodes[2]
		cutAC := cut{from: 0, to: 4 * time.Minute, links: map[[2]int]bool{
			{a.idx, c.idx}: true, {c.idx, a.idx}: true,
		}}
		w.cuts = append(w.cuts, cutAC)
		w.p.chaosEnd = 4 * time.Minute
	case "capi-address", "capi-boot-time":
		// The Cluster API provider bootstraps too (QUORUM_NODES = replicas,
		// as deploy/examples/capi-taloscontrolplane.yaml says), with
		// addresses whose string and numeric orders differ and boot times
		// that do not follow either.
		n := 1 + w.rng.IntN(5)
		boots := make([]time.Duration, n)

		for i := range boots {
			boots[i] = w.dur(0, 60*time.Second)
		}

		w.site(n, boots...)

		hosts := w.rng.Perm(250)
		for i, m := range w.nodes {
			m.ip = netip.AddrFrom4([4]byte{198, 18, 0, byte(2 + hosts[i])})
			m.offset = []time.Duration{0, 30 * time.Second, -45 * time.Second}[w.rng.IntN(3)]
		}

		w.p.cfg.LeaderOrder = election.LeaderOrder(name[len("capi-"):])
		w.p.fillMax = w.dur(time.Second, 40*time.Second)
		w.p.cfg.EtcdWait = 2*w.p.fillMax + 30*time.Second
		w.p.chaosEnd = 2 * time.Minute
		w.capiLoop()
	case "reset-one", "reset-two":
		// Quorum 2 of 3, the cluster made and joined. An operator
		// resets EPHEMERAL of one node (the README's rule), or of two at
		// once, while the founder is cut off: two empty nodes that see no
		// member make up a quorum on their own.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		a, b, c := w.nodes[0], w.nodes[1], w.nodes[2]
		at := 4*time.Minute + w.dur(0, 30*time.Second)
		w.isolate(a, at, at+4*time.Minute)
		w.p.chaosEnd = at + 4*time.Minute
		resets := []*tnode{b}
		if name == "reset-two" {
			resets = append(resets, c)
		}

		w.at(at+time.Second, func() {
			for _, n := range resets {
				if n.up && n.daemon != nil && n.daemon.finished && n.healthy {
					w.resetEphemeral(n)
				}
			}
		})
	case "reset-during-election":
		// Quorum 2 of 3, C boots late. While A, announced, waits out
		// PRE_BOOTSTRAP_DELAY, an operator reads every status file: no
		// node is bootstrapping or bootstrapped, and B's leader, A, is
		// reachable. B's EPHEMERAL reset lands 2 to 20 s later (typing,
		// talosctl's graceful reset), after A's last check counted B's
		// lock (perhaps one B took after the operator looked); A then
		// drops off the network for minutes. B, empty, and C found a
		// second cluster. Not in Families: it must fail, and shows why
		// operations.md allows no reset of a node that has not joined
		// while an election may run.
		w.site(2, 0, 5*time.Second, 3*time.Minute)
		a, b := w.nodes[0], w.nodes[1]
		w.p.chaosEnd = 12 * time.Minute
		checked := false

		w.hooks.saved = func(d *daemonRun, st election.Status) {
			if checked || d.node != a || st.Phase != election.PhaseAnnounced {
				return
			}

			checked = true

			w.register(d.key("family reset-during-election"), func() {
				w.at(w.dur(0, w.p.cfg.PreBootstrapDelay), func() {
					for _, n := range w.nodes {
						if st, err := election.ParseStatus(n.storage().status()); err == nil && st.Incarnation.BootID == n.bootID &&
							(st.Phase == election.PhaseBootstrapping || st.Phase == election.PhaseBootstrapped) {
							w.tracef(n, "operator's check: %s is %s, no reset", n, st.Phase)

							return
						}
					}

					if !w.reachable(b, a) {
						return
					}

					w.tracef(b, "operator's check: no node bootstrapping or bootstrapped, leader %s reachable (%s): resetting %s", a, w.statusOf(b), b)
					w.at(w.dur(2*time.Second, 20*time.Second), func() {
						w.resetEphemeral(b)
						w.isolate(a, w.now+w.dur(time.Second, 5*time.Second), w.now+10*time.Minute)
					})
				})
			})
		}
	case "graceful-reboot":
		// Found by a review. Quorum 2 of 3: C, locked to A's
		// intent, is rebooted by an operator while A waits out
		// PRE_BOOTSTRAP_DELAY. During Talos's reboot sequence C's etcd,
		// which never ran, shows Finished while apid still answers (v1.14):
		// not a cluster.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		w.p.cfg.PreBootstrapDelay = 60 * time.Second
		w.p.chaosEnd = 2 * time.Minute
		c := w.nodes[2]
		done := false

		w.hooks.saved = func(d *daemonRun, st election.Status) {
			if done || d.node != c || st.Phase != election.PhaseLocked {
				return
			}

			done = true

			w.register(d.key("family graceful-reboot"), func() { w.shutdown(c, "operator reboot while locked") })
		}
	case "resend-refused":
		// Found by a review. Quorum 2 of 3. A's Bootstrap is
		// accepted, its reply lost; the etcd image pull outlasts the resend
		// wait; the resend is refused ("time is not in sync yet"). C is
		// rebooted then (its etcd shows Finished for seconds) while B
		// cannot see C. Should A withdraw (a request may still be under
		// way), B and C release their locks; A is then cut off, and B
		// and C bootstrap while A's first request completes.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		a, b, c := w.nodes[0], w.nodes[1], w.nodes[2]
		w.p.cfg.EtcdWait = 5 * time.Minute // the daemon's default resend wait
		w.p.replyLoss = 1
		w.p.chaosEnd = 40 * time.Minute
		stage := 0
		bReleased, cReleased := false, false

		w.hooks.saved = func(d *daemonRun, st election.Status) {
			switch {
			case stage == 0 && d.node == a && st.Phase == election.PhaseBootstrapping && st.SendState == election.SendLeaving:
				// The request leaves next; once machined has it, the image
				// pull takes 9 minutes.
				stage = 1
				w.register(d.key("family resend-refused: slow pull"), func() {
					w.at(time.Millisecond, func() {
						if a.pending != nil {
							a.pending.fillAt = w.now + 9*time.Minute
							w.refill(a, a.pending)
							w.tracef(a, "etcd image pull slow: data fills at %.1fs", a.pending.fillAt.Seconds())
						}
					})
				})
			case stage == 1 && d.node == a && st.Phase == election.PhaseBootstrapping && st.SendState == election.SendMayHaveArrived:
				// The reply was lost (Unknown): later replies arrive, and
				// machined refuses for a long while.
				stage = 5
				w.register(d.key("family resend-refused: unknown"), func() {
					w.p.replyLoss = 0
					a.refuseSyncUntil = w.now + 30*time.Minute
				})
			case stage == 5 && d.node == a && strings.Contains(st.Reason, "refused for now"):
				stage = 2
				w.register(d.key("family resend-refused: refused"), func() {
					w.cuts = append(w.cuts, cut{from: w.now, to: w.now + 15*time.Second, links: map[[2]int]bool{
						{b.idx, c.idx}: true, {c.idx, b.idx}: true,
					}})
					w.shutdown(c, "operator reboot after the refused resend")
				})
			case stage == 2 && d.node == a && st.Phase == election.PhaseIdle && st.WithdrawnThrough >= 1:
				stage = 3
			case stage == 3 && d.node == b && st.Lock == nil:
				bReleased = true
			case stage == 3 && d.node == c && st.Lock == nil && st.Incarnation.BootID == c.bootID:
				cReleased = true
			}

			if stage == 3 && bReleased && cReleased {
				stage = 4
				w.register(d.key("family resend-refused: isolate"), func() { w.isolate(a, w.now, w.now+20*time.Minute) })
			}
		}
	case "cloned-var":
		// Found by a review. A and B were cloned from one disk
		// image after a first boot: the same status file, so the same node
		// name. Quorum 2 of 3, A oldest, B's address below A's; A is cut off
		// for 90 s from the moment it sends Bootstrap. B is another
		// machine: never "this node at another address", never "A
		// rebooted".
		w.site(2, 0, 5*time.Second, 10*time.Second)
		a, b := w.nodes[0], w.nodes[1]
		a.ip, b.ip = b.ip, a.ip
		a.storage().place(statusfile.FileName, w.templateStatus())
		b.storage().place(statusfile.FileName, w.templateStatus())
		w.p.chaosEnd = 3 * time.Minute
		done := false

		w.hooks.saved = func(d *daemonRun, st election.Status) {
			if done || d.node != a || st.Phase != election.PhaseBootstrapping || st.Withdrawable() {
				return
			}

			done = true

			w.register(d.key("family cloned-var"), func() { w.isolate(a, w.now, w.now+90*time.Second) })
		}
	case "cloned-var-all":
		// Every control-plane node cloned from one image: they must still
		// see each other.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		w.p.chaosEnd = time.Minute

		for _, n := range w.nodes {
			n.storage().place(statusfile.FileName, w.templateStatus())
		}
	case "bootstrap-aborted-after-stopping-etcd":
		// Found by a review. Talos's BootstrapEtcd (v1.14.0-rc.1
		// services/etcd.go) stops the waiting etcd, marks it Finished
		// "Bootstrap requested", then unloads it and starts etcd in
		// bootstrap mode, all on the request's context. When that context
		// ends in between (the caller's deadline, the daemon killed
		// mid-call), machined's Unload gives up on it and BootstrapEtcd
		// returns: nothing was bootstrapped, etcd stays Finished
		// "Bootstrap requested" for the rest of the boot, and no reply
		// arrives. Quorum 2 of 3; the leader's first Bootstrap ends so. In
		// half the seeds the leader is rebooted later, as an operator
		// would to unstick it. Read as a running etcd, the sign ended the
		// leader's own election and was remembered as a cluster by its
		// followers: nothing was ever bootstrapped.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		w.p.chaosEnd = 15 * time.Minute
		aborted := false

		w.hooks.rpc = func(from, m *tnode, method string) (bool, time.Duration) {
			if aborted || method != "Bootstrap" || !m.services || m.data != 0 || m.pending != nil {
				return false, 0
			}

			aborted = true
			m.etcd, m.etcdMsg, m.healthy = "Finished", "Bootstrap requested", false
			w.tracef(m, "Bootstrap stopped etcd, then its context ended: no etcd started, no reply")

			if w.chance(0.5) {
				w.at(w.dur(8*time.Minute, 12*time.Minute), func() { w.reboot(m, "to restart its stopped etcd") })
			}

			return true, 0
		}
	case "forgotten-send":
		// Found by a review. Quorum 2 of 3. A's Bootstrap is accepted and
		// the daemon dies before it records the answer; the etcd image
		// pull takes ten minutes; A's time goes unsynced, so its resend is
		// refused "not now". The first request may still found the
		// cluster: the status must keep saying so (SentStaysSent), or a
		// stale sign of a cluster elsewhere makes A withdraw it and the
		// followers bootstrap a second cluster.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		a := w.nodes[0]
		w.p.cfg.EtcdWait = 2 * time.Minute
		w.p.chaosEnd = 25 * time.Minute
		marked := false

		w.hooks.saved = func(d *daemonRun, st election.Status) {
			if marked || d.node != a || st.Phase != election.PhaseBootstrapping || st.SendState != election.SendLeaving {
				return
			}

			marked = true
			a.crashAfterBootstrap = func() {
				w.tracef(a, "the daemon dies before it records the answer; the image pull is slow; time goes unsynced")
				a.pending.fillAt = w.now + 10*time.Minute
				w.refill(a, a.pending)
				a.refuseSyncUntil = w.now + 20*time.Minute
			}
		}
	case "lock-published-not-held":
		// Found by a review. Quorum 2 of 3, A leads. B's lock to A is
		// renamed into place, so A may count it, but the directory fsync
		// fails with EIO, and /var stays unwritable for a minute. B must
		// act on the lock it published (ActsOnWhatPeersRead): cut off from
		// A, a B that forgot it would lock to C, and C bootstrap too.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		a, b := w.nodes[0], w.nodes[1]
		w.p.chaosEnd = 5 * time.Minute
		done := false

		w.hooks.saved = func(d *daemonRun, st election.Status) {
			if done || d.node != b || st.Phase != election.PhaseLocked || st.Lock == nil || !st.Lock.Leader.Is(election.Incarnation{IP: a.ip, BootID: a.bootID}) {
				return
			}

			done = true
			b.failDirSyncUntil = w.now + time.Minute
			w.tracef(b, "directory fsync fails from now on, for a minute")
			w.register(d.key("family lock-published-not-held"), func() { w.isolate(a, w.now, w.now+3*time.Minute) })
		}
	case "unsynced-lock-power-loss":
		// Found by a long run. Quorum 2 of 3, A leads. Once A announces,
		// B's directory fsync fails for a minute, so B's save of its lock
		// to A leaves a status.json.next whose name is not durable, and
		// B's daemon is killed. Its next Load finds that file. Published
		// before it is durable, the lock A may count is erased by the
		// power loss that follows (LockReleasedForReason).
		w.site(2, 0, 5*time.Second, 10*time.Second)
		a, b := w.nodes[0], w.nodes[1]
		w.p.chaosEnd = 5 * time.Minute
		armed, lost := false, false

		w.hooks.saved = func(d *daemonRun, st election.Status) {
			switch {
			case !armed && d.node == a && st.Phase == election.PhaseAnnounced:
				armed = true

				w.register(d.key("family unsynced-lock-power-loss"), func() {
					b.failDirSyncUntil = w.now + time.Minute
					w.tracef(b, "directory fsync fails from now on, for a minute")
					w.at(w.dur(10*time.Second, 20*time.Second), func() { w.crash(b, "while its directory fsync fails") })
				})
			case armed && !lost && d.node == b && st.Lock != nil && st.Lock.Leader.Is(election.Incarnation{IP: a.ip, BootID: a.bootID}):
				lost = true

				w.register(d.key("family unsynced-lock-power-loss"), func() {
					w.at(w.dur(time.Second, 5*time.Second), func() { w.powerLoss(b, "after its lock to the leader was published") })
				})
			}
		}
	case "init-node":
		// Talos's init machine type founds etcd by itself, with no
		// Bootstrap call, once its image is pulled. Quorum 3 of 3 (the
		// README's value with an init node); the init node is the
		// youngest, so boot order would pick another node, and it is out
		// of reach at first. Nobody may send Bootstrap.
		w.site(3, 0, 5*time.Second, 10*time.Second)
		in := w.nodes[2]
		in.init, in.initPull = true, w.dur(90*time.Second, 4*time.Minute)
		w.isolate(in, 0, w.dur(20*time.Second, 60*time.Second))
		w.p.chaosEnd = 2 * time.Minute
	case "capi-majority":
		// Not a family TestFamilies runs: QUORUM_NODES a majority of the
		// replicas beside the Cluster API provider. The lowest address is
		// cut off from the other two daemons, not from the provider: they
		// make their quorum and bootstrap the lowest address they see,
		// the provider the lowest of all.
		w.site(2, 0, 5*time.Second, 10*time.Second)
		w.p.cfg.LeaderOrder = election.OrderAddress
		w.isolate(w.nodes[0], 0, 3*time.Minute)
		w.p.chaosEnd = 3 * time.Minute
		w.capiLoop()
	case "omni":
		// The machines are connected to Omni (SideroLinkConfig), which
		// bootstraps the youngest one, its first machine, after a minute
		// or so; the daemons' own order would pick the oldest, whose
		// config shows no SideroLink (Talos would still show the kernel
		// argument; here it learns from its peers). Every daemon must
		// stand down and leave the cluster to Omni.
		w.site(3, 0, 5*time.Second, 10*time.Second)
		w.nodes[1].omni, w.nodes[2].omni = true, true

		w.omniLoop(w.nodes[2], w.dur(40*time.Second, 90*time.Second))
		w.p.chaosEnd = 2 * time.Minute
	default:
		return fmt.Errorf("unknown scenario family %q", name)
	}

	return nil
}

// templateStatus is the status file of a template machine whose daemon ran
// once (and found no quorum) before its disk was cloned.
func (w *world) templateStatus() []byte {
	st := election.NewStatus(election.Candidate{
		Incarnation: election.Incarnation{IP: netip.AddrFrom4([4]byte{198, 18, 0, 250}), BootID: "99-1-template"},
		BootTime:    epoch,
	})
	st.Quorum = w.p.cfg.Quorum
	st.LeaderOrder = election.OrderBootTime
	st.Reason = "waiting for quorum: 1 of 2 control-plane nodes in view"

	data, err := election.MarshalStatus(st)
	if err != nil {
		panic(err)
	}

	return data
}
