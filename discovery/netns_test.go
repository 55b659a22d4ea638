package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// requireRoot skips tests that need network namespaces, except in CI where
// a skipped root test would hide a failure.
func requireRoot(tb testing.TB) {
	tb.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root for network namespaces"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs iproute2 (ip)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal(why + " (CI=true: not skipping)")
	}
	tb.Skip(why)
}

func ip(tb testing.TB, args ...string) {
	tb.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a network namespace that is deleted when tb ends (which
// also deletes the interfaces inside it). The pid keeps parallel runs
// apart.
func newNetns(tb testing.TB, name string) string {
	tb.Helper()
	name = fmt.Sprintf("kab%d-%s", os.Getpid(), name)
	ip(tb, "netns", "add", name)
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Errorf("teardown: ip netns del %s: %v\n%s", name, err, out)
		}
	})
	ip(tb, "-n", name, "link", "set", "lo", "up")
	return name
}

// inNetns runs fn on an OS thread moved into the named namespace. Sockets
// keep the namespace they were created in, so listeners made here serve
// there. The thread is never unlocked: it dies with the goroutine instead of
// going back to the scheduler in the wrong namespace.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/var/run/netns", name))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// The detection against the real kernel: interfaces from net.Interfaces and
// routes from /proc/thread-self/net/route, inside a namespace shaped like
// the "secondary-default" fixture.
func TestDetectNetworkInNamespace(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t, "detect")
	for _, cmd := range [][]string{
		{"link", "add", "eth0", "type", "veth", "peer", "name", "peth0"},
		{"link", "add", "eth1", "type", "veth", "peer", "name", "peth1"},
		{"addr", "add", "198.18.9.10/24", "dev", "eth0"},
		{"addr", "add", "198.18.10.100/32", "dev", "eth1"},
		{"addr", "add", "198.19.9.10/24", "dev", "eth1"},
		{"link", "set", "eth0", "up"}, {"link", "set", "peth0", "up"},
		{"link", "set", "eth1", "up"}, {"link", "set", "peth1", "up"},
		{"route", "add", "default", "via", "198.19.9.1", "dev", "eth1"},
	} {
		ip(t, append([]string{"-n", ns}, cmd...)...)
	}
	var got Network
	if err := inNetns(ns, func() (err error) {
		got, err = DetectNetwork(NetworkOptions{ProcDir: "/proc/thread-self"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := Network{Interface: "eth1", LocalIP: mustAddr("198.19.9.10"), Prefix: mustPrefix("198.19.9.0/24"), Gateway: mustAddr("198.19.9.1")}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// The sweep benchmark in namespaces runs its scanner in a child process
// started with `ip netns exec`, so that every socket the scanner and gRPC
// open is in the scanner's namespace; TestMain hands the child to
// runSweepChild.
const sweepChildEnv = "KAB_DISCOVERY_SWEEP_CHILD"

type sweepChildSpec struct {
	PeersNetns string
	Peers      []string
	Port       uint16
	Runs       []sweepRun
	Output     string
}

func TestMain(m *testing.M) {
	for env, run := range map[string]func(string) error{sweepChildEnv: runSweepChild, candidateChildEnv: runCandidateChild} {
		if spec := os.Getenv(env); spec != "" {
			if err := run(spec); err != nil {
				fmt.Fprintln(os.Stderr, env, "child:", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

func runSweepChild(specPath string) error {
	b, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var spec sweepChildSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return err
	}
	pki, err := fakeapid.NewPKI()
	if err != nil {
		return err
	}
	id, err := pki.AdminIdentity(time.Now(), time.Hour)
	if err != nil {
		return err
	}
	for _, peer := range spec.Peers {
		if err := inNetns(spec.PeersNetns, func() error {
			_, err := fakeapid.Start(fakeapid.Config{
				PKI:    pki,
				Listen: []string{netip.AddrPortFrom(netip.MustParseAddr(peer), spec.Port).String()},
			}, fakeapid.Node{IP: netip.MustParseAddr(peer)})
			return err
		}); err != nil {
			return fmt.Errorf("start fake apid %s: %w", peer, err)
		}
	}
	var results []sweepResult
	for _, r := range spec.Runs {
		res, err := sweepOnce(context.Background(), id, spec.Port, r)
		if err != nil {
			return err
		}
		neigh, err := exec.Command("ip", "-4", "neigh", "show").Output()
		if err != nil {
			return fmt.Errorf("ip neigh: %w", err)
		}
		res.Neighbours = strings.Count(string(neigh), "\n")
		results = append(results, res)
	}
	out, err := json.Marshal(results)
	if err != nil {
		return err
	}
	return os.WriteFile(spec.Output, out, 0o600)
}

// BenchmarkSweepNetns sweeps a /24 over real kernel networking: the scanner
// and three fake apids sit in namespaces of their own, joined by veth pairs
// to a bridge in a third; the other 250 addresses answer nothing (ARP goes
// unanswered), so each costs a full timeout. It reports the sweep at the
// upstream README's settings (50 at a time, 2 s) and at ours, from the same run, and
// their ratio; and the peak heap of a /16 sweep of silent addresses.
func BenchmarkSweepNetns(b *testing.B) {
	requireRoot(b)
	bridge := newNetns(b, "br")
	scan := newNetns(b, "scan")
	peers := newNetns(b, "peers")
	ip(b, "-n", bridge, "link", "add", "br0", "type", "bridge")
	ip(b, "-n", bridge, "link", "set", "br0", "up")
	ip(b, "link", "add", "kabscan0", "netns", scan, "type", "veth", "peer", "name", "scan0", "netns", bridge)
	ip(b, "link", "add", "kabpeers0", "netns", peers, "type", "veth", "peer", "name", "peers0", "netns", bridge)
	for _, port := range []string{"scan0", "peers0"} {
		ip(b, "-n", bridge, "link", "set", port, "master", "br0")
		ip(b, "-n", bridge, "link", "set", port, "up")
	}
	ip(b, "-n", scan, "addr", "add", "198.18.0.1/24", "dev", "kabscan0")
	ip(b, "-n", scan, "link", "set", "kabscan0", "up")
	peerIPs := []string{"198.18.0.10", "198.18.0.20", "198.18.0.30"}
	for _, a := range peerIPs {
		ip(b, "-n", peers, "addr", "add", a+"/24", "dev", "kabpeers0")
	}
	ip(b, "-n", peers, "link", "set", "kabpeers0", "up")
	// The /16 of silent hosts sits behind a gateway whose MAC nobody owns:
	// SYNs leave and vanish, like hosts that are not there, without
	// 65534 ARP entries in the kernel's neighbour table (shared by every
	// namespace).
	ip(b, "-n", scan, "neigh", "add", "198.18.0.254", "lladdr", "02:00:5e:00:53:fe", "dev", "kabscan0", "nud", "permanent")
	ip(b, "-n", scan, "route", "add", "198.19.0.0/16", "via", "198.18.0.254")

	dir := b.TempDir()
	spec := sweepChildSpec{
		PeersNetns: peers,
		Peers:      peerIPs,
		Port:       50000,
		Output:     filepath.Join(dir, "results.json"),
		Runs: []sweepRun{
			{Name: "seed", Prefix: "198.18.0.0/24", Concurrency: seedConcurrency, Timeout: seedTimeout, Want: 3},
			{Name: "ours", Prefix: "198.18.0.0/24", Concurrency: DefaultScanConcurrency, Timeout: seedTimeout, Want: 3},
			{Name: "c512", Prefix: "198.18.0.0/24", Concurrency: 512, Timeout: seedTimeout, Want: 3},
			// Short timeouts keep a /16 of silent hosts to seconds; the heap
			// depends on the probes in flight, not on how long they wait.
			{Name: "heap20-c256", Prefix: "198.19.0.0/20", Concurrency: DefaultScanConcurrency, Timeout: 50 * time.Millisecond},
			{Name: "heap16-c256", Prefix: "198.19.0.0/16", Concurrency: DefaultScanConcurrency, Timeout: 50 * time.Millisecond},
			{Name: "heap16-c1024", Prefix: "198.19.0.0/16", Concurrency: 1024, Timeout: 200 * time.Millisecond},
		},
	}
	specPath := filepath.Join(dir, "spec.json")
	raw, _ := json.Marshal(spec)
	if err := os.WriteFile(specPath, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}

	var results map[string]sweepResult
	for b.Loop() {
		cmd := exec.CommandContext(b.Context(), "ip", "netns", "exec", scan, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), sweepChildEnv+"="+specPath)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("sweep child: %v\n%s", err, out)
		}
		raw, err := os.ReadFile(spec.Output)
		if err != nil {
			b.Fatal(err)
		}
		var list []sweepResult
		if err := json.Unmarshal(raw, &list); err != nil {
			b.Fatal(err)
		}
		results = map[string]sweepResult{}
		for _, r := range list {
			results[r.Name] = r
		}
	}
	seed, ours := results["seed"], results["ours"]
	for _, name := range []string{"seed", "ours", "c512", "heap20-c256", "heap16-c256", "heap16-c1024"} {
		r := results[name]
		b.Logf("%-13s %7.3f s  probed %5d  peers %d  silent %5d  failed %d  peak heap %6.2f MiB  neighbour entries %d",
			name, r.Seconds, r.Probed, r.Peers, r.Silent, r.Failed, float64(r.PeakHeap)/(1<<20), r.Neighbours)
	}
	b.ReportMetric(seed.Seconds, "seed-s")
	b.ReportMetric(ours.Seconds, "ours-s")
	b.ReportMetric(seed.Seconds/ours.Seconds, "speedup")
	b.ReportMetric(ours.Seconds/seedTimeout.Seconds(), "ours/limit")
	b.ReportMetric(float64(results["heap16-c256"].PeakHeap)/(1<<20), "heap16-MiB")
	b.ReportMetric(float64(results["heap20-c256"].PeakHeap)/(1<<20), "heap20-MiB")
}
