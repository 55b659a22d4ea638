package discovery

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// How long after a node appears is it a candidate? The benchmarks below
// run the daemon's Scan state (states/scan.go) against a Combined with the
// daemon's defaults and report the mean and the worst time, in seconds,
// from the node's appearance to the end of the round that lists it:
//
//	go test ./discovery/ -run '^$' -bench 'MemberToCandidate|SweepToCandidate' -benchtime=10x -timeout 30m
//
// Iterations are long (a sweep-only one waits out a whole 30 s pause), so
// give -benchtime as a count; ns/op includes each iteration's set-up and
// is not the figure. The netns benchmarks need root, as BenchmarkSweepNetns.

const (
	// daemonScanInterval is SCAN_INTERVAL's default (cmd/internal/config,
	// which imports this package, so it cannot be named here).
	daemonScanInterval = 30 * time.Second
	// candidateQuorum counts self, a peer already known and the node that
	// appears: the loop ends at quorum, as the daemon's Scan state does, and
	// the new node is what brings it.
	candidateQuorum = 3
	// longPauseAttempt is the attempt the loop starts from: 0, the fast
	// phase a daemon waiting for quorum is in during its first FastSweepFor
	// (before, the pauses grew 1, 2, 4, 8, 16 s, then 30 s, and
	// this was 5).
	longPauseAttempt = 0
)

// appearFunc makes the new node appear some time into a pause of the given
// length; it returns the node's address and the moment it appeared.
type appearFunc func(pause time.Duration) (netip.Addr, time.Time, error)

// timeToCandidate runs the daemon's Scan state on c (Scan; below quorum,
// Pause for NextScanDelay and Scan again) from an attempt whose pause is
// the whole interval, calls appear once the loop is in that pause, and
// returns the time from the appearance to the end of the round that lists
// the new node as a control-plane candidate.
func timeToCandidate(ctx context.Context, c *Combined, interval time.Duration, appear appearFunc) (time.Duration, error) {
	type end struct {
		at    time.Time
		round Round
		err   error
	}

	// Scan must not overlap the caller's Close: stop the loop and wait for
	// it on every way out.
	var wg sync.WaitGroup
	defer wg.Wait()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	pausing := make(chan time.Duration, 1)
	ended := make(chan end, 1)

	wg.Go(func() {
		for attempt := longPauseAttempt; ; attempt++ {
			round, err := c.Scan(ctx)
			at := time.Now()

			known := 1 + len(round.ControlPlane)
			if err != nil || known >= candidateQuorum {
				ended <- end{at: at, round: round, err: err}

				return
			}

			delay := c.NextDelay(known, candidateQuorum, attempt, interval)
			if attempt == longPauseAttempt {
				pausing <- delay
			}

			if err := c.Pause(ctx, delay); err != nil {
				ended <- end{err: err}

				return
			}
		}
	})

	var pause time.Duration

	select {
	case pause = <-pausing:
	case e := <-ended:
		return 0, fmt.Errorf("the scan loop ended before its pause (%v), with %d control-plane peers", e.err, len(e.round.ControlPlane))
	}

	addr, appeared, err := appear(pause)
	if err != nil {
		return 0, err
	}

	e := <-ended
	if e.err != nil {
		return 0, e.err
	}

	if got := addrsOf(e.round.ControlPlane); !slices.Contains(got, addr) {
		return 0, fmt.Errorf("quorum without %s: control plane %v", addr, got)
	}

	return e.at.Sub(appeared), nil
}

// reportToCandidate reports the mean and the worst of the measured times.
// The sweep benchmark keeps the metric names so that the figures compare.
func reportToCandidate(b *testing.B, times []time.Duration) {
	b.Helper()

	if len(times) == 0 {
		return
	}

	var sum, worst time.Duration

	secs := make([]string, 0, len(times))

	for _, d := range times {
		sum += d
		worst = max(worst, d)
		secs = append(secs, strconv.FormatFloat(d.Seconds(), 'f', 3, 64))
	}

	b.Logf("%d times to candidate (s): %s", len(times), strings.Join(secs, " "))
	b.ReportMetric((sum / time.Duration(len(times))).Seconds(), "s/member-mean")
	b.ReportMetric(worst.Seconds(), "s/member-max")
}

// atQuorum is the daemon's enough for NewCombined: a round may stop at the
// listed addresses once they make the quorum.
func atQuorum(r Result) bool { return 1+len(r.ControlPlane) >= candidateQuorum }

func memberAt(addr netip.Addr) transport.Member {
	return transport.Member{ID: addr.String(), Addresses: []netip.Addr{addr}}
}

// BenchmarkMemberToCandidate measures a node that appears in Talos cluster
// discovery while the daemon waits out a SCAN_INTERVAL pause: Pause polls
// the members every SCAN_TIMEOUT, so it should be a candidate about one
// poll later (half of one on average) plus one round.
//
// loopback-members: discovery the only source, in-process on 127/8. The
// probe of the new node costs milliseconds here; on a network, one round
// trip more for TCP, TLS and the RPCs.
//
// netns-members+scan: the daemon's default sources (members and the sweep
// of the local /24), in network namespaces where the 252 silent addresses
// cost a full timeout. The round a new member triggers sweeps too unless
// the listed addresses already make the quorum (NewCombined's enough, set
// as the daemon sets it): a sweep ends with its slowest probe, one whole
// SCAN_TIMEOUT.
func BenchmarkMemberToCandidate(b *testing.B) {
	b.Run("loopback-members", benchMemberLoopback)
	b.Run("netns-members+scan", func(b *testing.B) { benchCandidateNetns(b, candidateMembersScan) })
}

func benchMemberLoopback(b *testing.B) {
	env := newScanEnv(b)
	known := mustAddr("127.46.0.1")
	startAPID(b, env.pki, env.port, fakeapid.Node{}, known.String())

	var times []time.Duration

	for i := 0; b.Loop(); i++ {
		// A fresh address and a fresh Combined each time: every iteration
		// starts from the same cluster, one peer known.
		addr := netip.AddrFrom4([4]byte{127, 46, byte(1 + i/250), byte(1 + i%250)})
		srv := startAPID(b, env.pki, env.port, fakeapid.Node{}, addr.String())
		members := &lister{}
		members.set(nil, memberAt(known))

		// The daemon's settings: SCAN_TIMEOUT and SCAN_CONCURRENCY by
		// default, Pause polling every SCAN_TIMEOUT on the real clock.
		s, err := NewScanner(ScannerOptions{Identity: env.id, Dialer: env.dialer, Port: env.port, Logger: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}

		c := NewCombined(s, []Source{Members{Lister: members}}, DefaultScanTimeout, atQuorum, clockwork.NewRealClock(), zerolog.Nop())

		d, err := timeToCandidate(b.Context(), c, daemonScanInterval, func(time.Duration) (netip.Addr, time.Time, error) {
			// The poll ticks every SCAN_TIMEOUT from the start of the
			// pause, so a moment drawn over one period stands for one
			// drawn over the whole pause (15 periods) and saves the wait.
			time.Sleep(rand.N(DefaultScanTimeout))
			members.set(nil, memberAt(known), memberAt(addr))

			return addr, time.Now(), nil
		})

		c.Close()
		srv.Close()

		if err != nil {
			b.Fatal(err)
		}

		times = append(times, d)
	}

	reportToCandidate(b, times)
}

// BenchmarkSweepToCandidate measures the same for the sweep alone (no
// discovery: DISCOVERY=scan, or discovery disabled in the machine config):
// a pause then ends only at its deadline, so a node that appears during
// it waits for the rest of it (uniform over SCAN_INTERVAL, the daemon's
// 30 s) and then for one sweep of the /24 (about one SCAN_TIMEOUT at
// concurrency 256, see the package documentation). Loopback refuses a
// silent address at once, which would leave the sweep out, so this runs in
// network namespaces where silent addresses cost the full timeout. Each
// iteration takes about 34 s.
func BenchmarkSweepToCandidate(b *testing.B) {
	benchCandidateNetns(b, candidateScan)
}

// The sources of the netns benchmarks.
const (
	candidateScan        = "scan"
	candidateMembersScan = "members+scan"
)

// The netns benchmarks run their scanner in a child process started with
// `ip netns exec`, as BenchmarkSweepNetns does and for the same reason:
// every socket the scanner and gRPC open must be in the scanner's
// namespace. runCandidateChild is the child: it reads a line per
// iteration on stdin and answers with a line of candidateResult and the
// time in nanoseconds.
const (
	candidateChildEnv = "KAB_DISCOVERY_CANDIDATE_CHILD"
	candidateResult   = "time-to-candidate "
)

type candidateChildSpec struct {
	Mode       string
	PeersNetns string
	PeersDev   string
	Self       netip.Addr   // the scanner's address, excluded as the daemon excludes its own
	Known      netip.Addr   // the control-plane peer already known
	Prefix     netip.Prefix // the swept range, where new nodes appear
	Port       uint16
	Interval   time.Duration
}

// benchCandidateNetns puts the scanner and the fake apids in namespaces of
// their own, joined by a veth pair on 198.18.0.0/24: the peers' namespace
// owns only the addresses of running apids, so ARP for the others goes
// unanswered and each costs a full timeout, as an empty address on a real
// LAN does.
func benchCandidateNetns(b *testing.B, mode string) {
	requireRoot(b)

	scan := newNetns(b, "tc-scan")
	peers := newNetns(b, "tc-peers")
	ip(b, "link", "add", "kabtc0", "netns", scan, "type", "veth", "peer", "name", "kabtc1", "netns", peers)
	ip(b, "-n", scan, "addr", "add", "198.18.0.1/24", "dev", "kabtc0")
	ip(b, "-n", scan, "link", "set", "kabtc0", "up")
	ip(b, "-n", peers, "addr", "add", "198.18.0.10/24", "dev", "kabtc1")
	ip(b, "-n", peers, "link", "set", "kabtc1", "up")

	spec := candidateChildSpec{
		Mode: mode, PeersNetns: peers, PeersDev: "kabtc1",
		Self: mustAddr("198.18.0.1"), Known: mustAddr("198.18.0.10"), Prefix: mustPrefix("198.18.0.0/24"),
		Port: 50000, Interval: daemonScanInterval,
	}

	specPath := filepath.Join(b.TempDir(), "spec.json")

	raw, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}

	if err := os.WriteFile(specPath, raw, 0o600); err != nil {
		b.Fatal(err)
	}

	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}

	cmd := exec.CommandContext(b.Context(), "ip", "netns", "exec", scan, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), candidateChildEnv+"="+specPath)

	var stderr strings.Builder

	cmd.Stderr = &stderr

	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}

	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}

	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}

	// The child's other output (a failure, the test framework's PASS) is
	// kept for the error message.
	out := bufio.NewScanner(stdout)

	var other []string

	next := func() (time.Duration, error) {
		for out.Scan() {
			if rest, ok := strings.CutPrefix(out.Text(), candidateResult); ok {
				ns, err := strconv.ParseInt(rest, 10, 64)

				return time.Duration(ns), err
			}

			other = append(other, out.Text())
		}

		return 0, errors.New("the child ended")
	}

	fail := func(err error) {
		stdin.Close()

		b.Fatalf("candidate child: %v (%v)\n%s\n%s", err, cmd.Wait(), strings.Join(other, "\n"), stderr.String())
	}

	var times []time.Duration

	for b.Loop() {
		if _, err := fmt.Fprintln(stdin); err != nil {
			fail(err)
		}

		d, err := next()
		if err != nil {
			fail(err)
		}

		times = append(times, d)
	}

	stdin.Close()

	if err := cmd.Wait(); err != nil {
		b.Fatalf("candidate child: %v\n%s\n%s", err, strings.Join(other, "\n"), stderr.String())
	}

	reportToCandidate(b, times)
}

// runCandidateChild is the scanner of the netns candidate benchmarks, run
// in the scanner's namespace; TestMain hands the child process to it.
func runCandidateChild(specPath string) error {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}

	var spec candidateChildSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}

	pki, err := clusterPKI()
	if err != nil {
		return err
	}

	id, err := pki.AdminIdentity(time.Now(), time.Hour)
	if err != nil {
		return err
	}

	dialer := transport.NewDialer(id)

	if _, err := startPeerIn(spec, pki, spec.Known); err != nil {
		return err
	}

	// New nodes take addresses never used before, in random order: an
	// address in the neighbour table from an earlier iteration would
	// answer ARP sooner than a new node does.
	var fresh []netip.Addr

	seq, err := Hosts(spec.Prefix, 0)
	if err != nil {
		return err
	}

	for a := range seq {
		if a != spec.Self && a != spec.Known {
			fresh = append(fresh, a)
		}
	}

	rand.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })

	in := bufio.NewScanner(os.Stdin)

	for i := 0; in.Scan(); i++ {
		d, err := candidateIteration(context.Background(), spec, pki, id, dialer, seq, fresh[i%len(fresh)])
		if err != nil {
			return err
		}

		fmt.Printf("%s%d\n", candidateResult, d.Nanoseconds())
	}

	return in.Err()
}

// candidateIteration is one measurement in the child: a fresh Combined over
// spec's sources, and a new node at addr some time into its pause.
func candidateIteration(ctx context.Context, spec candidateChildSpec, pki *fakeapid.PKI, id transport.Identity,
	dialer transport.Dialer, sweep func(func(netip.Addr) bool), addr netip.Addr,
) (time.Duration, error) {
	s, err := NewScanner(ScannerOptions{
		Identity: id, Dialer: dialer, Port: spec.Port,
		Exclude: []netip.Addr{spec.Self}, Logger: zerolog.Nop(),
	})
	if err != nil {
		return 0, err
	}

	members := &lister{}
	members.set(nil, memberAt(spec.Known))

	sources := []Source{Fixed{SourceName: SourceScan, List: Targets{Addrs: sweep, Range: spec.Prefix, Count: UsableHosts(spec.Prefix)}}}
	if spec.Mode == candidateMembersScan {
		sources = append([]Source{Members{Lister: members}}, sources...)
	}

	c := NewCombined(s, sources, DefaultScanTimeout, atQuorum, clockwork.NewRealClock(), zerolog.Nop())
	defer c.Close()

	var srv *fakeapid.Server

	d, err := timeToCandidate(ctx, c, spec.Interval, func(pause time.Duration) (netip.Addr, time.Time, error) {
		// Without members nothing ends the pause early: the moment is drawn
		// over all of it. With members only the phase against the poll
		// matters (see benchMemberLoopback).
		window := pause
		if spec.Mode == candidateMembersScan {
			window = DefaultScanTimeout
		}

		time.Sleep(rand.N(window))

		if out, err := exec.Command("ip", "-n", spec.PeersNetns, "addr", "add", addr.String()+"/24", "dev", spec.PeersDev).CombinedOutput(); err != nil {
			return addr, time.Time{}, fmt.Errorf("add %s: %w: %s", addr, err, out)
		}

		var err error
		if srv, err = startPeerIn(spec, pki, addr); err != nil {
			return addr, time.Time{}, err
		}

		members.set(nil, memberAt(spec.Known), memberAt(addr))

		return addr, time.Now(), nil
	})

	if srv != nil {
		srv.Close()
	}

	// The next iteration starts from the same /24: one peer and silence.
	if out, delErr := exec.Command("ip", "-n", spec.PeersNetns, "addr", "del", addr.String()+"/24", "dev", spec.PeersDev).CombinedOutput(); delErr != nil && err == nil {
		err = fmt.Errorf("del %s: %w: %s", addr, delErr, out)
	}

	return d, err
}

// startPeerIn starts a fake apid of pki's cluster at addr in the peers'
// namespace: the listening socket is made there, so it serves there.
func startPeerIn(spec candidateChildSpec, pki *fakeapid.PKI, addr netip.Addr) (*fakeapid.Server, error) {
	var srv *fakeapid.Server

	err := inNetns(spec.PeersNetns, func() (err error) {
		srv, err = fakeapid.Start(fakeapid.Config{PKI: pki, Listen: []string{netip.AddrPortFrom(addr, spec.Port).String()}}, fakeapid.Node{IP: addr})

		return err
	})
	if err != nil {
		return nil, fmt.Errorf("start fake apid %s: %w", addr, err)
	}

	return srv, nil
}
