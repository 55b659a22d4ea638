// Package simulation runs the daemon's own code (the fsm table and
// supervisor, every handler of package states, the election rules) on every
// node of a simulated Talos site, and checks that no seed makes two etcd
// clusters and that every control-plane node ends in a healthy cluster once
// the faults stop. Only the world is simulated: each node's apid (the
// transport.Node the daemon dials), discovery (the scanner), the clock, the
// status file on a /var that survives reboots and is wiped by a reset, and
// the local facts (secrets directory, machine config, address).
//
// Each daemon starts where the binary does, daemon.Run, with the node's
// parts in place of the host's (daemon.World), and with the binary's
// configuration.
//
// The daemons run as goroutines in a testing/synctest bubble under a
// deterministic scheduler (sched.go), so a seed reproduces its run, trace
// included, byte for byte. Talos is modelled after its source (talos.go).
package simulation

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

// Options select one scenario.
type Options struct {
	Seed uint64
	// Family selects a scripted scenario (see Families); empty is random.
	Family string
	// Trace records the model's events and every daemon's log lines.
	Trace bool
	// FullHorizon runs on to the horizon even once the world is quiet
	// (quiet.go): what checks that the quiet stop keeps the verdict.
	FullHorizon bool
}

// Result is the checker's verdict on one scenario.
type Result struct {
	Seed            uint64
	Scenario        string
	ClustersCreated int
	DoubleBootstrap bool
	// Invariant names the first safety invariant violated ("" when none).
	Invariant       string
	LivenessFailure bool
	Problem         string
	// Family is the scripted family run ("" for a random scenario);
	// Faults are the fault kinds the scenario switched on.
	Family string
	Faults []string
	// SettledAfter is how long after the end of the faults the last
	// control-plane daemon was done.
	SettledAfter time.Duration
	// EndedQuiet: the run stopped before its horizon, unsettled, because
	// nothing changed any more (quiet.go).
	EndedQuiet bool
	Paths      map[string]int
	Trace      []string
}

// Run simulates the scenario of opts.Seed. It needs a test: the daemons
// run in a synctest bubble.
func Run(t *testing.T, opts Options) Result {
	var res Result

	synctest.Test(t, func(*testing.T) { res = run(opts) })

	return res
}

func run(opts Options) Result {
	w := &world{sched: newSched(opts.Seed), opts: opts, paths: map[string]int{}, bootOwner: map[string]*tnode{}}

	w.mu.Lock()
	w.stepping = true // the scheduler side, until the loop takes over

	if opts.Family == "" {
		w.setup()
	} else if err := w.setupFamily(opts.Family); err != nil {
		panic(err)
	}

	w.stepping = false
	w.mu.Unlock()

	w.loop(w.horizon(), w.settledOrQuiet, func() {
		w.flushDaemonLines()
		w.chk.brokenInStep = false
		w.chk.everyStep(w)
	})

	w.mu.Lock()
	defer w.mu.Unlock()

	w.stepping = true
	// The quiet stop is checked only while not all is done.
	endedQuiet := w.quietWatch.ended
	if endedQuiet {
		w.path("ended quiet before the liveness horizon")
	}

	res := Result{
		Seed: opts.Seed, Scenario: opts.Family + " " + w.describe(), ClustersCreated: w.chk.created,
		DoubleBootstrap: w.chk.double, Invariant: w.chk.invariant, Problem: w.chk.problem, Paths: w.paths,
		Family: opts.Family, Faults: w.faults(), EndedQuiet: endedQuiet,
	}

	if !w.chk.double && w.chk.invariant == "" {
		if why := w.livenessProblem(); why != "" {
			res.LivenessFailure = true
			res.Problem = why
		} else if w.allDone() {
			// Mixed-QUORUM_NODES scenarios may rightly never settle.
			res.SettledAfter = max(w.now-w.p.chaosEnd, 0)
		}
	}

	// End every daemon so that the bubble's goroutines exit.
	for _, n := range w.nodes {
		w.kill(n)
	}

	res.Trace = w.trace

	return res
}

// statusOf summarises a node's status file for failure reports.
func (w *world) statusOf(n *tnode) string {
	data := n.storage().status()
	if data == nil {
		return ""
	}

	st, err := election.ParseStatus(data)
	if err != nil {
		return "unreadable status: " + err.Error()
	}

	return fmt.Sprintf("phase %s lock %v: %s", st.Phase, st.Lock, st.Reason)
}
