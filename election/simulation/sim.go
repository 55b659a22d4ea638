// Package simulation drives the real election code (Step, ConfirmLocks,
// AfterBootstrap, ClassifyBootstrap, SignsFrom, ViewTracker, Resume and the
// status JSON round trip) through seeded scenarios on a virtual clock: a
// priority queue of events, no goroutines, no sleeping, so that a seed
// reproduces a run exactly. Talos is modelled after its source: Bootstrap's
// checks and messages, the in-memory bootstrap request that dies with the
// boot, the etcd data directory that fills only after the reply, boot IDs
// and boot times that move when the clock is stepped.
package simulation

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// Options select one scenario.
type Options struct {
	Seed uint64
	// SkipConfirmation is the negative control (tests only): a leader
	// bootstraps as soon as it announces, without waiting for locks.
	SkipConfirmation bool
	// Trace records every decision and event.
	Trace bool
}

// Result is the checker's verdict on one scenario.
type Result struct {
	Seed     uint64
	Scenario string
	// ClustersCreated counts etcd clusters this run created.
	ClustersCreated int
	DoubleBootstrap bool
	LivenessFailure bool
	Problem         string
	// SettledAfter is how long after the end of the chaos every
	// control-plane daemon was done; Rounds expresses the part beyond
	// PRE_BOOTSTRAP_DELAY and the model's own delays (slack) in scan
	// intervals: the liveness deadline allows livenessRounds.
	SettledAfter time.Duration
	Rounds       float64
	// Paths counts how often notable protocol paths were taken, to show
	// what the scenarios exercise.
	Paths map[string]int
	Trace []string
}

// Fixed model constants.
const (
	probeTimeout     = 2 * time.Second  // SCAN_TIMEOUT
	bootstrapTimeout = 10 * time.Second // Bootstrap call deadline (> Talos's 5 s time-sync wait)
	timeSyncWait     = 5 * time.Second  // Talos waits this long before "time is not in sync yet"
	missesToLeave    = 3                // failed probes before a candidate leaves the view
	etcdLoop         = 3 * time.Second  // how often a waiting etcd looks for a cluster to join
	// livenessRounds bounds, in scan intervals beyond PRE_BOOTSTRAP_DELAY,
	// the time from the end of the chaos until every daemon is done.
	livenessRounds = 12
)

var epoch = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

type params struct {
	nCP, nWorkers     int
	quorum            int
	scan, confirmWait time.Duration
	preDelay          time.Duration
	chaosEnd          time.Duration
	loss              float64
	replyLoss         float64
	stepCrash         float64
	preBootstrapped   bool
	fillMax, joinMax  time.Duration
}

type pending struct {
	bootID string
	fillAt time.Duration
}

type node struct {
	idx          int
	ip           netip.Addr
	cp, foreign  bool
	up           bool
	bootID       string
	boots        int
	bootAt       time.Duration
	apiAt        time.Duration
	allowedAt    time.Duration // machined allows Bootstrap
	offset       time.Duration // clock error; stepped to 0 at time sync
	synced       bool
	statusFile   []byte // /var/lib/kommodity-autobootstrap/status.json
	data         int    // /var/lib/etcd: 0 empty, else cluster ID
	etcd         string // etcd service state, "" when absent
	healthy      bool
	pending      *pending // machined's in-memory bootstrap request
	joining      bool
	daemon       *daemon
	gen          int // daemon generation: events of a dead daemon are dropped
	bootstrapped bool
}

type knownPeer struct {
	cand   election.Candidate
	misses int
}

type daemon struct {
	gen   int
	st    election.Status
	vt    election.ViewTracker
	known map[int]*knownPeer
	done  bool
}

type probe struct {
	ok      bool
	cp      bool
	foreign bool
	facts   election.PeerFacts
}

type event struct {
	at  time.Duration
	seq uint64
	fn  func()
}

type queue []event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}

	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]

	return e
}

type cut struct {
	from, to time.Duration
	links    map[[2]int]bool
}

type sim struct {
	opts     Options
	rng      *rand.Rand
	p        params
	now      time.Duration
	q        queue
	seq      uint64
	nodes    []*node
	cuts     []cut
	delay    [][]time.Duration
	clusters int
	nextID   int
	problem  string
	double   bool
	trace    []string
	paths    map[string]int
}

// Run simulates the scenario of opts.Seed.
func Run(opts Options) Result {
	s := &sim{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, 0x6b6f6d6d6f646974)), paths: map[string]int{}}
	s.setup()

	horizon := s.p.chaosEnd + s.slack() + s.p.preDelay + livenessRounds*s.p.scan
	for len(s.q) > 0 && s.q[0].at <= horizon && !s.allDone() {
		e := heap.Pop(&s.q).(event)
		s.now = e.at
		e.fn()
	}

	res := Result{Seed: opts.Seed, Scenario: s.describe(), ClustersCreated: s.clusters, DoubleBootstrap: s.double, Problem: s.problem}

	if !s.double {
		if why := s.livenessProblem(); why != "" {
			res.LivenessFailure = true
			res.Problem = why
		} else {
			res.SettledAfter = max(s.now-s.p.chaosEnd, 0)
			res.Rounds = float64(res.SettledAfter-s.p.preDelay-s.slack()) / float64(s.p.scan)
		}
	}

	res.Trace = s.trace
	res.Paths = s.paths

	return res
}

// slack is the time the model itself takes after the chaos, beyond rounds:
// the last daemon restart and time sync, the data directory filling, etcd
// joining.
func (s *sim) slack() time.Duration {
	return 30*time.Second + s.p.fillMax + s.p.joinMax + 2*etcdLoop + s.resendAfter()
}

// resendAfter is the daemon's etcd wait before resending a Bootstrap that
// may be under way: longer than any data directory takes to fill here, as
// the daemon's 5 minutes are longer than an etcd image pull.
func (s *sim) resendAfter() time.Duration {
	return 2*s.p.fillMax + bootstrapTimeout
}

func (s *sim) at(d time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.q, event{at: s.now + d, seq: s.seq, fn: fn})
}

func (s *sim) dur(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}

	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

func (s *sim) chance(p float64) bool { return s.rng.Float64() < p }

func (s *sim) tracef(n *node, format string, args ...any) {
	if !s.opts.Trace {
		return
	}

	who := "sim"
	if n != nil {
		who = fmt.Sprintf("n%d(%s)", n.idx, n.ip)
	}

	s.trace = append(s.trace, fmt.Sprintf("%9.3fs %-18s %s", s.now.Seconds(), who, fmt.Sprintf(format, args...)))
}

func (s *sim) setup() {
	p := &s.p
	p.nCP = 1 + s.rng.IntN(7)
	p.nWorkers = s.rng.IntN(4)
	majority := p.nCP/2 + 1
	p.quorum = majority + s.rng.IntN(p.nCP-majority+1)
	p.scan = s.dur(5*time.Second, 15*time.Second)
	p.confirmWait = s.dur(3*time.Second, 10*time.Second)
	p.preDelay = s.dur(5*time.Second, 30*time.Second)
	p.chaosEnd = s.dur(60*time.Second, 300*time.Second)
	p.loss = []float64{0, 0.02, 0.1, 0.3}[s.rng.IntN(4)]
	p.replyLoss = []float64{0, 0.3, 0.7}[s.rng.IntN(3)]
	p.stepCrash = []float64{0, 0.1, 0.3}[s.rng.IntN(3)]
	p.preBootstrapped = s.chance(0.1)
	p.fillMax = s.dur(time.Second, 20*time.Second)
	p.joinMax = s.dur(2*time.Second, 20*time.Second)

	// Addresses in random order so that numeric and string order differ.
	hosts := s.rng.Perm(250)
	total := p.nCP + p.nWorkers + 1

	for i := range total {
		n := &node{idx: i, ip: netip.AddrFrom4([4]byte{198, 18, 0, byte(hosts[i] + 2)}), cp: i < p.nCP}
		n.foreign = i == total-1 // another cluster's node: other CA, older boot
		s.nodes = append(s.nodes, n)
	}

	s.delay = make([][]time.Duration, total)
	for i := range s.delay {
		s.delay[i] = make([]time.Duration, total)
		for j := range s.delay[i] {
			s.delay[i][j] = s.dur(200*time.Microsecond, 200*time.Millisecond)
		}
	}

	if p.preBootstrapped {
		// An existing cluster is recognisable only if every quorum holds a
		// member: more than nCP-quorum members (see doc.go, assumptions).
		members := p.nCP - p.quorum + 1 + s.rng.IntN(p.quorum)
		s.nextID = 1

		for _, i := range s.rng.Perm(p.nCP)[:members] {
			s.nodes[i].data = 1
		}
	}

	// Boots: ties on purpose (same second, same clock error), late joiners.
	offsets := []time.Duration{0, 0, 30 * time.Second, -45 * time.Second, 90 * time.Second}
	for _, n := range s.nodes {
		at := s.dur(0, 60*time.Second).Truncate(5 * time.Second)
		if s.chance(0.15) {
			at = s.dur(0, p.chaosEnd-60*time.Second)
		}

		if n.foreign {
			at = 0
		}

		off := offsets[s.rng.IntN(len(offsets))]
		if n.foreign {
			off = -time.Hour
		}

		s.at(at, func() { s.boot(n, off) })
	}

	s.chaos()
}

func (s *sim) chaos() {
	p := s.p

	for range s.rng.IntN(3) {
		c := cut{from: s.dur(0, p.chaosEnd), links: map[[2]int]bool{}}
		c.to = min(c.from+s.dur(10*time.Second, 120*time.Second), p.chaosEnd)

		if s.chance(0.5) {
			side := make([]bool, len(s.nodes))
			for i := range side {
				side[i] = s.chance(0.5)
			}

			for i := range s.nodes {
				for j := range s.nodes {
					if side[i] != side[j] {
						c.links[[2]int{i, j}] = true
					}
				}
			}
		} else {
			// Non-transitive cuts: A and B cannot talk, both reach C.
			for i := range s.nodes {
				for j := i + 1; j < len(s.nodes); j++ {
					if s.chance(0.3) {
						c.links[[2]int{i, j}], c.links[[2]int{j, i}] = true, true
					}
				}
			}
		}

		s.cuts = append(s.cuts, c)
		s.at(c.from, func() { s.tracef(nil, "partition begins, %d links cut until %.1fs", len(c.links), c.to.Seconds()) })
	}

	for _, n := range s.nodes {
		if !n.cp {
			continue
		}

		for range s.rng.IntN(3) {
			s.at(s.dur(0, p.chaosEnd), func() { s.crash(n, "random crash") })
		}

		if s.chance(0.3) {
			s.at(s.dur(0, p.chaosEnd-60*time.Second), func() { s.reboot(n) })
		}

		if s.chance(0.2) {
			s.at(s.dur(0, p.chaosEnd), func() {
				if n.up && n.synced {
					step := s.dur(-20*time.Second, 20*time.Second)
					n.offset += step
					s.tracef(n, "clock stepped by %s", step)
				}
			})
		}
	}
}

func (s *sim) inChaos() bool { return s.now < s.p.chaosEnd }

func (s *sim) wall(n *node) time.Time { return epoch.Add(s.now + n.offset) }

// bootTime is kernel btime as SystemStat reports it: wall clock minus
// uptime, in whole seconds, so it moves when the clock is stepped.
func (s *sim) bootTime(n *node) time.Time {
	return epoch.Add(n.bootAt + n.offset).Truncate(time.Second)
}

func (s *sim) boot(n *node, offset time.Duration) {
	n.boots++
	n.up = true
	n.bootID = fmt.Sprintf("%02d-%d-%08x", n.idx, n.boots, s.rng.Uint32())
	n.bootAt = s.now
	n.offset = offset
	n.synced = false
	n.apiAt = s.now + s.dur(time.Second, 10*time.Second)
	n.allowedAt = n.apiAt + s.dur(0, 10*time.Second)
	n.pending = nil
	n.joining = false
	n.healthy = false
	n.etcd = ""
	s.tracef(n, "boot %s (cp=%v foreign=%v data=%d)", n.bootID, n.cp, n.foreign, n.data)

	if n.foreign {
		n.synced, n.offset = true, offset
		return
	}

	gen := n.boots
	s.at(s.dur(time.Second, 30*time.Second), func() {
		if n.boots == gen && n.up {
			n.synced = true
			n.offset = 0 // Talos steps the clock at the first sync: boot time moves
			s.tracef(n, "time synced")
		}
	})

	if !n.cp {
		return
	}

	s.at(n.apiAt-s.now, func() {
		if n.boots != gen || !n.up {
			return
		}

		n.etcd = "Preparing"
		if n.data != 0 {
			s.at(2*time.Second, func() {
				if n.boots == gen && n.up && n.data != 0 {
					n.etcd, n.healthy = "Running", true
				}
			})
		}

		s.etcdLoop(n, gen)
	})
	s.at(n.apiAt-s.now+s.dur(0, 10*time.Second), func() {
		if n.boots == gen && n.up && n.daemon == nil {
			s.startDaemon(n)
		}
	})
}

func (s *sim) reboot(n *node) {
	if !n.up {
		return
	}

	s.tracef(n, "reboot (bootstrap request pending: %v)", n.pending != nil)

	if n.pending != nil {
		s.paths["reboot with a pending bootstrap request"]++
	}
	s.kill(n)
	n.up = false
	n.pending = nil
	n.etcd, n.healthy = "", false
	s.at(s.dur(5*time.Second, 30*time.Second), func() { s.boot(n, []time.Duration{0, 40 * time.Second, -40 * time.Second}[s.rng.IntN(3)]) })
}

func (s *sim) kill(n *node) {
	n.daemon = nil
	n.gen++
}

func (s *sim) crash(n *node, why string) {
	if n.daemon == nil || n.daemon.done {
		return
	}

	s.tracef(n, "daemon crash: %s", why)
	s.paths["daemon crash: "+why]++
	s.kill(n)

	gen, boots := n.gen, n.boots
	s.at(s.dur(time.Second, 20*time.Second), func() {
		if n.gen == gen && n.boots == boots && n.up && n.daemon == nil {
			s.startDaemon(n)
		}
	})
}

// maybeCrash injects a crash at a step boundary during the chaos.
func (s *sim) maybeCrash(n *node, where string) bool {
	if s.inChaos() && s.chance(s.p.stepCrash) {
		s.crash(n, where)
		return true
	}

	return false
}

// etcdLoop is the etcd service of a control-plane node waiting to join:
// once a reachable member runs, it joins after a delay.
func (s *sim) etcdLoop(n *node, gen int) {
	s.at(etcdLoop, func() {
		if n.boots != gen || !n.up {
			return
		}

		if n.data == 0 && n.pending == nil && !n.joining {
			for _, m := range s.nodes {
				if m != n && m.cp && m.healthy && m.data != 0 && s.reachable(n, m) {
					n.joining = true
					cluster := m.data

					s.at(s.dur(time.Second, s.p.joinMax), func() {
						if n.boots == gen && n.up && n.data == 0 && n.pending == nil {
							n.data, n.etcd, n.healthy = cluster, "Running", true
							s.tracef(n, "etcd joined cluster %d", cluster)
						}

						n.joining = false
					})

					break
				}
			}
		}

		s.etcdLoop(n, gen)
	})
}

func (s *sim) reachable(a, b *node) bool {
	if !a.up || !b.up || s.now < a.apiAt || s.now < b.apiAt {
		return false
	}

	for _, c := range s.cuts {
		if s.now >= c.from && s.now < c.to && c.links[[2]int{a.idx, b.idx}] {
			return false
		}
	}

	return true
}

func (s *sim) lost() bool { return s.inChaos() && s.chance(s.p.loss) }

func (s *sim) startDaemon(n *node) {
	n.gen++
	d := &daemon{gen: n.gen, known: map[int]*knownPeer{}}
	self := s.selfCandidate(n)

	// Reload the own status file through the same JSON as statusfile.Store.
	if n.statusFile != nil {
		saved, err := election.ParseStatus(n.statusFile)
		if err != nil {
			s.fail(fmt.Sprintf("n%d: own status file unreadable: %v", n.idx, err))
			return
		}

		d.st = election.Resume(*saved, self)
	} else {
		d.st = election.NewStatus(self)
	}

	n.daemon = d
	s.tracef(n, "daemon start: phase=%s lock=%v intent=%d withdrawn=%d", d.st.Phase, d.st.Lock, d.st.Intent, d.st.WithdrawnThrough)
	s.round(n, d)
}

func (s *sim) alive(n *node, d *daemon) bool { return n.daemon == d && n.gen == d.gen && n.up }

func (s *sim) selfCandidate(n *node) election.Candidate {
	return election.Candidate{Incarnation: election.Incarnation{IP: n.ip, BootID: n.bootID}, BootTime: s.bootTime(n)}
}

// round is one daemon round: probe every address, then decide.
func (s *sim) round(n *node, d *daemon) {
	s.scan(n, d, func(results []probe) { s.decide(n, d, results) })
}

// scan probes every other node; each probe sees the peer's state at the
// moment it reaches it, so probes interleave with other nodes' writes.
func (s *sim) scan(n *node, d *daemon, then func([]probe)) {
	results := make([]probe, len(s.nodes))
	longest := time.Duration(0)

	for _, m := range s.nodes {
		if m == n {
			continue
		}

		rtt := s.delay[n.idx][m.idx] + s.delay[m.idx][n.idx]
		if s.lost() {
			rtt = probeTimeout
		} else {
			s.at(s.delay[n.idx][m.idx], func() {
				if s.reachable(n, m) {
					results[m.idx] = s.probe(m)
				}
			})
		}

		if !s.reachable(n, m) && rtt < probeTimeout {
			rtt = probeTimeout // unreachable now: the probe times out
		}

		longest = max(longest, rtt)
	}

	s.at(longest, func() {
		if s.alive(n, d) {
			then(results)
		}
	})
}

var errProbe = status.Error(codes.DeadlineExceeded, "context deadline exceeded")

// probe is what the peer's apid answers; each RPC may be lost on its own.
func (s *sim) probe(m *node) probe {
	if m.foreign {
		return probe{ok: true, foreign: true} // its certificate fails the CA check
	}

	if !m.cp {
		return probe{ok: true}
	}

	cand := s.selfCandidate(m)
	facts := election.PeerFacts{Candidate: cand}

	switch {
	case s.lost():
		facts.StatusState, facts.StatusErr = election.StatusUnreadable, errProbe.Error()
	case m.statusFile == nil:
		facts.StatusState = election.StatusMissing
	default:
		st, err := election.ParseStatus(m.statusFile)
		switch {
		case err != nil:
			facts.StatusState, facts.StatusErr = election.StatusUnreadable, err.Error()
		case st.Incarnation.BootID != m.bootID:
			facts.StatusState = election.StatusStale
		default:
			facts.StatusState, facts.Status = election.StatusOK, st
		}
	}

	facts.Signs = s.signs(m, true)

	return probe{ok: true, cp: true, facts: facts}
}

// signs answers ServiceList, List /var/lib/etcd and EtcdMemberList as Talos
// does, with per-RPC loss when remote.
func (s *sim) signs(m *node, remote bool) election.Signs {
	var (
		svc                     transport.ServiceState
		svcErr, dataErr, memErr error
		members                 []string
	)

	if remote && s.lost() {
		svcErr = errProbe
	} else if m.etcd != "" {
		svc = transport.ServiceState{Found: true, State: m.etcd, Healthy: m.healthy}
	}

	if remote && s.lost() {
		dataErr = errProbe
	}

	switch {
	case remote && s.lost():
		memErr = errProbe
	case m.etcd == "Running":
		for _, o := range s.nodes {
			if o.cp && o.data == m.data && m.data != 0 {
				members = append(members, o.ip.String())
			}
		}
	default:
		memErr = status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp [::1]:2379: connect: connection refused\"")
	}

	return transport.EtcdSigns(svc, svcErr, m.data == 0, dataErr, members, memErr)
}

// observe turns probe results into the daemon's observation, keeping a
// candidate in view until it missed several probes in a row.
func (s *sim) observe(n *node, d *daemon, results []probe) election.Observation {
	obs := election.Observation{
		Now:               s.wall(n),
		Self:              s.selfCandidate(n),
		SelfSigns:         s.signs(n, false),
		SelfTimeSynced:    n.synced,
		SelfEtcdHealthy:   n.etcd == "Running" && n.healthy,
		Quorum:            s.p.quorum,
		PreBootstrapDelay: s.p.preDelay,
		ConfirmWait:       s.p.confirmWait,
		ResendAfter:       s.resendAfter(),
	}

	for _, m := range s.nodes {
		if m == n {
			continue
		}

		r := results[m.idx]

		switch {
		case r.ok && r.cp:
			d.known[m.idx] = &knownPeer{cand: r.facts.Candidate}
			obs.Peers = append(obs.Peers, r.facts)
		case r.ok:
			delete(d.known, m.idx)
		case d.known[m.idx] != nil:
			k := d.known[m.idx]
			k.misses++

			if k.misses >= missesToLeave {
				delete(d.known, m.idx)
				continue
			}

			obs.Peers = append(obs.Peers, election.PeerFacts{
				Candidate: k.cand, StatusState: election.StatusUnreadable, StatusErr: "probe failed",
				Signs: election.Signs{Unknown: []string{"probe failed"}},
			})
		}
	}

	view := make([]election.Candidate, 0, 1+len(obs.Peers))
	view = append(view, obs.Self)

	for _, p := range obs.Peers {
		view = append(view, p.Candidate)
	}

	obs.ViewStableSince = d.vt.Observe(obs.Now, view)

	return obs
}

func (s *sim) save(n *node, st election.Status) {
	data, err := election.MarshalStatus(st)
	if err == nil {
		err = st.Validate()
	}

	if err != nil {
		s.fail(fmt.Sprintf("n%d: cannot save status: %v", n.idx, err))
		return
	}

	n.statusFile = data
}

func (s *sim) decide(n *node, d *daemon, results []probe) {
	obs := s.observe(n, d, results)
	st, dec := election.Step(d.st, obs)

	if s.opts.SkipConfirmation && dec.Kind == election.Lead && st.Phase == election.PhaseAnnounced {
		// Negative control: no waiting for locks, stability or checks.
		st.Phase, st.Bootstrapping, st.BootstrapBootID, st.BootstrapSent = election.PhaseBootstrapping, st.Intent, n.bootID, false
		dec = election.Decision{Kind: election.BeginBootstrap, Reason: "negative control: bootstrapping without confirmation"}
	}

	s.countPaths(d.st, st, dec)

	if dec.Kind != election.Wait || s.opts.Trace {
		s.tracef(n, "%s: %s [phase=%s lock=%v peers=%d]", dec.Kind, dec.Reason, st.Phase, st.Lock, len(obs.Peers))
	}

	d.st = st
	s.save(n, st) // persist before acting

	switch dec.Kind {
	case election.Done:
		d.done = true
		return
	case election.Halt:
		s.fail(fmt.Sprintf("n%d halted: %s", n.idx, dec.Reason))
		return
	case election.BeginBootstrap:
		if s.maybeCrash(n, "after persisting bootstrapping") {
			return
		}

		if s.opts.SkipConfirmation {
			d.st = election.MarkSending(d.st, s.wall(n))
			s.save(n, d.st)
			s.sendBootstrap(n, d)

			return
		}

		s.scan(n, d, func(results []probe) {
			obs2 := s.observe(n, d, results)
			if err := election.ConfirmLocks(d.st, obs2); err != nil {
				s.paths["ConfirmLocks refused"]++
				s.tracef(n, "not sending: %v", err)
				s.next(n, d, s.p.confirmWait)

				return
			}

			// Persisted before the RPC, as the daemon does: from here a
			// restart must assume the request may be under way.
			d.st = election.MarkSending(d.st, s.wall(n))
			s.save(n, d.st)

			if s.maybeCrash(n, "after confirming locks") {
				return
			}

			s.sendBootstrap(n, d)
		})

		return
	case election.Wait:
		s.next(n, d, s.p.scan)
	default:
		s.next(n, d, s.p.confirmWait)
	}
}

func (s *sim) next(n *node, d *daemon, after time.Duration) {
	s.at(after+s.dur(0, time.Second), func() {
		if s.alive(n, d) {
			s.round(n, d)
		}
	})
}

// sendBootstrap calls Bootstrap on the local apid; machined checks as Talos
// v1.13 does and the reply may be lost after the request took effect.
func (s *sim) sendBootstrap(n *node, d *daemon) {
	s.tracef(n, "Bootstrap sent for intent %d", d.st.Bootstrapping)

	var (
		err   error
		after = time.Millisecond
	)

	switch {
	case s.now < n.allowedAt || (s.inChaos() && s.chance(0.15)):
		err = status.Error(codes.FailedPrecondition, "bootstrap is not available yet")
	case !n.synced || (s.inChaos() && s.chance(0.15)):
		// machined's time sync condition can lag the daemon's reading.
		err, after = status.Error(codes.FailedPrecondition, "time is not in sync yet"), timeSyncWait
	case n.data != 0:
		err = status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	default:
		s.accept(n)

		if s.inChaos() && s.chance(s.p.replyLoss) {
			err, after = status.Error(codes.DeadlineExceeded, "context deadline exceeded"), bootstrapTimeout
		}
	}

	s.at(after, func() {
		if !s.alive(n, d) {
			return
		}

		if s.maybeCrash(n, "before recording the Bootstrap answer") {
			return
		}

		outcome := transport.ClassifyBootstrap(err)
		s.paths["bootstrap answer "+outcome.String()]++
		st, dec := election.AfterBootstrap(d.st, outcome, s.wall(n))
		s.tracef(n, "Bootstrap answer %v -> %s: %s", err, outcome, dec.Reason)
		d.st = st
		s.save(n, st)

		if dec.Kind == election.Halt {
			s.fail(fmt.Sprintf("n%d halted: %s", n.idx, dec.Reason))
			return
		}

		s.next(n, d, s.p.confirmWait)
	})
}

// accept is machined taking a Bootstrap: etcd restarts in bootstrap mode and
// the data directory fills later; the request dies if the node reboots first.
func (s *sim) accept(n *node) {
	for _, m := range s.nodes {
		if m != n && (m.pending != nil || (m.cp && m.data != 0)) {
			s.violation(fmt.Sprintf("n%d accepted Bootstrap while n%d has a cluster or a pending bootstrap", n.idx, m.idx))
		}
	}

	if n.pending != nil && n.pending.bootID == n.bootID {
		// Talos restarts etcd in bootstrap mode on a repeat while the data
		// directory is still empty: a second bootstrap of this node.
		s.violation(fmt.Sprintf("n%d accepted a second Bootstrap while its first was still pending", n.idx))
	}

	p := &pending{bootID: n.bootID, fillAt: s.now + s.dur(500*time.Millisecond, s.p.fillMax)}
	n.pending = p
	n.etcd, n.healthy = "Preparing", false
	s.tracef(n, "machined accepted Bootstrap; data directory fills at %.1fs", p.fillAt.Seconds())

	s.at(p.fillAt-s.now, func() {
		if n.pending != p || n.bootID != p.bootID || !n.up {
			return
		}

		n.pending = nil
		s.nextID++
		n.data = s.nextID
		n.bootstrapped = true
		s.clusters++
		s.tracef(n, "etcd cluster %d created", n.data)

		if s.clusters > 1 || (s.p.preBootstrapped && s.clusters > 0) {
			s.violation(fmt.Sprintf("cluster %d created by n%d: %d clusters", n.data, n.idx, s.clusters))
		}

		s.at(time.Second, func() {
			if n.data != 0 && n.up && n.bootID == p.bootID {
				n.etcd, n.healthy = "Running", true
			}
		})
	})

	if s.now+2*s.p.fillMax+60*time.Second < s.p.chaosEnd && s.chance(0.2) {
		// Reboot before or after the data directory fills.
		s.at(s.dur(0, 2*s.p.fillMax), func() { s.reboot(n) })
	}
}

func (s *sim) countPaths(before, after election.Status, dec election.Decision) {
	switch {
	case strings.Contains(dec.Reason, "OPERATOR BREAK-LOCK"):
		s.paths["lock released: break-lock"]++
	case strings.Contains(dec.Reason, "leader withdrew"):
		s.paths["lock released: leader withdrew"]++
	case strings.Contains(dec.Reason, "rebooted (boot ID"):
		s.paths["lock released: leader rebooted, data empty"]++
	}

	if after.WithdrawnThrough > before.WithdrawnThrough && before.Incarnation == after.Incarnation {
		if before.Phase == election.PhaseBootstrapping || before.Phase == election.PhaseBootstrapped {
			s.paths["withdrawn: bootstrap died with an earlier boot"]++
		} else {
			s.paths["withdrawn: announced intent"]++
		}
	}

	if dec.Kind == election.BeginBootstrap && before.Phase == election.PhaseBootstrapping {
		s.paths["bootstrap resent on the same node"]++
	}

	if dec.Kind == election.Follow && strings.Contains(dec.Reason, "a cluster exists") {
		s.paths["followed: cluster exists"]++
	}
}

func (s *sim) violation(why string) {
	if !s.double {
		s.double = true
		s.problem = "DOUBLE BOOTSTRAP: " + why
		s.tracef(nil, "%s", s.problem)
	}
}

func (s *sim) fail(why string) {
	if s.problem == "" {
		s.problem = why
		s.tracef(nil, "FAILURE: %s", why)
	}
}

func (s *sim) allDone() bool {
	if s.now < s.p.chaosEnd {
		return false
	}

	for _, n := range s.nodes {
		if n.cp && (n.daemon == nil || !n.daemon.done || !n.healthy) {
			return false
		}
	}

	return true
}

func (s *sim) livenessProblem() string {
	if s.problem != "" {
		return s.problem
	}

	want := 1
	if s.p.preBootstrapped {
		want = 0
	}

	if s.clusters != want {
		return fmt.Sprintf("%d clusters created, want %d", s.clusters, want)
	}

	var stuck []string

	for _, n := range s.nodes {
		if n.cp && (n.daemon == nil || !n.daemon.done || !n.healthy) {
			reason := "no daemon"
			if n.daemon != nil {
				reason = fmt.Sprintf("%s: %s", n.daemon.st.Phase, n.daemon.st.Reason)
			}

			stuck = append(stuck, fmt.Sprintf("n%d (%s)", n.idx, reason))
		}
	}

	if len(stuck) > 0 {
		return "not done by the liveness deadline: " + strings.Join(stuck, "; ")
	}

	return ""
}

func (s *sim) describe() string {
	var ips []string
	for _, n := range s.nodes[:s.p.nCP] {
		ips = append(ips, n.ip.String())
	}

	slices.Sort(ips)

	return fmt.Sprintf("cp=%d workers=%d quorum=%d scan=%s confirm=%s delay=%s chaos=%s loss=%.2f replyLoss=%.1f stepCrash=%.1f preBootstrapped=%v cuts=%d",
		s.p.nCP, s.p.nWorkers, s.p.quorum, s.p.scan.Round(time.Millisecond), s.p.confirmWait.Round(time.Millisecond),
		s.p.preDelay.Round(time.Millisecond), s.p.chaosEnd.Round(time.Second), s.p.loss, s.p.replyLoss, s.p.stepCrash, s.p.preBootstrapped, len(s.cuts))
}
