package e2e

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

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

func everyOther(i int) bool { return i%2 == 0 }

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
			line += fmt.Sprintf(", first /24 sweep %.2fs (%d addresses probed)", sweep, probed)
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
		switch l.str("message") {
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
// with exactly one Bootstrap, on the oldest-booted node (not the lowest IP),
// and every daemon exits 0 once its etcd is healthy.
func testThreeControlPlane(t *testing.T, art artifacts) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	nodes := w.controlPlanes(c, "cp", []int{2, 3, 1}, everyOther)

	var runs []*proc
	for _, n := range nodes {
		runs = append(runs, n.startDaemon(daemonEnv(3)))
	}

	w.waitAll(scenarioTimeout, runs...)
	expectDone(t, runs...)

	got := expectOneBootstrap(t, w, c, nodes[2], nodes...)
	expectJoined(t, got, nodes...)
	expectNoMountLeftovers(t, nodes...)
	figures(t, "3cp", lastStarted(runs...), &got, runs...)

	w.dumpIfFailed(t)
}
