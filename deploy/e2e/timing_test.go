package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestE2ETiming measures how long the protocol takes from the last node's
// apid answering to Bootstrap, and what a waiting daemon costs, at the
// shipped defaults and at the harness's short settings. The
// figures are logged as FIGURE lines, never asserted: only correctness is
// (one Bootstrap, one cluster, every daemon done), as in TestE2E.
func TestE2ETiming(t *testing.T) {
	tools := requireRoot(t)
	art := build(t, t.TempDir(), tools)
	began := time.Now()

	for _, set := range []timingSettings{shippedDefaults, sweepOnlyDefaults, shortSettings} {
		t.Run(set.name+"-three-together", func(t *testing.T) { testTimingTogether(t, art, set) })
		t.Run(set.name+"-late-third-node", func(t *testing.T) { testTimingLate(t, art, set) })
	}

	t.Run("defaults-no-quorum-idle", func(t *testing.T) { testIdleCost(t, art, shippedDefaults) })
	// Without cluster discovery the sweep of the /24 is what a waiting
	// daemon spends its time on.
	t.Run("defaults-sweep-only-no-quorum-idle", func(t *testing.T) { testIdleCost(t, art, sweepOnlyDefaults) })

	t.Logf("timing scenarios took %.1fs", time.Since(began).Seconds())
}

// timingSettings is the environment of the daemons in a timing scenario.
type timingSettings struct {
	name string
	env  func(quorum int) []string
}

// shippedDefaults sets QUORUM_NODES only: SCAN_INTERVAL 30s,
// FOLLOWER_CHECK_INTERVAL 15s, PRE_BOOTSTRAP_DELAY 10s, SCAN_TIMEOUT 2s and
// every other value are the daemon's own defaults.
var shippedDefaults = timingSettings{name: "defaults", env: func(quorum int) []string {
	return []string{"TALOS_AUTO_BOOTSTRAP_QUORUM_NODES=" + strconv.Itoa(quorum)}
}}

// sweepOnlyDefaults are the defaults on a site without Talos cluster
// discovery: the sweep alone finds the peers.
var sweepOnlyDefaults = timingSettings{name: "defaults-sweep-only", env: func(quorum int) []string {
	return []string{"TALOS_AUTO_BOOTSTRAP_QUORUM_NODES=" + strconv.Itoa(quorum), "TALOS_AUTO_BOOTSTRAP_DISCOVERY=scan"}
}}

// shortSettings are daemonEnv's, as in TestE2E.
var shortSettings = timingSettings{name: "short", env: func(quorum int) []string { return daemonEnv(quorum) }}

// timingLateDelay is how much later the third node's apid comes up.
const timingLateDelay = 15 * time.Second

// idleSettle and idleWindow: the no-quorum scenario samples CPU over
// idleWindow, idleSettle after the daemons started.
const (
	idleSettle = 10 * time.Second
	idleWindow = 30 * time.Second
)

// cpuSanityBound is a generous bound on a waiting daemon's CPU (percent of
// one core): CI machines vary, the figure itself is logged.
const cpuSanityBound = 50.0

// testTimingTogether: three control-plane nodes whose apids come up
// together, QUORUM_NODES=3; the daemons start once their apid answers, as
// the extension service depends on apid.
func testTimingTogether(t *testing.T, art artifacts, set timingSettings) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	nodes := w.controlPlanes(c, "cp", []int{2, 3, 1}, everyOther)
	lastAPID := time.Now() // startAPID returned within 20 ms of the last "listening"

	runs, clocks := startStamped(set.env(3), nodes...)

	w.waitAll(scenarioTimeout, runs...)
	expectDone(t, runs...)

	// nodes[2] booted first; the shipped order (address) picks the lowest
	// address instead.
	li := 2
	if !slices.Contains(set.env(3), "TALOS_AUTO_BOOTSTRAP_LEADER_ORDER=boot-time") {
		li = slices.Index(nodes, lowestAddress(nodes))
	}

	leader := nodes[li]
	got := expectOneBootstrap(t, w, c, leader, nodes...)
	expectJoined(t, got, nodes...)
	expectNoMountLeftovers(t, nodes...)

	name := "timing/" + set.name + "/together"
	seen, ok := clocks[li].first(seesAll(3), lastAPID)

	t.Logf("FIGURE %s: Bootstrap (the fake apid's record) %.2fs after the last apid answered, %.2fs after the last daemon started; "+
		"the leader saw all 3 nodes %s after the last apid answered, Bootstrap %s after that; %s",
		name, got.CreatedAt.Sub(lastAPID).Seconds(), got.CreatedAt.Sub(lastStarted(runs...)).Seconds(),
		sinceOr(seen, lastAPID, ok), sinceOr(got.CreatedAt, seen, ok), machineLoad())
	costFigures(t, name, runs...)
	w.dumpIfFailed(t)
}

// testTimingLate: two control-plane nodes wait for QUORUM_NODES=3; the third
// node's apid comes up timingLateDelay later, its daemon right after. The
// third is the youngest, so the leader is an early node and must find it
// with its rescans.
func testTimingLate(t *testing.T, art artifacts, set timingSettings) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	early := w.controlPlanes(c, "cp", []int{1, 2}, everyOther)
	late := w.addNode(nodeSpec{name: "cp3", cluster: c, bootTime: w.booted(3), holdState: true})

	runs, clocks := startStamped(set.env(3), early...)
	earlyStart := time.Now()

	// The early daemons' CPU while they wait for the third node, after
	// their start-up (credentials, first sweep).
	time.Sleep(3 * time.Second)

	waiting := sampleCPU(t, runs...)

	time.Sleep(time.Until(earlyStart.Add(timingLateDelay)))

	waitCPU := waiting.percent(t)

	expectNothingBeforeLate(t, w, early, runs)

	late.startAPID()
	lateAPID := time.Now()

	lateRuns, lateClocks := startStamped(set.env(3), late)
	runs = append(runs, lateRuns...)
	clocks = append(clocks, lateClocks...)

	w.waitAll(scenarioTimeout, runs...)
	expectDone(t, runs...)

	nodes := append(early, late)
	leader := early[0]
	got := expectOneBootstrap(t, w, c, leader, nodes...)

	if !got.CreatedAt.After(lateAPID) {
		t.Errorf("bootstrapped at %s, before the third node's apid answered at %s", got.CreatedAt, lateAPID)
	}

	expectJoined(t, got, nodes...)
	expectNoMountLeftovers(t, nodes...)

	name := "timing/" + set.name + "/late-third-node"
	seen, ok := clocks[0].first(seesAll(3), lateAPID)

	t.Logf("FIGURE %s: Bootstrap (the fake apid's record) %.2fs after the third apid answered (%s late); "+
		"the leader (%s) first saw all 3 nodes %s after it answered, Bootstrap %s after that; %s",
		name, got.CreatedAt.Sub(lateAPID).Seconds(), timingLateDelay, leader.spec.name,
		sinceOr(seen, lateAPID, ok), sinceOr(got.CreatedAt, seen, ok), machineLoad())

	t.Logf("FIGURE %s: the leader's sweeps ended at %s after its start (the third apid answered at +%.2fs)",
		name, clocks[0].times(func(l logLine) bool { return l.msg() == "peer discovery complete" }, earlyStart),
		lateAPID.Sub(earlyStart).Seconds())

	for i, p := range runs[:len(early)] {
		t.Logf("FIGURE %s: %s: CPU %.2f%% of a core over %.1fs waiting for the third node; %s",
			name, p.name, waitCPU[i], waiting.window().Seconds(), machineLoad())
		checkCPUSanity(t, p, waitCPU[i])
	}

	costFigures(t, name, runs...)
	w.dumpIfFailed(t)
}

// testIdleCost: QUORUM_NODES=4 with three control-plane nodes: quorum is
// never reached. After idleSettle, the waiting daemons' CPU is sampled over
// idleWindow; then they are killed and their peak RSS read.
func testIdleCost(t *testing.T, art artifacts, set timingSettings) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	nodes := w.controlPlanes(c, "cp", []int{2, 3, 1}, everyOther)

	runs, clocks := startStamped(set.env(4), nodes...)

	time.Sleep(idleSettle)

	sample := sampleCPU(t, runs...)
	from := time.Now()

	time.Sleep(idleWindow)

	idle := sample.percent(t)
	to := time.Now()

	for i, p := range runs {
		if p.exited() {
			w.dump()
			t.Fatalf("%s exited (%d) while waiting for a quorum that cannot come", p.name, p.exitCode)
		}

		if calls := nodes[i].bootstrapCalls(); len(calls) != 0 {
			t.Errorf("%s got Bootstrap calls without quorum: %v", nodes[i].spec.name, calls)
		}
	}

	if cs := w.clusters(); len(cs) != 0 {
		t.Errorf("etcd clusters exist without quorum: %+v", cs)
	}

	for _, p := range runs {
		p.kill()
	}

	name := "timing/" + set.name + "/no-quorum-idle"

	for i, p := range runs {
		if !hasMessage(t, p, "waiting for quorum") {
			t.Errorf("%s: no \"waiting for quorum\" with 3 of 4 nodes", p.name)
		}

		sweeps := clocks[i].count(func(l logLine) bool { return l.msg() == "peer discovery complete" }, from, to)

		t.Logf("FIGURE %s: %s: CPU %.2f%% of a core over %.1fs waiting for quorum (%d sweeps in the window), peak RSS %s; %s",
			name, p.name, idle[i], sample.window().Seconds(), sweeps, peakRSS(p), machineLoad())
		checkCPUSanity(t, p, idle[i])
	}

	w.dumpIfFailed(t)
}

// seesAll matches the daemon's first sweep that found quorum-1 peers.
func seesAll(quorum int) func(logLine) bool {
	return func(l logLine) bool {
		return l.msg() == "peer discovery complete" && int(l.num("peers_found")) >= quorum-1
	}
}

func sinceOr(to, from time.Time, ok bool) string {
	if !ok {
		return "n/a (no such log line)"
	}

	return fmt.Sprintf("%.2fs", to.Sub(from).Seconds())
}

// costFigures logs each daemon's CPU over its whole run and its peak RSS.
func costFigures(t *testing.T, name string, runs ...*proc) {
	t.Helper()

	for _, p := range runs {
		ran := p.ended.Sub(p.started)
		cpu := p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()

		t.Logf("FIGURE %s: %s: ran %.1fs, CPU %.2fs (%.2f%% of a core over its run, start-up included), peak RSS %s; %s",
			name, p.name, ran.Seconds(), cpu.Seconds(), 100*cpu.Seconds()/ran.Seconds(), peakRSS(p), machineLoad())
	}
}

func peakRSS(p *proc) string {
	if kb := p.peakKB.Load(); kb > 0 {
		return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
	}

	return "n/a (exited before the first poll)"
}

func checkCPUSanity(t *testing.T, p *proc, percent float64) {
	t.Helper()

	if percent >= cpuSanityBound {
		t.Errorf("%s used %.1f%% of a core while waiting, beyond the sanity bound of %.0f%%", p.name, percent, cpuSanityBound)
	}
}

// machineLoad says how loaded the machine was when a figure was taken.
func machineLoad() string {
	load := "unknown"
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Fields(string(data))[0]
	}

	return fmt.Sprintf("load average %s on %d CPUs", load, runtime.NumCPU())
}

// userHZ is the unit of utime and stime in /proc/<pid>/stat on Linux.
const userHZ = 100

// cpuSample is the CPU time of some daemons at one moment.
type cpuSample struct {
	runs  []*proc
	at    time.Time
	ticks []int64
	end   time.Time
}

func sampleCPU(t *testing.T, runs ...*proc) *cpuSample {
	t.Helper()

	s := &cpuSample{runs: runs, at: time.Now()}
	for _, p := range runs {
		s.ticks = append(s.ticks, daemonTicks(t, p))
	}

	return s
}

// percent samples again and returns each daemon's CPU since the first
// sample, in percent of one core.
func (s *cpuSample) percent(t *testing.T) []float64 {
	t.Helper()

	s.end = time.Now()
	out := make([]float64, len(s.runs))

	for i, p := range s.runs {
		used := float64(daemonTicks(t, p)-s.ticks[i]) / userHZ
		out[i] = 100 * used / s.end.Sub(s.at).Seconds()
	}

	return out
}

func (s *cpuSample) window() time.Duration { return s.end.Sub(s.at) }

// daemonTicks is utime+stime of the daemon (every thread) from
// /proc/<pid>/stat; the exec chain ip→unshare→sh→env→chroot keeps the pid.
func daemonTicks(t *testing.T, p *proc) int64 {
	t.Helper()

	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}

	comm, rest, ok := strings.Cut(string(data), ") ")
	if !ok || !strings.HasSuffix(comm, "(kommodity-autob") {
		t.Fatalf("%s: /proc/%d/stat is not the daemon's: %q", p.name, p.cmd.Process.Pid, data)
	}

	// rest starts at field 3 (state); utime and stime are fields 14 and 15.
	fields := strings.Fields(rest)
	if len(fields) < 13 {
		t.Fatalf("%s: short /proc/%d/stat: %q", p.name, p.cmd.Process.Pid, data)
	}

	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)

	if err1 != nil || err2 != nil {
		t.Fatalf("%s: /proc/%d/stat utime %q stime %q", p.name, p.cmd.Process.Pid, fields[11], fields[12])
	}

	return utime + stime
}

// startStamped starts one daemon per node with env and times each of their
// log lines as it appears (the daemon's own timestamps have whole seconds).
func startStamped(env []string, nodes ...*node) ([]*proc, []*lineClock) {
	runs := make([]*proc, 0, len(nodes))
	clocks := make([]*lineClock, 0, len(nodes))

	for _, n := range nodes {
		p := n.startDaemon(env)
		runs = append(runs, p)
		clocks = append(clocks, stampLines(p))
	}

	return runs, clocks
}

// stampedLine is a log line and when the harness first read it.
type stampedLine struct {
	at   time.Time
	line logLine
}

// lineClock follows a process's stdout every 10 ms and records when each
// complete JSON line appeared, until the process ended.
type lineClock struct {
	mu    sync.Mutex
	lines []stampedLine
	done  chan struct{}
}

func stampLines(p *proc) *lineClock {
	lc := &lineClock{done: make(chan struct{})}

	go func() {
		defer close(lc.done)

		f, err := os.Open(p.stdout)
		if err != nil {
			return
		}
		defer f.Close() //nolint:errcheck

		var pending []byte

		buf := make([]byte, 64<<10)
		tick := time.NewTicker(10 * time.Millisecond)

		defer tick.Stop()

		for {
			ended := p.exited()

			for {
				n, err := f.Read(buf)
				pending = lc.add(append(pending, buf[:n]...), time.Now())

				if n == 0 || err == io.EOF {
					break
				}
			}

			if ended {
				return
			}

			select {
			case <-p.done:
			case <-tick.C:
			}
		}
	}()

	return lc
}

// add records the complete lines of data at now and returns the rest.
func (lc *lineClock) add(data []byte, now time.Time) []byte {
	lc.mu.Lock()
	defer lc.mu.Unlock()

	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return data
		}

		var l logLine
		if json.Unmarshal(data[:i], &l) == nil {
			lc.lines = append(lc.lines, stampedLine{at: now, line: l})
		}

		data = data[i+1:]
	}
}

func (lc *lineClock) snapshot() []stampedLine {
	lc.mu.Lock()
	defer lc.mu.Unlock()

	return append([]stampedLine(nil), lc.lines...)
}

// stamps lists when the lines matching match appeared; call it once the
// process ended (it waits for the last read).
func (lc *lineClock) stamps(match func(logLine) bool) []time.Time {
	<-lc.done

	var out []time.Time

	for _, s := range lc.snapshot() {
		if match(s.line) {
			out = append(out, s.at)
		}
	}

	return out
}

// first is when the first line matching match appeared at or after from.
func (lc *lineClock) first(match func(logLine) bool, from time.Time) (time.Time, bool) {
	for _, at := range lc.stamps(match) {
		if !at.Before(from) {
			return at, true
		}
	}

	return time.Time{}, false
}

// count is how many lines matching match appeared between from and to.
func (lc *lineClock) count(match func(logLine) bool, from, to time.Time) int {
	n := 0

	for _, at := range lc.stamps(match) {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}

	return n
}

// times lists, in seconds after from, when the lines matching match appeared.
func (lc *lineClock) times(match func(logLine) bool, from time.Time) string {
	var out []string

	for _, at := range lc.stamps(match) {
		out = append(out, fmt.Sprintf("+%.2fs", at.Sub(from).Seconds()))
	}

	return strings.Join(out, " ")
}
