package simulation

import (
	"flag"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	seeds     = flag.Int("sim.seeds", 1000, "number of simulated scenarios")
	firstSeed = flag.Uint64("sim.seed", 1, "first seed; with -sim.seeds=1 it replays one scenario")
	showTrace = flag.Bool("sim.trace", false, "print the trace of every scenario run")
)

// runSeeds runs count scenarios from first on all CPUs; results come back in
// seed order, so the summary does not depend on scheduling.
func runSeeds(first uint64, count int, opts Options) []Result {
	results := make([]Result, count)
	next := make(chan int)

	var wg sync.WaitGroup

	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				o := opts
				o.Seed = first + uint64(i)
				results[i] = Run(o)
			}
		})
	}

	for i := range count {
		next <- i
	}

	close(next)
	wg.Wait()

	return results
}

func replay(t *testing.T, r Result, opts Options) {
	t.Helper()

	opts.Seed, opts.Trace = r.Seed, true
	again := Run(opts)
	t.Logf("seed %d FAILED (%s): %s\nreplay: go test ./election/simulation -run TestSimulation -sim.seed=%d -sim.seeds=1 -sim.trace\n%s",
		r.Seed, r.Scenario, r.Problem, r.Seed, strings.Join(again.Trace, "\n"))

	if again.Problem != r.Problem || again.DoubleBootstrap != r.DoubleBootstrap {
		t.Errorf("seed %d did not reproduce: %q then %q", r.Seed, r.Problem, again.Problem)
	}
}

func TestSimulation(t *testing.T) {
	start := time.Now()
	results := runSeeds(*firstSeed, *seeds, Options{Trace: *showTrace})

	var (
		doubles, liveness, failed int
		worst                     float64
		worstSeed                 uint64
		paths                     = map[string]int{}
	)

	for _, r := range results {
		if *showTrace {
			t.Logf("seed %d (%s): %s\n%s", r.Seed, r.Scenario, r.Problem, strings.Join(r.Trace, "\n"))
		}

		if r.DoubleBootstrap {
			doubles++
		}

		if r.LivenessFailure {
			liveness++
		}

		if (r.DoubleBootstrap || r.LivenessFailure) && failed < 3 {
			failed++
			replay(t, r, Options{})
		}

		for k, v := range r.Paths {
			if v > 0 {
				paths[k]++
			}
		}

		if r.Rounds > worst {
			worst, worstSeed = r.Rounds, r.Seed
		}
	}

	t.Logf("simulated %d scenarios, %d double bootstraps, %d liveness failures", len(results), doubles, liveness)
	t.Logf("slowest settlement: %.1f scan intervals beyond PRE_BOOTSTRAP_DELAY after the chaos (seed %d, bound %d); wall time %s",
		worst, worstSeed, livenessRounds, time.Since(start).Round(time.Millisecond))

	keys := slices.Sorted(maps.Keys(paths))
	lines := make([]string, 0, len(keys))

	for _, k := range keys {
		lines = append(lines, fmt.Sprintf("  %6d scenarios: %s", paths[k], k))
	}

	t.Logf("paths exercised:\n%s", strings.Join(lines, "\n"))

	if doubles > 0 || liveness > 0 {
		t.Fail()
	}
}

// TestNegativeControl proves the checker can fail: without the
// confirmation rule the same scenarios must produce double bootstraps.
func TestNegativeControl(t *testing.T) {
	results := runSeeds(1, 1000, Options{SkipConfirmation: true})

	doubles := 0
	first := -1

	for i, r := range results {
		if r.DoubleBootstrap {
			doubles++

			if first < 0 {
				first = i
			}
		}
	}

	t.Logf("negative control: %d of %d scenarios double-bootstrapped without the confirmation rule", doubles, len(results))

	if doubles == 0 {
		t.Fatal("the simulator found no double bootstrap with the confirmation rule switched off: the checker is blind")
	}

	if !strings.HasPrefix(results[first].Problem, "DOUBLE BOOTSTRAP") {
		t.Fatalf("seed %d: problem %q", results[first].Seed, results[first].Problem)
	}
}

// TestReplayIsDeterministic: a seed reproduces exactly, trace included.
func TestReplayIsDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		a := Run(Options{Seed: seed, Trace: true})
		b := Run(Options{Seed: seed, Trace: true})

		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("seed %d differs between runs", seed)
		}

		if len(a.Trace) == 0 {
			t.Fatalf("seed %d: empty trace", seed)
		}
	}
}
