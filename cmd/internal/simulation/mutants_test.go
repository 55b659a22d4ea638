package simulation

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Mutants are the negative controls of the safety rules. A mutant is a
// patch in testdata/mutants/<name>.patch, a unified diff against the
// shipped source that removes one guard (or brings back the algorithm a
// rule replaced), named after what then breaks. The shipped code has no
// switch for it: TestMutants applies the patch in a temporary directory,
// builds the tests with go test -overlay, and demands that the mutant be
// caught, by the simulator finding the named fault or by the rule's unit
// test failing. A patch whose lines no longer match the source fails,
// naming the mutant and the file: make it again against the new code.

// mutantControl is one expectation: with the mutants applied together
// (usually one), either the simulator finds the fault (finds: double,
// liveness or invariant:<Name>) in the family (empty: random scenarios)
// within -sim.control-seeds seeds, or the unit test test of package pkg
// (relative to the module root) fails.
type mutantControl struct {
	mutants       []string
	family, finds string
	pkg, test     string
}

func (c mutantControl) String() string {
	if c.test != "" {
		return c.pkg + "." + c.test + " fails"
	}

	return fmt.Sprintf("%s in %s", c.finds, cmp.Or(c.family, "random scenarios"))
}

func simFinds(family, finds string, mutants ...string) mutantControl {
	return mutantControl{mutants: mutants, family: family, finds: finds}
}

func unitFails(pkg, test string, mutants ...string) mutantControl {
	return mutantControl{mutants: mutants, pkg: pkg, test: test}
}

// mutantControls lists every mutant's controls. Guards that back each
// other are caught by the simulator only when removed together: each such
// mutant has a unit test of its own rule where one pins it, and a
// combination of all of them keeps the fault the simulator first found.
var mutantControls = []mutantControl{
	// One control per invariant (election/doc.go): without the guard that
	// keeps it, the checker names that invariant.
	simFinds("forgotten-send", "invariant:"+invSentStaysSent, "forgotten-send"),
	simFinds("lock-published-not-held", "invariant:"+invActsOnWhatPeersRead, "published-lock-not-held"),
	simFinds("", "invariant:"+invClusterEndsElection, "election-after-cluster"),
	simFinds("unsynced-lock-power-loss", "invariant:"+invLockReleasedForReason, "unsynced-status-published"),
	simFinds("init-node", "invariant:"+invOneFounding, "init-node-ignored"),
	simFinds("omni", "invariant:"+invOneFounding, "omni-managed-elects"),

	// A status is written again unless all of it is unchanged.
	simFinds("forgotten-send", "invariant:"+invSentStaysSent, "partial-status-comparison"),
	simFinds("quorum-mismatch-cut-off", "double", "quorum-mismatch"),
	simFinds("", "liveness", "leader-found-by-address"),
	simFinds("", "liveness", "unsynced-node-waits"),
	simFinds("peer-reboots-while-send-refused", "liveness", "bootstrap-on-stale-view"),
	simFinds("graceful-reboot", "liveness", "shutdown-etcd-is-cluster"),
	simFinds("bootstrap-aborted-after-stopping-etcd", "liveness", "stopped-for-bootstrap-is-cluster"),
	simFinds("cloned-var-all", "liveness", "clone-is-self"),
	// The daemon running before v1.14's ETCD volume is mounted.
	simFinds("daemon-before-etcd-volume", "invariant:"+invLockReleasedForReason, "status-proves-etcd-volume"),
	simFinds("daemon-before-etcd-volume", "double", "earlier-boot-withdrawn-on-unproven-listing"),

	// Rules whose control is their unit test.
	unitFails("election", "TestSendStateMoves", "forgotten-send"),
	unitFails("election", "TestRefusedResendKeepsAnUnknownSendAlive", "refused-resend-unsends"),
	unitFails("election", "TestRefusedResendKeepsAnUnknownSendAlive", "sent-bootstrap-withdrawn"),
	unitFails("election", "TestPhaseOfAnEarlierBootIsNoCluster", "earlier-boot-phase-is-cluster"),
	unitFails("states", "TestBootstrapFollowsWhenAClusterAppearedBeforeTheSend", "withdrawn-leader-quits"),
	unitFails("states", "TestFactsOfAPeerThatRebootedMeanwhileAreUnsure", "facts-of-two-boots"),
	unitFails("election", "TestSelfAtAnotherAddressIsNoPeer", "self-alias", "quorum-by-address"),
	unitFails("election", "TestMachinesCountsOnePerBootID", "quorum-by-address"),
	unitFails("election", "TestSeenClusterIsRemembered", "seen-cluster-forgotten"),
	unitFails("election", "TestLockLeaderNeedsAStatusOfTheCurrentBoot", "clone-is-leader-rebooted"),
	unitFails("election", "TestStepRules/6_lock-blocked:_peer_locked_elsewhere", "bootstrap-without-locks"),
	unitFails("election", "TestClusterAppearingBeforeTheSend", "unconfirmed-send"),
	unitFails("election", "TestStepRules/2_peer_bootstrapping_status:_withdraw_own_intent,_lock_to_the_bootstrapping_one", "unlocked-beside-bootstrapper"),
	unitFails("states", "TestAwaitEtcd/sent,_no_sign_of_it", "resend-on-stale-view"),
	unitFails("election", "TestOneCandidatePerMachine", "peer-alias"),
	unitFails("election", "TestUnmountedDataDirectoryIsUnknown", "unmounted-etcd-dir-is-empty"),
	unitFails("election", "TestReleaseNeedsAStatusOfTheCurrentBoot", "release-without-mount-proof"),
	unitFails("states", "TestMountProofIsReadBeforeTheDataDirectory", "mount-proof-read-late"),
	unitFails("election", "TestRebootedLeaderReleasesOnlyWithProofOfTheMount", "release-while-etcd-unknown"),
	unitFails("transport", "TestEmptyListingIsBracketedByEtcdNotYetRun", "listing-not-bracketed"),
	unitFails("election", "TestEarlierBootBootstrapIsKeptWhileOwnEtcdStopped", "earlier-boot-withdrawn-while-etcd-stopped"),
	unitFails("election", "TestEarlierBootBootstrapIsKeptWhileOwnEtcdStopped", "earlier-boot-withdrawn-on-unproven-listing"),
	unitFails("election", "TestUnmountedDataDirectoryIsUnknown", "status-proves-etcd-volume"),
	unitFails("states/statusfile", "TestLoadPublishesOnlyADurableNextStatus", "unsynced-status-published"),
	unitFails("election", "TestUnnamedPeerIsNoLeader", "unnamed-peer-is-leader"),
	unitFails("election", "TestAnnounceBeforeBootstrap", "bootstrap-on-announce"),

	// Guards that back each other, removed together: the rule as it was
	// before the simulator found its fault. Alone, bootstrap-on-announce,
	// peer-alias, unmounted-etcd-dir-is-empty, release-without-mount-proof
	// and unnamed-peer-is-leader are caught only by their unit tests
	// above: in the simulator another guard still holds (see each patch).
	simFinds("two-first-ranked-views", "double", "bootstrap-on-announce", "bootstrap-without-locks", "unconfirmed-send"),
	simFinds("two-first-ranked-views", "invariant:"+invOneFounding, "bootstrap-on-announce", "bootstrap-without-locks", "unconfirmed-send"),
	simFinds("leader-reboots-before-join", "double", "unmounted-etcd-dir-is-empty", "release-without-mount-proof", "seen-cluster-forgotten", "unnamed-peer-is-leader", "clone-is-leader-rebooted"),
	simFinds("leader-reboots-before-join", "invariant:"+invLockReleasedForReason, "unmounted-etcd-dir-is-empty", "release-without-mount-proof", "seen-cluster-forgotten", "unnamed-peer-is-leader", "clone-is-leader-rebooted"),
	simFinds("alias-across-split", "double", "self-alias", "peer-alias", "quorum-by-address"),
	simFinds("cloned-var", "double", "clone-is-self", "clone-is-leader-rebooted"),
	// A refused resend makes an unknown send look unsent, and a rebooting
	// peer's Finished etcd looks like a cluster: withdrawn while machined
	// holds the request.
	simFinds("resend-refused", "double", "shutdown-etcd-is-cluster", "refused-resend-unsends", "sent-bootstrap-withdrawn"),
	// Reads that straddle a mount or an unmount. Since only etcd's service
	// entry proves a listing (status-proves-etcd-volume), it backs each of
	// these guards; with it removed, the fault each one prevents returns.
	simFinds("straddled-read", "double", "mount-proof-read-late", "status-proves-etcd-volume"),
	simFinds("straddled-read", "invariant:"+invLockReleasedForReason, "mount-proof-read-late", "status-proves-etcd-volume"),
	simFinds("straddled-unmount", "double", "release-while-etcd-unknown", "status-proves-etcd-volume"),
	simFinds("straddled-unmount", "invariant:"+invLockReleasedForReason, "release-while-etcd-unknown", "status-proves-etcd-volume"),
	simFinds("straddled-unmount", "invariant:"+invLockReleasedForReason, "listing-not-bracketed", "status-proves-etcd-volume"),
	// This daemon's own reboot, seen from inside: its etcd stopped and its
	// listing unproven are two guards of one withdrawal.
	simFinds("withdrawn-in-own-reboot", "double", "earlier-boot-withdrawn-on-any-empty-listing"),
}

var (
	controlSeeds = flag.Int("sim.control-seeds", 2000, "seeds a mutant's simulator run may take to find its fault")
	mutantJobs   = flag.Int("sim.mutant-jobs", 2, "mutant builds and runs at once")
	onlyMutants  = flag.String("sim.mutants", "", "TestMutants: run only the controls of mutants matching this regular expression")
	finds        = flag.String("sim.finds", "", "TestMutantFindsFault: the fault the mutant must produce (double, liveness, invariant:<Name>)")
	mutantName   = flag.String("sim.mutant", "", "TestMutantFindsFault: the mutants this build carries (for its log)")
)

const mutantDir = "testdata/mutants"

// mutant is a parsed patch.
type mutant struct {
	name, desc string
	files      []filePatch
}

func loadMutants(t *testing.T) map[string]mutant {
	t.Helper()

	paths, err := filepath.Glob(filepath.Join(mutantDir, "*.patch"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no mutants in %s: %v", mutantDir, err)
	}

	out := map[string]mutant{}

	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".patch")

		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}

		desc, files, err := parsePatch(string(data))
		if err != nil {
			t.Fatalf("mutant %s: %s: %v", name, p, err)
		}

		if desc == "" {
			t.Errorf("mutant %s: %s does not say, above the diff, which guard it removes and what breaks", name, p)
		}

		out[name] = mutant{name: name, desc: desc, files: files}
	}

	return out
}

// moduleRoot is the module's directory, three above this package's.
func moduleRoot(t *testing.T) string {
	t.Helper()

	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}

	return root
}

// patchedSources applies the mutants to the source under root and writes
// the patched files to dir: the overlay's replacements, by absolute path
// of the original.
func patchedSources(root, dir string, ms []mutant) (map[string]string, error) {
	patched := map[string]string{}

	for _, m := range ms {
		for _, f := range m.files {
			orig := filepath.Join(root, filepath.FromSlash(f.path))

			src, ok := patched[orig]
			if !ok {
				data, err := os.ReadFile(orig)
				if err != nil {
					return nil, fmt.Errorf("mutant %s: %w", m.name, err)
				}

				src = string(data)
			}

			out, err := f.apply(src)
			if err != nil {
				return nil, fmt.Errorf("mutant %s does not apply: %w; make it again against the current source", m.name, err)
			}

			patched[orig] = out
		}
	}

	replace := map[string]string{}

	for orig, src := range patched {
		rel, err := filepath.Rel(root, orig)
		if err != nil {
			return nil, err
		}

		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}

		if err := os.WriteFile(dst, []byte(src), 0o644); err != nil {
			return nil, err
		}

		replace[orig] = dst
	}

	return replace, nil
}

// TestMutantsApply checks, without building anything, that every mutant
// still applies to the current source and that every mutant has a
// control and every control's mutant a patch.
func TestMutantsApply(t *testing.T) {
	ms := loadMutants(t)
	root := moduleRoot(t)
	used := map[string]bool{}

	for _, c := range mutantControls {
		for _, name := range c.mutants {
			used[name] = true

			if _, ok := ms[name]; !ok {
				t.Errorf("control %s names mutant %s, which has no %s/%s.patch", c, name, mutantDir, name)
			}
		}
	}

	for name, m := range ms {
		if !used[name] {
			t.Errorf("mutant %s has no control in mutantControls", name)
		}

		if _, err := patchedSources(root, t.TempDir(), []mutant{m}); err != nil {
			t.Error(err)
		}
	}
}

// TestMutants builds each set of mutants once (go test -c -overlay) and
// runs its controls: at most -sim.mutant-jobs at a time.
func TestMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the tests once per mutant")
	}

	var only *regexp.Regexp

	if *onlyMutants != "" {
		var err error
		if only, err = regexp.Compile(*onlyMutants); err != nil {
			t.Fatal(err)
		}
	}

	ms := loadMutants(t)
	root := moduleRoot(t)

	// One build per set of mutants, with all of its controls.
	var (
		keys   []string
		groups = map[string][]mutantControl{}
	)

	for _, c := range mutantControls {
		if only != nil && !slices.ContainsFunc(c.mutants, only.MatchString) {
			continue
		}

		key := strings.Join(c.mutants, "+")
		if _, ok := groups[key]; !ok {
			keys = append(keys, key)
		}

		groups[key] = append(groups[key], c)
	}

	start := time.Now()
	ran := 0

	for _, key := range keys {
		ran += len(groups[key])
	}

	jobs := make(chan struct{}, max(1, *mutantJobs))

	t.Run("mutant", func(t *testing.T) {
		for _, key := range keys {
			t.Run(key, func(t *testing.T) {
				t.Parallel()

				jobs <- struct{}{}
				defer func() { <-jobs }()

				var set []mutant

				for _, name := range groups[key][0].mutants {
					m, ok := ms[name]
					if !ok {
						t.Fatalf("mutant %s: no %s/%s.patch", name, mutantDir, name)
					}

					set = append(set, m)
				}

				runMutantControls(t, root, set, groups[key])
			})
		}
	})

	t.Logf("%d mutants, %d sets of them built, %d controls: %s", len(ms), len(keys), ran, time.Since(start).Round(time.Second))
}

func runMutantControls(t *testing.T, root string, set []mutant, controls []mutantControl) {
	dir := t.TempDir()

	replace, err := patchedSources(root, filepath.Join(dir, "src"), set)
	if err != nil {
		t.Fatal(err)
	}

	overlay, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		t.Fatal(err)
	}

	overlayPath := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}

	names := make([]string, len(set))
	descs := ""

	for i, m := range set {
		names[i] = m.name
		descs += "\n" + m.name + ": " + m.desc + "\n"
	}

	// One test binary per package, built on first use.
	bins := map[string]string{}

	build := func(pkg string) string {
		if bin, ok := bins[pkg]; ok {
			return bin
		}

		bin := filepath.Join(dir, strings.ReplaceAll(pkg, "/", "_")+".test")
		began := time.Now()
		cmd := exec.CommandContext(t.Context(), "go", "test", "-c", "-vet=off", "-o", bin, "-overlay", overlayPath, "./"+pkg)
		cmd.Dir = root

		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mutant %s does not build (%s): %v\n%s", strings.Join(names, "+"), pkg, err, out)
		}

		t.Logf("built %s in %s", pkg, time.Since(began).Round(100*time.Millisecond))
		bins[pkg] = bin

		return bin
	}

	for _, c := range controls {
		began := time.Now()

		if c.test != "" {
			run := strings.Split(c.test, "/")
			for i, name := range run {
				run[i] = "^" + regexp.QuoteMeta(name) + "$"
			}

			cmd := exec.CommandContext(t.Context(), build(c.pkg), "-test.run", strings.Join(run, "/"), "-test.count=1")
			cmd.Dir = filepath.Join(root, filepath.FromSlash(c.pkg))
			out, err := cmd.CombinedOutput()

			var exit *exec.ExitError
			if !errors.As(err, &exit) || !strings.Contains(string(out), "--- FAIL: "+c.test) {
				t.Errorf("mutant %s: %s.%s does not fail (%v): the mutant goes unnoticed\n%s\n%s", strings.Join(names, "+"), c.pkg, c.test, err, descs, out)

				continue
			}

			t.Logf("mutant %s: %s.%s fails (%s)", strings.Join(names, "+"), c.pkg, c.test, time.Since(began).Round(100*time.Millisecond))

			continue
		}

		cmd := exec.CommandContext(t.Context(), build("cmd/internal/simulation"), "-test.run", "^TestMutantFindsFault$", "-test.v",
			"-sim.seeds="+strconv.Itoa(*controlSeeds), "-sim.finds="+c.finds, "-sim.family="+c.family, "-sim.mutant="+strings.Join(names, "+"))
		cmd.Dir = filepath.Join(root, "cmd", "internal", "simulation")

		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("mutant %s: the simulator found no %s in %d seeds: %v\n%s\n%s", strings.Join(names, "+"), c, *controlSeeds, err, descs, out)

			continue
		}

		for line := range strings.SplitSeq(string(out), "\n") {
			if _, found, ok := strings.Cut(line, "mutant "); ok && strings.Contains(found, ": found ") {
				t.Logf("mutant %s (%s)", found, time.Since(began).Round(100*time.Millisecond))
			}
		}
	}
}

// TestMutantFindsFault is a mutant's simulator run, started by TestMutants
// in a build of the mutant: it passes only when some seed fails with the
// fault.
func TestMutantFindsFault(t *testing.T) {
	if *finds == "" {
		t.Skip("run by TestMutants in a build of a mutant")
	}

	for seed := uint64(1); seed <= uint64(*seeds); seed++ {
		r := Run(t, Options{Seed: seed, Family: *family})
		if (*finds == "double" && r.DoubleBootstrap) || (*finds == "liveness" && r.LivenessFailure) || *finds == "invariant:"+r.Invariant {
			t.Logf("mutant %s: found %s at seed %d of %s: %s", *mutantName, *finds, seed, cmp.Or(*family, "random scenarios"), r.Problem)

			return
		}
	}

	t.Fatalf("mutant %s: no seed of %d showed %q", *mutantName, *seeds, *finds)
}
