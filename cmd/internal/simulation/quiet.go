package simulation

import (
	"hash/maphash"
	"time"
)

// A scenario whose world has stopped changing after the chaos repeats
// itself until its horizon: the daemons poll, find what they found, and
// write nothing. The scenarios that never settle on purpose (QUORUM_NODES
// differing, a clock that never syncs) spent close to half the
// simulator's time so, up to 100 simulated minutes each. The run ends
// once Talos has nothing scheduled (modelBusy) and nothing the verdict or
// the protocol can see has changed for quietWindow, twice every daemon
// timer in a row: a change still to come would have come. The verdict is
// the one the horizon would give: a scenario that should settle and is
// quiet without being done is a liveness failure, judged earlier.

// quietSample is how often the world's state is sampled after the chaos.
const quietSample = 10 * time.Second

type quietWatch struct {
	next   time.Duration
	digest uint64
	since  time.Duration
	h      maphash.Hash
	// ended: the run stopped because the world was quiet.
	ended bool
}

// settledOrQuiet is the loop's stop condition.
func (w *world) settledOrQuiet() bool {
	if w.allDone() {
		return true
	}

	if w.opts.FullHorizon {
		return false
	}

	w.quietWatch.ended = w.quiet()

	return w.quietWatch.ended
}

// quiet says that, since the chaos ended, Talos has had nothing scheduled
// and the world has not changed for quietWindow. It runs on the scheduler
// side after every event, and samples the state every quietSample of
// simulated time.
func (w *world) quiet() bool {
	q := &w.quietWatch
	if w.inChaos() || w.now < q.next {
		return false
	}

	q.next = w.now + quietSample

	if d := w.stateDigest(); d != q.digest || q.since == 0 || w.modelBusy() {
		q.digest, q.since = d, w.now

		return false
	}

	return w.now-q.since >= w.quietWindow()
}

// quietWindow covers every daemon timer twice over, one after another:
// the etcd wait (also the resend wait), the stability window, the scan
// and follower intervals, and the longest backoff. A state that changes
// nothing for that long is one the daemons keep finding.
func (w *world) quietWindow() time.Duration {
	c := w.p.cfg

	return 2*(c.EtcdWait+c.PreBootstrapDelay+c.ScanInterval+c.FollowerCheckInterval+c.MaxBackoff) + time.Minute
}

// modelBusy says that Talos itself still has work scheduled: a boot that
// has not mounted /var or started its services, a clock still to sync, an
// accepted Bootstrap filling, a node joining, an init node's pull, a
// reboot under way, etcd about to run on its data, a daemon about to be
// restarted. quietWindow covers the daemons' timers, not these delays.
func (w *world) modelBusy() bool {
	for _, n := range w.nodes {
		if !n.up {
			continue
		}

		if !n.apidUp || n.stopping || (!n.synced && !n.neverSync) || n.pending != nil || n.joining {
			return true
		}

		if n.cp && (!n.varMounted || (n.services && n.daemon == nil) || (n.etcdVolume && !n.etcdMounted) || !n.services ||
			(n.init && n.data == 0) || (n.data != 0 && !n.healthy)) {
			return true
		}
	}

	return false
}

// stateDigest hashes what a change of the outcome must pass through: each
// machine's boot, services and etcd, its status file on disk and the one
// its daemon acts on, whether that daemon runs, and the clusters created.
// Polls that find the same answers change none of it.
func (w *world) stateDigest() uint64 {
	// maphash's seed differs between processes, but digests are only
	// compared within one run.
	h := &w.quietWatch.h
	h.Reset()

	num := func(v int64) { maphash.WriteComparable(h, v) }
	flag := func(b bool) { maphash.WriteComparable(h, b) }
	text := func(s string) {
		num(int64(len(s)))
		_, _ = h.WriteString(s)
	}
	data := func(b []byte) {
		num(int64(len(b)))
		_, _ = h.Write(b)
	}

	num(int64(w.chk.created))
	flag(w.capiDone)

	for _, n := range w.nodes {
		text(n.bootID)
		maphash.WriteComparable(h, n.ip)
		flag(n.up)
		flag(n.stopping)
		flag(n.synced)
		flag(n.apidUp)
		flag(n.varMounted)
		flag(n.etcdMounted)
		flag(n.services)
		text(n.etcd)
		flag(n.healthy)
		flag(n.joining)
		flag(n.pending != nil)
		num(int64(n.bootstrap))
		num(int64(n.data))
		num(int64(n.runs))

		if d := n.daemon; d != nil {
			flag(d.dead)
			flag(d.finished)
			data(d.adopted)
		}

		if n.disk != nil {
			data(n.disk.status())
		}
	}

	return h.Sum64()
}
