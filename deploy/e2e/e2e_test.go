package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// dumpLogs prints every process's output even when a scenario passes.
var dumpLogs = flag.Bool("e2e.dump", false, "log every process's output, also when a scenario passes")

// scenarioTimeout bounds one scenario's wait for its daemons.
const scenarioTimeout = 2 * time.Minute

// TestE2E runs the scenarios one after another, each on a fresh topology.
func TestE2E(t *testing.T) {
	tools := requireRoot(t)
	art := build(t, t.TempDir(), tools)
	began := time.Now()

	t.Run("three-control-plane", func(t *testing.T) { testThreeControlPlane(t, art) })
	t.Run("control-plane-and-workers", func(t *testing.T) { testWithWorkers(t, art) })
	t.Run("late-third-node", func(t *testing.T) { testLateNode(t, art) })
	t.Run("foreign-cluster-on-segment", func(t *testing.T) { testForeignNode(t, art) })
	t.Run("existing-cluster-new-node", func(t *testing.T) { testExistingCluster(t, art) })
	t.Run("leader-killed-after-bootstrap", func(t *testing.T) { testLeaderKilled(t, art, false) })
	t.Run("leader-killed-bootstrap-reply-lost", func(t *testing.T) { testLeaderKilled(t, art, true) })
	t.Run("invalid-environment", func(t *testing.T) { testInvalidEnvironment(t, art) })
	t.Run("routed-subnets-members", func(t *testing.T) { testRoutedSubnets(t, art) })
	t.Run("ipv6-only-members", func(t *testing.T) { testIPv6Only(t, art, false) })
	t.Run("ipv6-only-peers", func(t *testing.T) { testIPv6Only(t, art, true) })
	t.Run("discovery-disabled-sweep", func(t *testing.T) { testDiscoveryDisabled(t, art) })

	t.Logf("e2e scenarios took %.1fs", time.Since(began).Seconds())
}

// world is a scenario's topology plus the cluster(s) in it.
type world struct {
	*topology
	base time.Time // boot times count from here
}

func newWorld(t *testing.T, art artifacts) *world {
	t.Helper()

	return &world{topology: newTopology(t, art), base: time.Now().Add(-time.Hour).Truncate(time.Second)}
}

func (w *world) dumpIfFailed(t *testing.T) {
	if t.Failed() || *dumpLogs {
		w.dump()
	}
}

// booted is a boot time minutes after the world's base: smaller is older.
func (w *world) booted(minutes int) time.Time {
	return w.base.Add(time.Duration(minutes) * time.Minute)
}

// controlPlanes adds and starts count control-plane nodes of c with the given
// boot times (minutes after base), apids first, then daemons.
func (w *world) controlPlanes(c *cluster, prefix string, bootMinutes []int, hold func(i int) bool) []*node {
	nodes := make([]*node, len(bootMinutes))
	for i, m := range bootMinutes {
		nodes[i] = w.addNode(nodeSpec{
			name: prefix + string(rune('1'+i)), cluster: c, bootTime: w.booted(m), holdState: hold(i),
		})
		nodes[i].startAPID()
	}

	return nodes
}

// startDaemons starts one daemon per node, all with the same environment.
func startDaemons(quorum int, nodes ...*node) []*proc {
	runs := make([]*proc, 0, len(nodes))
	for _, n := range nodes {
		runs = append(runs, n.startDaemon(daemonEnv(quorum)))
	}

	return runs
}

func everyOther(i int) bool { return i%2 == 0 }

// lowestAddress is the node LEADER_ORDER=address (and the Cluster API
// provider) picks: the lowest address in string order.
func lowestAddress(nodes []*node) *node {
	first := nodes[0]
	for _, n := range nodes[1:] {
		if n.ip.String() < first.ip.String() {
			first = n
		}
	}

	return first
}

// expectDone checks that every run exited 0 and left no temporary STATE
// mount point behind.
func expectDone(t *testing.T, runs ...*proc) {
	t.Helper()

	for _, p := range runs {
		if p.exitCode != 0 {
			t.Errorf("%s exited %d, want 0", p.name, p.exitCode)
		}
	}
}

func expectNoMountLeftovers(t *testing.T, nodes ...*node) {
	t.Helper()

	for _, n := range nodes {
		entries, err := os.ReadDir(filepath.Join(n.dir, "run", "kommodity-autobootstrap"))
		if err != nil && !os.IsNotExist(err) {
			t.Errorf("%s: %v", n.spec.name, err)
		}

		for _, e := range entries {
			t.Errorf("%s: leftover %s in /run/kommodity-autobootstrap", n.spec.name, e.Name())
		}
	}
}

// expectOneBootstrap checks, from both the registry and the fake apids' call
// logs, that c has exactly one etcd cluster, founded by leader with one
// accepted Bootstrap call.
func expectOneBootstrap(t *testing.T, w *world, c *cluster, leader *node, nodes ...*node) fakeapid.Cluster {
	t.Helper()

	ours := clustersOf(w.clusters(), c)
	if len(ours) != 1 {
		w.dump()
		t.Fatalf("cluster %s: %d etcd clusters in the registry, want exactly 1: %+v", c.name, len(ours), ours)
	}

	if ours[0].Founder != leader.ip.String() {
		t.Errorf("cluster %s bootstrapped on %s, want the oldest-booted node %s (%s)", c.name, ours[0].Founder, leader.spec.name, leader.ip)
	}

	if ours[0].Superseded {
		t.Errorf("cluster %s: the founder accepted Bootstrap twice (superseded)", c.name)
	}

	accepted := 0

	for _, n := range nodes {
		got := n.acceptedBootstraps()
		accepted += got

		if n != leader && len(n.bootstrapCalls()) != 0 {
			t.Errorf("%s (not the leader) got Bootstrap calls: %v", n.spec.name, n.bootstrapCalls())
		}
	}

	if accepted != 1 || leader.acceptedBootstraps() != 1 {
		t.Errorf("cluster %s: %d accepted Bootstrap calls in the apid logs (%d on the leader), want exactly 1 on the leader",
			c.name, accepted, leader.acceptedBootstraps())
	}

	return ours[0]
}

// expectJoined checks that every node is a member of the etcd cluster.
func expectJoined(t *testing.T, got fakeapid.Cluster, nodes ...*node) {
	t.Helper()

	members := map[string]bool{}
	for _, m := range got.Members {
		members[m.IP] = true
	}

	for _, n := range nodes {
		if !members[n.ip.String()] {
			t.Errorf("%s (%s) is not a member of etcd cluster %d: %+v", n.spec.name, n.ip, got.ID, got.Members)
		}
	}
}

// figures logs the benchmarks of a scenario (never asserted).
func figures(t *testing.T, name string, lastStart time.Time, founded *fakeapid.Cluster, runs ...*proc) {
	t.Helper()

	if founded != nil {
		t.Logf("FIGURE %s: bootstrap %.2fs after the last daemon started", name, founded.CreatedAt.Sub(lastStart).Seconds())
	}

	for _, p := range runs {
		sweep, probed := sweepSeconds(t, p)

		rss := "n/a (exited before the first poll)"
		if kb := p.peakKB.Load(); kb > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		}

		line := fmt.Sprintf("FIGURE %s: %s: exit %d, ran %.1fs, peak RSS %s", name, p.name, p.exitCode,
			p.ended.Sub(p.started).Seconds(), rss)
		if sweep >= 0 {
			line += fmt.Sprintf(", first discovery round %.2fs (%d addresses probed)", sweep, probed)
		}

		t.Log(line)
	}
}

// sweepSeconds reads the first discovery round's duration from the daemon's
// log: the Scan state's spent_s, less the quorum wait it logged before
// leaving (spent_s covers both).
func sweepSeconds(t *testing.T, p *proc) (float64, int) {
	t.Helper()

	wait, probed := 0.0, -1

	for _, l := range readLog(t, p.stdout) {
		switch l.msg() {
		case "peer discovery complete":
			if probed < 0 {
				probed = int(l.num("probed"))
			}
		case "waiting for quorum":
			wait = l.num("next_scan_in") / 1000
		case "state transition":
			if l.str("from") == "Scan" {
				return l.num("spent_s") - wait, probed
			}
		}
	}

	return -1, probed
}

// lastStarted is the latest start time among runs.
func lastStarted(runs ...*proc) time.Time {
	sorted := append([]*proc(nil), runs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].started.Before(sorted[j].started) })

	return sorted[len(sorted)-1].started
}

// testThreeControlPlane: three control-plane nodes with QUORUM_NODES=3 end
// with exactly one Bootstrap, at the shipped LEADER_ORDER on the lowest
// address (not the oldest boot), and every daemon exits 0 once its etcd is
// healthy.
func testThreeControlPlane(t *testing.T, art artifacts) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	nodes := w.controlPlanes(c, "cp", []int{2, 3, 1}, everyOther)

	// The shipped LEADER_ORDER (address): the lowest address in string
	// order leads, whatever the boot times.
	runs := make([]*proc, 0, len(nodes))
	for _, n := range nodes {
		runs = append(runs, n.startDaemon(daemonEnv(3, "TALOS_AUTO_BOOTSTRAP_LEADER_ORDER=")))
	}

	w.waitAll(scenarioTimeout, runs...)
	expectDone(t, runs...)

	got := expectOneBootstrap(t, w, c, lowestAddress(nodes), nodes...)
	expectJoined(t, got, nodes...)
	expectNoMountLeftovers(t, nodes...)
	figures(t, "3cp", lastStarted(runs...), &got, runs...)

	w.dumpIfFailed(t)
}

// testWithWorkers: workers (no /system/secrets/etcd, a worker config on
// STATE) exit 0 without any Bootstrap; the control plane bootstraps once.
// The third control-plane node comes up only once a sweep has counted both
// workers: with all five up at once, a round may reach its quorum before
// the workers answer (it does not wait for them), and whether any logged
// sweep saw them would depend on the machine's load.
func testWithWorkers(t *testing.T, art artifacts) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	early := w.controlPlanes(c, "cp", []int{3, 1}, everyOther)
	late := w.addNode(nodeSpec{name: "cp3", cluster: c, bootTime: w.booted(2), holdState: true})
	cps := append(early, late)

	var workers []*node
	for i, m := range []int{0, 4} { // the oldest machine is a worker: it must not count
		n := w.addNode(nodeSpec{name: "w" + string(rune('1'+i)), cluster: c, worker: true, bootTime: w.booted(m), holdState: i == 0})
		n.startAPID()
		workers = append(workers, n)
	}

	cpRuns := startDaemons(3, early...)
	workerRuns := startDaemons(3, workers...)

	// Quorum is missing, so the sweeps repeat; one of them counts both
	// workers (and not as candidates: nothing is bootstrapped with two).
	waitForLine(t, cpRuns[0], `"workers":2,`, scenarioTimeout)

	late.startAPID()
	cpRuns = append(cpRuns, late.startDaemon(daemonEnv(3)))

	w.waitAll(scenarioTimeout, append(cpRuns, workerRuns...)...)
	expectDone(t, append(cpRuns, workerRuns...)...)

	for i, n := range workers {
		if calls := n.bootstrapCalls(); len(calls) != 0 {
			t.Errorf("worker %s got Bootstrap calls: %v", n.spec.name, calls)
		}

		if !hasMessage(t, workerRuns[i], "worker node detected, nothing to bootstrap") {
			t.Errorf("worker %s: no \"worker node detected\" in its log", n.spec.name)
		}
	}

	got := expectOneBootstrap(t, w, c, cps[1], append(cps, workers...)...)
	expectJoined(t, got, cps...)
	expectNoMountLeftovers(t, append(cps, workers...)...)
	figures(t, "3cp+2w", lastStarted(cpRuns...), &got, append(cpRuns, workerRuns...)...)
	w.dumpIfFailed(t)
}

// lateDelay is how much later the third control-plane node boots.
const lateDelay = 20 * time.Second

// testLateNode: two control-plane nodes wait for QUORUM_NODES=3; nothing is
// bootstrapped until the third (here the oldest-booted, so the leader)
// arrives 20 s later; then exactly one Bootstrap.
func testLateNode(t *testing.T, art artifacts) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	early := w.controlPlanes(c, "cp", []int{2, 3}, everyOther)
	late := w.addNode(nodeSpec{name: "cp3", cluster: c, bootTime: w.booted(1), holdState: true})

	runs := startDaemons(3, early...)

	time.Sleep(lateDelay)

	expectNothingBeforeLate(t, w, early, runs)

	for _, p := range runs {
		if !hasMessage(t, p, "waiting for quorum") {
			t.Errorf("%s: no \"waiting for quorum\" while alone with one peer", p.name)
		}
	}

	late.startAPID()
	lateRun := late.startDaemon(daemonEnv(3))
	runs = append(runs, lateRun)

	w.waitAll(scenarioTimeout, runs...)
	expectDone(t, runs...)

	nodes := append(early, late)
	got := expectOneBootstrap(t, w, c, late, nodes...)

	if !got.CreatedAt.After(lateRun.started) {
		t.Errorf("bootstrapped at %s, before the third daemon started at %s", got.CreatedAt, lateRun.started)
	}

	expectJoined(t, got, nodes...)
	expectNoMountLeftovers(t, nodes...)
	figures(t, "late-node", lateRun.started, &got, runs...)
	w.dumpIfFailed(t)
}

// expectNothingBeforeLate checks that the early nodes, waiting for a late
// one, are still running and that nothing was bootstrapped.
func expectNothingBeforeLate(t *testing.T, w *world, early []*node, runs []*proc) {
	t.Helper()

	if cs := w.clusters(); len(cs) != 0 {
		w.dump()
		t.Fatalf("bootstrapped before the third node arrived: %+v", cs)
	}

	for i, p := range runs {
		if p.exited() {
			t.Fatalf("%s exited (%d) while waiting for quorum", p.name, p.exitCode)
		}

		if calls := early[i].bootstrapCalls(); len(calls) != 0 {
			t.Fatalf("%s got Bootstrap calls before the third node arrived: %v", early[i].spec.name, calls)
		}
	}
}

// testForeignNode: a control-plane node of another cluster (its own CA and
// config), booted before all of them, sits on the same segment with a daemon
// of its own (QUORUM_NODES=1). Each cluster bootstraps exactly once, on its
// own oldest node; neither joins the other's etcd.
func testForeignNode(t *testing.T, art artifacts) {
	w := newWorld(t, art)
	defer w.close()

	alpha := newCluster(t, w.dir, "alpha")
	beta := newCluster(t, w.dir, "beta")

	foreign := w.addNode(nodeSpec{name: "fx", cluster: beta, bootTime: w.booted(0), holdState: true})
	foreign.startAPID()

	nodes := w.controlPlanes(alpha, "cp", []int{3, 2, 1}, everyOther)

	// The sweep is what meets the other cluster's node (Talos cluster
	// discovery only lists a node's own cluster, and a quorum in it skips
	// the sweep): sweep only, so that its certificate check is what keeps
	// the foreign node out.
	sweepOnly := "TALOS_AUTO_BOOTSTRAP_DISCOVERY=scan"
	runs := make([]*proc, 0, len(nodes))

	for _, n := range nodes {
		runs = append(runs, n.startDaemon(daemonEnv(3, sweepOnly)))
	}

	foreignRun := foreign.startDaemon(daemonEnv(1, sweepOnly))

	w.waitAll(scenarioTimeout, append(runs, foreignRun)...)
	expectDone(t, append(runs, foreignRun)...)

	got := expectOneBootstrap(t, w, alpha, nodes[2], nodes...)
	expectJoined(t, got, nodes...)

	theirs := expectOneBootstrap(t, w, beta, foreign, foreign)

	for _, m := range got.Members {
		if m.IP == foreign.ip.String() {
			t.Errorf("the foreign node joined alpha's etcd: %+v", got.Members)
		}
	}

	if len(theirs.Members) != 1 || theirs.Members[0].IP != foreign.ip.String() {
		t.Errorf("beta's etcd should hold only the foreign node: %+v", theirs.Members)
	}

	if n := len(w.clusters()); n != 2 {
		t.Errorf("%d etcd clusters in the registry, want 2 (one per CA)", n)
	}

	// What the system guarantees is that the certificate check keeps each
	// cluster's nodes out of the other's view, not that every sweep reaches
	// every address in time: under load a probe may time out, and the
	// single-node cluster may bootstrap before its sweep met alpha's nodes.
	for _, p := range runs {
		if n := maxPeersFound(t, p); n > len(nodes)-1 {
			t.Errorf("%s counted %d control-plane peers, more than alpha's other %d nodes", p.name, n, len(nodes)-1)
		}

		t.Logf("%s counted the foreign node as foreign in %d rounds", p.name, roundsSeeingForeign(t, p))
	}

	if n := maxPeersFound(t, foreignRun); n != 0 {
		t.Errorf("%s counted %d of alpha's nodes as its own control-plane peers", foreignRun.name, n)
	}

	t.Logf("%s counted alpha's nodes as foreign in %d rounds", foreignRun.name, roundsSeeingForeign(t, foreignRun))

	expectNoMountLeftovers(t, append(nodes, foreign)...)
	figures(t, "foreign", lastStarted(runs...), &got, append(runs, foreignRun)...)
	w.dumpIfFailed(t)
}

// maxPeersFound is the most control-plane peers any of p's discovery rounds counted.
func maxPeersFound(t *testing.T, p *proc) int {
	t.Helper()

	most := 0
	for _, l := range readLog(t, p.stdout) {
		if l.msg() == "peer discovery complete" {
			most = max(most, int(l.num("peers_found")))
		}
	}

	return most
}

// roundsSeeingForeign counts p's discovery rounds that met a foreign node.
func roundsSeeingForeign(t *testing.T, p *proc) int {
	t.Helper()

	n := 0
	for _, l := range readLog(t, p.stdout) {
		if l.msg() == "peer discovery complete" && l.num("foreign") > 0 {
			n++
		}
	}

	return n
}

// testExistingCluster: two control-plane nodes bootstrap (QUORUM_NODES=2)
// and finish; then a third starts, booted before both (so it ranks first),
// with QUORUM_NODES=3. It must never call Bootstrap, and exits 0 only once
// its own etcd joined.
func testExistingCluster(t *testing.T, art artifacts) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	first := w.controlPlanes(c, "cp", []int{2, 3}, everyOther)

	runs := startDaemons(2, first...)

	w.waitAll(scenarioTimeout, runs...)
	expectDone(t, runs...)
	before := expectOneBootstrap(t, w, c, first[0], first...)

	newcomer := w.addNode(nodeSpec{name: "cp3", cluster: c, bootTime: w.booted(1), holdState: true})
	newcomer.startAPID()
	run := newcomer.startDaemon(daemonEnv(3))

	w.waitAll(scenarioTimeout, run)
	expectDone(t, run)

	if calls := newcomer.bootstrapCalls(); len(calls) != 0 {
		t.Errorf("the new node %s called Bootstrap on a cluster that runs etcd: %v", newcomer.spec.name, calls)
	}

	after := expectOneBootstrap(t, w, c, first[0], append(first, newcomer)...)
	if after.ID != before.ID {
		t.Errorf("etcd cluster changed from %d to %d", before.ID, after.ID)
	}

	expectJoined(t, after, append(first, newcomer)...)

	for _, m := range after.Members {
		if m.IP == newcomer.ip.String() && m.Since.After(run.ended) {
			t.Errorf("%s exited at %s, before its etcd joined at %s", run.name, run.ended, m.Since)
		}
	}

	expectNoMountLeftovers(t, append(first, newcomer)...)
	figures(t, "existing-cluster", run.started, nil, append(runs, run)...)
	w.dumpIfFailed(t)
}

// testLeaderKilled: the leader's daemon is SIGKILLed right after its
// Bootstrap and started again at once (as untilSuccess restarts it), with its
// status file kept: still exactly one etcd cluster, and the restarted daemon
// exits 0.
//
// With replyLost the leader's apid accepts the Bootstrap but the reply never
// arrives (lost-reply fault), and the daemon is killed while it waits: it
// cannot know the request took effect. Otherwise it is killed as soon as its
// status file records the answered Bootstrap.
func testLeaderKilled(t *testing.T, art artifacts, replyLost bool) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")

	var nodes []*node
	for i, m := range []int{2, 1, 3} {
		// The data dir fills late (etcd image pull): Talos accepts another
		// Bootstrap in that window and restarts etcd in bootstrap mode.
		spec := nodeSpec{
			name: "cp" + string(rune('1'+i)), cluster: c, bootTime: w.booted(m), holdState: everyOther(i),
			fakeArgs: []string{"--data-fill-delay", "4s"},
		}
		if replyLost && i == 1 {
			spec.fakeArgs = append(spec.fakeArgs, "--bootstrap-faults", "lost-reply")
			spec.lostReplies = 1
		}

		n := w.addNode(spec)
		n.startAPID()
		nodes = append(nodes, n)
	}

	leader := nodes[1]

	runs := startDaemons(3, nodes...)

	killed := leader.runs[0]
	deadline := time.Now().Add(scenarioTimeout)

	for !(replyLost && len(w.clusters()) > 0) && !(!replyLost && leader.statusSaysBootstrapSent(t)) {
		if time.Now().After(deadline) || killed.exited() {
			w.dump()
			t.Fatalf("no Bootstrap before the leader's daemon ended or the scenario timed out (exited %v)", killed.exited())
		}

		time.Sleep(5 * time.Millisecond)
	}

	killed.kill()

	if cs := clustersOf(w.clusters(), c); len(cs) != 1 {
		w.dump()
		t.Fatalf("at the kill: clusters %+v; want 1", cs)
	}

	t.Logf("%s SIGKILLed %.0fms after its Bootstrap was accepted (exit %d; status file bootstrapSent=%v)",
		killed.name, time.Since(clustersOf(w.clusters(), c)[0].CreatedAt).Seconds()*1000, killed.exitCode,
		leader.statusSaysBootstrapSent(t))

	restarted := leader.startDaemon(daemonEnv(3))
	others := []*proc{runs[0], runs[2], restarted}

	w.waitAll(scenarioTimeout, others...)

	if !hasMessage(t, killed, "executing bootstrap") {
		t.Errorf("%s: killed before it logged \"executing bootstrap\"", killed.name)
	}

	expectDone(t, others...)

	got := expectOneBootstrap(t, w, c, leader, nodes...)
	expectJoined(t, got, nodes...)
	t.Logf("Bootstrap calls on the leader: %d (accepted %d)", len(leader.bootstrapCalls()), leader.acceptedBootstraps())
	expectNoMountLeftovers(t, nodes[0], nodes[2])
	figures(t, "leader-killed", lastStarted(runs...), &got, append(runs, restarted)...)
	w.dumpIfFailed(t)
}

// statusSaysBootstrapSent reads the node's status file as peers do: true
// once the daemon recorded that its Bootstrap request may have reached
// machined, or was answered, in this boot.
func (n *node) statusSaysBootstrapSent(t *testing.T) bool {
	t.Helper()

	data, err := os.ReadFile(filepath.Join(n.host, "var", "lib", "kommodity-autobootstrap", "status.json"))
	if err != nil {
		return false
	}

	var st struct {
		Phase string             `json:"phase"`
		Send  election.SendState `json:"bootstrapSend"`
	}

	return json.Unmarshal(data, &st) == nil && (st.Send == election.SendMayHaveArrived || st.Send == election.SendAnswered)
}

// testInvalidEnvironment: a malformed value stops the daemon with exit code
// 2 and a log line naming the variable, before any call to apid.
func testInvalidEnvironment(t *testing.T, art artifacts) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	n := w.controlPlanes(c, "cp", []int{1}, everyOther)[0]
	run := n.startDaemon(daemonEnv(1, "TALOS_AUTO_BOOTSTRAP_QUORUM_NODES=three"))

	w.waitAll(30*time.Second, run)

	if run.exitCode != 2 {
		t.Errorf("%s exited %d, want 2", run.name, run.exitCode)
	}

	named := false

	for _, l := range readLog(t, run.stdout) {
		if l.str("variable") == "TALOS_AUTO_BOOTSTRAP_QUORUM_NODES" && l.str("level") == "error" {
			named = true
		}
	}

	if !named {
		t.Errorf("%s: no error line naming TALOS_AUTO_BOOTSTRAP_QUORUM_NODES", run.name)
	}

	for _, l := range readLog(t, n.apid.stdout) {
		if l.msg() == "call" {
			t.Errorf("apid served %s to a daemon with an invalid configuration", l.str("method"))
		}
	}

	if cs := w.clusters(); len(cs) != 0 {
		t.Errorf("etcd clusters exist: %+v", cs)
	}

	w.dumpIfFailed(t)
}

func hasMessage(t *testing.T, p *proc, msg string) bool {
	t.Helper()

	for _, l := range readLog(t, p.stdout) {
		if l.msg() == msg {
			return true
		}
	}

	return false
}
