package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	daemonconfig "github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/daemon"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// cluster is one generated Talos cluster: its OS CA and an admin talosconfig,
// made once per test binary (the secrets bundle takes a second or two).
var cluster = sync.OnceValues(func() (*fakeapid.PKI, []byte) {
	bundle, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersionCurrent)
	if err != nil {
		panic(err)
	}

	in, err := generate.NewInput("fsm-test", "https://127.0.0.1:6443", constants.DefaultKubernetesVersion,
		generate.WithSecretsBundle(bundle))
	if err != nil {
		panic(err)
	}

	tc, err := in.Talosconfig()
	if err != nil {
		panic(err)
	}

	data, err := tc.Bytes()
	if err != nil {
		panic(err)
	}

	pki, err := fakeapid.PKIFromCA(bundle.Certs.OS)
	if err != nil {
		panic(err)
	}

	return pki, data
})

const (
	bootstrap = machine.MachineService_Bootstrap_FullMethodName
	// virtualSpeed: the daemons' clock runs this much faster than real time,
	// so PRE_BOOTSTRAP_DELAY, intervals and backoff cost milliseconds.
	virtualStep = 100 * time.Millisecond
	realTick    = time.Millisecond
)

// node is one fake node and, unless noDaemon, the daemon on it.
type node struct {
	fake     fakeapid.Node
	noDaemon bool
	// status, when set, is written to the node's status file before start
	// (a daemon restarted after a crash, or a peer's published state).
	status func(self election.Incarnation, others map[string]election.Incarnation) *election.Status
	// prebootstrap: Bootstrap is sent to this node before any daemon runs;
	// prebootstrapWait waits until its etcd runs.
	prebootstrap, prebootstrapWait bool
	// later runs once, this long (real time) after the daemons started:
	// an outside event such as an operator's bootstrap or a leader's
	// withdrawal published in its status file.
	later      func(t *testing.T, srv *fakeapid.Server, port uint16, statusPath string, all map[string]election.Incarnation)
	laterAfter time.Duration
	// laterWhen, when set, holds later back until it holds for the status
	// files under root (polled): an event, so that a loaded machine does
	// not reorder the case.
	laterWhen func(root string, own *fakeapid.Server) bool
	// startWhen, when set, keeps the node's apid closed until it holds.
	startWhen func(root string) bool
}

// when polls cond every few milliseconds (real time) until it holds or ctx
// ends, then runs fn.
func when(ctx context.Context, root string, cond func(root string) bool, fn func()) {
	go func() {
		for {
			if cond(root) {
				fn()

				return
			}

			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
}

// followerRounds holds once name published FollowerWait and then read the
// status file of the node whose apid is own n times: n rounds of waiting
// (a follower's status file does not change from round to round, so its
// rounds are counted where it reads).
func followerRounds(name string, n int) func(root string, own *fakeapid.Server) bool {
	base := -1

	return func(root string, own *fakeapid.Server) bool {
		reads := own.CallCount(machine.MachineService_Read_FullMethodName)
		if base >= 0 {
			return reads-base >= n
		}

		data, err := os.ReadFile(statusPathOf(root, name))
		if err != nil {
			return false
		}

		if st, err := election.ParseStatus(data); err == nil && st.FSMState == "FollowerWait" {
			base = reads
		}

		return false
	}
}

// filesOnly makes a condition on the status files alone a laterWhen.
func filesOnly(cond func(root string) bool) func(root string, _ *fakeapid.Server) bool {
	return func(root string, _ *fakeapid.Server) bool { return cond(root) }
}

// published reports whether name's status file says phase, or a reason
// containing reason ("" for any).
func published(name string, phase election.Phase, reason string) func(root string) bool {
	return func(root string) bool {
		data, err := os.ReadFile(statusPathOf(root, name))
		if err != nil {
			return false
		}

		st, err := election.ParseStatus(data)

		return err == nil && (phase == "" || st.Phase == phase) && strings.Contains(st.Reason, reason)
	}
}

type result struct {
	name  string
	steps []fsm.Step
	err   error
	logs  *bytes.Buffer
	calls []fakeapid.Call
}

type run struct {
	results  map[string]*result
	clusters []fakeapid.Cluster
	servers  map[string]*fakeapid.Server
}

// runCluster starts the fake nodes on 127.0.<subnet>.x, one daemon per node
// on a shared fast-forwarding clock, and waits until every daemon ends or
// the virtual deadline passes.
func runCluster(t *testing.T, subnet byte, quorum int, names []string, nodes map[string]node, virtualDeadline time.Duration, tune func(*daemonconfig.Config)) run {
	t.Helper()

	pki, talosconfig := cluster()
	registry := fakeapid.NewRegistry()
	port := freePort(t, netip.AddrFrom4([4]byte{127, 0, subnet, 1}))
	root := t.TempDir()
	clock := clockwork.NewFakeClockAt(time.Now())

	ips := map[string]netip.Addr{}
	servers := map[string]*fakeapid.Server{}
	incarnations := map[string]election.Incarnation{}

	var peers []netip.Addr

	for i, name := range names {
		ip := netip.AddrFrom4([4]byte{127, 0, subnet, byte(i + 1)})
		ips[name] = ip
		peers = append(peers, ip)
	}

	for _, name := range names {
		spec := nodes[name]
		spec.fake.IP = ips[name]
		spec.fake.FilesRoot = filepath.Join(root, name, "host")

		if spec.fake.BootID == "" {
			spec.fake.BootID = fmt.Sprintf("%08x-0000-4000-8000-%012x", ips[name].As4()[3], ips[name].As4()[3])
		}

		if spec.fake.DataFillDelay == 0 {
			spec.fake.DataFillDelay = 50 * time.Millisecond
		}

		if spec.fake.HealthyDelay == 0 {
			spec.fake.HealthyDelay = 50 * time.Millisecond
		}

		if spec.fake.JoinDelay == 0 {
			spec.fake.JoinDelay = 100 * time.Millisecond
		}

		incarnations[name] = election.Incarnation{IP: ips[name], BootID: spec.fake.BootID}

		for _, d := range []string{statusfile.DefaultDir, "system/secrets", "run"} {
			mkdir(t, filepath.Join(root, name, "host", d))
		}

		if spec.fake.MachineType != transport.MachineTypeWorker {
			mkdir(t, filepath.Join(root, name, "host", "system", "secrets", "etcd"))
		}

		if spec.startWhen != nil {
			gate := make(chan struct{})
			spec.fake.StartGate = gate
			when(t.Context(), root, spec.startWhen, func() { close(gate) })
		}

		srv, err := fakeapid.Start(fakeapid.Config{
			PKI: pki, Registry: registry,
			Listen: []string{netip.AddrPortFrom(ips[name], port).String()},
		}, spec.fake)
		if err != nil {
			t.Fatalf("start fake %s: %v", name, err)
		}

		t.Cleanup(func() { srv.Close() }) //nolint:errcheck

		servers[name] = srv
		nodes[name] = spec
	}

	if err := os.WriteFile(filepath.Join(root, "talosconfig"), talosconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, name := range names {
		spec := nodes[name]

		if spec.prebootstrap {
			prebootstrap(t, servers[name], port, spec.prebootstrapWait)
		}

		if spec.status != nil {
			others := map[string]election.Incarnation{}
			for k, v := range incarnations {
				others[k] = v
			}

			st := spec.status(incarnations[name], others)
			if st.Quorum == 0 {
				st.Quorum = quorum // as a daemon configured like the others publishes it
			}

			writeStatus(t, statusPathOf(root, name), st)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	// Fast-forward: the fake apids keep real time (their delays are a few
	// milliseconds), the daemons' waits run on the virtual clock, which
	// moves in proportion to real time (virtualStep per realTick) even
	// when a loaded machine drops ticks: a case that compares a fake's
	// delay with a daemon's wait keeps its order.
	start := clock.Now()

	go func() {
		ticker := time.NewTicker(realTick)
		defer ticker.Stop()

		last := time.Now()

		for {
			select {
			case <-ctx.Done():
				return
			case now := <-ticker.C:
				clock.Advance(min(now.Sub(last)*(virtualStep/realTick), 50*virtualStep))
				last = now

				if clock.Since(start) > virtualDeadline {
					cancel()
				}
			}
		}
	}()

	for _, name := range names {
		if spec := nodes[name]; spec.later != nil {
			run := func() { spec.later(t, servers[name], port, statusPathOf(root, name), incarnations) }
			if spec.laterWhen != nil {
				own := servers[name]
				when(ctx, root, func(root string) bool { return spec.laterWhen(root, own) }, run)

				continue
			}

			timer := time.AfterFunc(spec.laterAfter, run)
			t.Cleanup(func() { timer.Stop() })
		}
	}

	results := map[string]*result{}

	var wg sync.WaitGroup

	for _, name := range names {
		spec := nodes[name]
		if spec.noDaemon {
			continue
		}

		res := &result{name: name, logs: &bytes.Buffer{}}
		results[name] = res
		host := filepath.Join(root, name, "host")
		cfg := daemonconfig.Defaults()
		// The cases name the oldest node as the bootstrapper; the shipped
		// order (address) is run by the e2e three-control-plane scenario.
		cfg.LeaderOrder = election.OrderBootTime
		cfg.QuorumNodes = quorum
		cfg.NodeIP = ips[name]
		cfg.Peers = peers
		cfg.APIDPort = int(port)
		cfg.ScanTimeout = 500 * time.Millisecond
		cfg.DetectGrace = 2 * time.Second

		if tune != nil {
			tune(&cfg)
		}
		cfg.Talosconfig = filepath.Join(root, "talosconfig")
		cfg.SecretsDir = filepath.Join(host, "system", "secrets")
		cfg.StatusDir = filepath.Join(host, statusfile.DefaultDir)
		cfg.RunDir = filepath.Join(root, name, "run")

		wg.Add(1)

		go func() {
			defer wg.Done()

			log := zerolog.New(&lockedWriter{w: res.logs}).With().Str("node", name).Logger()
			res.err = daemon.Run(ctx, cfg, daemon.Options{Log: log, Clock: clock, OnStep: func(s fsm.Step) { res.steps = append(res.steps, s) }})
		}()
	}

	wg.Wait()
	cancel()

	clusters, err := registry.Clusters()
	if err != nil {
		t.Fatal(err)
	}

	for name, res := range results {
		res.calls = servers[name].Calls()
	}

	return run{results: results, clusters: clusters, servers: servers}
}

func prebootstrap(t *testing.T, srv *fakeapid.Server, port uint16, wait bool) {
	t.Helper()

	pki, _ := cluster()

	id, err := pki.AdminIdentity(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	n, err := transport.NewDialer(id).Dial(t.Context(), netip.AddrPortFrom(srv.Node().IP, port))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close() //nolint:errcheck

	if err := n.Bootstrap(t.Context()); err != nil {
		t.Fatalf("pre-bootstrap %s: %v", srv.Node().IP, err)
	}

	if !wait {
		return
	}

	// Wait (real time, a few ms) until etcd runs there.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if svc, err := n.EtcdService(t.Context()); err == nil && svc.Running() {
			return
		}

		time.Sleep(10 * time.Millisecond)
	}

	t.Fatalf("pre-bootstrapped etcd on %s never ran", srv.Node().IP)
}

// transitions collapses repeated self-loops (their count depends on timing)
// into one, leaving the exact path a daemon walked.
func transitions(steps []fsm.Step) []string {
	var out []string

	for _, s := range steps {
		line := fmt.Sprintf("%s -%s-> %s", s.From, s.Event, s.To)
		if s.From == s.To && len(out) > 0 && out[len(out)-1] == line {
			continue
		}

		out = append(out, line)
	}

	return out
}

// withoutSelfLoops drops the waiting rounds from a path: whether a state
// waited once more depends on the machine's load, the path does not.
func withoutSelfLoops(lines []string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(l string) bool {
		from, rest, _ := strings.Cut(l, " -")
		_, to, _ := strings.Cut(rest, "-> ")

		return from == to
	})
}

func path(lines ...string) []string { return lines }

// booted is how every control-plane daemon starts.
var booted = path(
	"Detect -controlplane_detected-> Credentials",
	"Credentials -credentials_ready-> Connect",
	"Connect -connected-> Scan",
)

// after is the path that continues start with lines.
func after(start []string, lines ...string) []string { return append(slices.Clone(start), lines...) }

func countCalls(calls []fakeapid.Call, method string) int {
	n := 0

	for _, c := range calls {
		if c.Method == method {
			n++
		}
	}

	return n
}

func logLines(buf *bytes.Buffer, msg string) []map[string]any {
	var out []map[string]any

	for _, line := range strings.Split(buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
			out = append(out, m)
		}
	}

	return out
}

func freePort(t *testing.T, ip netip.Addr) uint16 {
	t.Helper()

	l, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() //nolint:errcheck

	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func mkdir(t *testing.T, dir string) {
	t.Helper()

	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.w.Write(p)
}

var leaderPath = after(booted,
	"Scan -quorum_reached-> Elect",
	"Elect -lead-> LeaderDelay",
	"LeaderDelay -lead-> LeaderDelay",
	"LeaderDelay -send_bootstrap-> Bootstrap",
	"Bootstrap -await_etcd-> AwaitEtcd",
	"AwaitEtcd -done-> Done",
)

func TestFSM(t *testing.T) {
	oldest := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	cp := func(age int) fakeapid.Node {
		return fakeapid.Node{MachineType: transport.MachineTypeControlPlane, BootTime: oldest.Add(time.Duration(age) * time.Minute)}
	}

	// A host /proc whose kernel command line connects the machine to Omni.
	omniProc := t.TempDir()
	if err := os.WriteFile(filepath.Join(omniProc, "cmdline"),
		[]byte("BOOT_IMAGE=/A/vmlinuz talos.platform=metal siderolink.api=https://omni.example.com?jointoken=secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		quorum int
		names  []string
		nodes  map[string]node
		// deadline is virtual time; blocked cases run into it on purpose.
		deadline time.Duration
		// want: per daemon, the collapsed path; nil = not checked exactly.
		want map[string][]string
		// wantBootstraps: Bootstrap calls received per node.
		wantBootstraps map[string]int
		wantClusters   int
		wantFounder    string
		wantErr        map[string]bool
		tune           func(*daemonconfig.Config)
		check          func(t *testing.T, r run)
	}{
		{
			name: "single control-plane node", quorum: 1,
			names: []string{"cp1"}, nodes: map[string]node{"cp1": {fake: cp(0)}},
			want:           map[string][]string{"cp1": leaderPath},
			wantBootstraps: map[string]int{"cp1": 1}, wantClusters: 1, wantFounder: "cp1",
		},
		{
			name: "worker exits cleanly", quorum: 1,
			names: []string{"w1"}, nodes: map[string]node{"w1": {fake: fakeapid.Node{MachineType: transport.MachineTypeWorker}}},
			want: map[string][]string{"w1": path(
				"Detect -secrets_missing-> Credentials",
				"Credentials -credentials_ready-> Connect",
				"Connect -worker_detected-> Done",
			)},
			wantBootstraps: map[string]int{"w1": 0},
		},
		{
			name: "three nodes: the oldest leads, two follow", quorum: 3,
			names:          []string{"cp1", "cp2", "cp3"},
			nodes:          map[string]node{"cp1": {fake: cp(2)}, "cp2": {fake: cp(0)}, "cp3": {fake: cp(1)}},
			want:           map[string][]string{"cp2": leaderPath},
			wantBootstraps: map[string]int{"cp1": 0, "cp2": 1, "cp3": 0}, wantClusters: 1, wantFounder: "cp2",
			check: func(t *testing.T, r run) {
				for _, f := range []string{"cp1", "cp3"} {
					got := transitions(r.results[f].steps)
					if got[len(got)-1] != "FollowerWait -done-> Done" {
						t.Errorf("%s ended with %q, want FollowerWait -done-> Done", f, got[len(got)-1])
					}

					for _, line := range got {
						if strings.Contains(line, "Bootstrap") && !strings.Contains(line, "bootstrapped") {
							t.Errorf("follower %s entered %q", f, line)
						}
					}
				}
			},
		},
		{
			name: "apid not ready at first", quorum: 1,
			names:          []string{"cp1"},
			nodes:          map[string]node{"cp1": {fake: func() fakeapid.Node { n := cp(0); n.StartDelay = 300 * time.Millisecond; return n }()}},
			want:           map[string][]string{"cp1": leaderPath},
			wantBootstraps: map[string]int{"cp1": 1}, wantClusters: 1, wantFounder: "cp1",
			check: func(t *testing.T, r run) {
				if n := len(logLines(r.results["cp1"].logs, "state failed, retrying")); n == 0 {
					t.Error("Connect never retried although apid was not listening")
				}
			},
		},
		{
			name: "Bootstrap answers FailedPrecondition twice", quorum: 1,
			names:          []string{"cp1"},
			nodes:          map[string]node{"cp1": {fake: func() fakeapid.Node { n := cp(0); n.NotReadyBootstraps = 2; return n }()}},
			want:           map[string][]string{"cp1": leaderPath},
			wantBootstraps: map[string]int{"cp1": 3}, wantClusters: 1, wantFounder: "cp1",
		},
		{
			name: "restart after a bootstrap that may not have been sent: AlreadyExists", quorum: 1,
			names: []string{"cp1"},
			nodes: map[string]node{"cp1": {
				// The crashed daemon's Bootstrap was accepted, but etcd's data
				// directory fills only after the daemon's 5 min (virtual, 3 s
				// real) wait; the resent request finds it filled just in time.
				fake: func() fakeapid.Node {
					n := cp(0)
					n.DataFillDelay = 8 * time.Second
					n.BootstrapHook = func(_ context.Context, call int) error {
						if call == 2 {
							return status.Error(codes.AlreadyExists, "etcd data directory is not empty")
						}

						return nil
					}

					return n
				}(),
				prebootstrap: true,
				status:       crashedInBootstrap(oldest),
			}},
			deadline: time.Hour,
			want: map[string][]string{"cp1": after(booted,
				"Scan -quorum_reached-> Elect",
				"Elect -await_etcd-> AwaitEtcd",
				"AwaitEtcd -send_bootstrap-> Bootstrap",
				"Bootstrap -await_etcd-> AwaitEtcd",
				"AwaitEtcd -done-> Done",
			)},
			// One from the crashed run (the test's), one resent by the daemon
			// after its wait found no etcd data.
			wantBootstraps: map[string]int{"cp1": 2}, wantClusters: 1, wantFounder: "cp1",
		},
		{
			name: "restart after a bootstrap whose etcd fills while waiting: never resent", quorum: 1,
			names: []string{"cp1"},
			nodes: map[string]node{"cp1": {
				fake:         func() fakeapid.Node { n := cp(0); n.DataFillDelay = time.Second; return n }(),
				prebootstrap: true, status: crashedInBootstrap(oldest),
			}},
			deadline: time.Hour,
			want: map[string][]string{"cp1": after(booted,
				"Scan -quorum_reached-> Elect",
				"Elect -await_etcd-> AwaitEtcd",
				"AwaitEtcd -done-> Done",
			)},
			wantBootstraps: map[string]int{"cp1": 1}, wantClusters: 1, wantFounder: "cp1",
		},
		{
			name: "restart after a bootstrap whose etcd already has data: never resent", quorum: 1,
			names: []string{"cp1"},
			nodes: map[string]node{"cp1": {fake: cp(0), prebootstrap: true, prebootstrapWait: true, status: crashedInBootstrap(oldest)}},
			// Its etcd is healthy by the first round: Step ends it there.
			want: map[string][]string{"cp1": after(booted,
				"Scan -quorum_reached-> Elect",
				"Elect -done-> Done",
			)},
			wantBootstraps: map[string]int{"cp1": 1}, wantClusters: 1, wantFounder: "cp1",
		},
		{
			name: "Bootstrap outcome unknown (Unavailable): wait, then resend on this node only", quorum: 1,
			names: []string{"cp1"},
			nodes: map[string]node{"cp1": {fake: func() fakeapid.Node {
				n := cp(0)
				n.BootstrapFaults = []fakeapid.Fault{fakeapid.FaultUnavailable}

				return n
			}()}},
			deadline: time.Hour,
			// The leader's path, with one resend before etcd is ready.
			want: map[string][]string{"cp1": append(slices.Clone(leaderPath[:len(leaderPath)-1]),
				"AwaitEtcd -send_bootstrap-> Bootstrap",
				"Bootstrap -await_etcd-> AwaitEtcd",
				"AwaitEtcd -done-> Done",
			)},
			wantBootstraps: map[string]int{"cp1": 2}, wantClusters: 1, wantFounder: "cp1",
		},
		{
			name: "etcd slow to become healthy", quorum: 1,
			names:          []string{"cp1"},
			nodes:          map[string]node{"cp1": {fake: func() fakeapid.Node { n := cp(0); n.HealthyDelay = 4 * time.Second; return n }()}},
			want:           map[string][]string{"cp1": leaderPath},
			wantBootstraps: map[string]int{"cp1": 1}, wantClusters: 1, wantFounder: "cp1",
			deadline: time.Hour,
			check: func(t *testing.T, r run) {
				waitedAgain := false
				for _, l := range logLines(r.results["cp1"].logs, "state transition") {
					waitedAgain = waitedAgain || (l["from"] == "AwaitEtcd" && l["event"] == "await_etcd")
				}

				if !waitedAgain {
					t.Error("the bounded etcd wait never ran out and waited again in place")
				}
			},
		},
		{
			name: "a follower finds the cluster already bootstrapped", quorum: 2,
			names: []string{"cp1", "cp2"},
			nodes: map[string]node{"cp1": {fake: cp(0), noDaemon: true, prebootstrap: true, prebootstrapWait: true}, "cp2": {fake: cp(1)}},
			want: map[string][]string{"cp2": after(booted,
				"Scan -quorum_reached-> Elect",
				"Elect -follow-> FollowerWait",
				"FollowerWait -done-> Done",
			)},
			wantBootstraps: map[string]int{"cp2": 0}, wantClusters: 1, wantFounder: "cp1",
		},
		{
			// v1.13.9's StartAllServices starts etcd in bootstrap mode on an
			// init node by itself once its image is pulled: without the
			// rule, the oldest node (cp2) would lead and found a second
			// cluster before the init node's data shows.
			name: "a Talos init node founds etcd by itself: nobody sends Bootstrap", quorum: 3,
			names: []string{"cp1", "cp2", "cp3"},
			nodes: map[string]node{
				"cp1": {fake: fakeapid.Node{
					MachineType: transport.MachineTypeInit, BootTime: oldest.Add(5 * time.Minute),
					InitFoundAfter: 3 * time.Second, DataFillDelay: time.Second,
				}},
				"cp2": {fake: cp(0)}, "cp3": {fake: cp(1)},
			},
			wantBootstraps: map[string]int{"cp1": 0, "cp2": 0, "cp3": 0}, wantClusters: 1, wantFounder: "cp1",
			check: func(t *testing.T, r run) {
				for _, name := range []string{"cp1", "cp2", "cp3"} {
					if !strings.Contains(r.results[name].logs.String(), "the Talos init node") {
						t.Errorf("%s never named the init node:\n%s", name, r.results[name].logs)
					}
				}
			},
		},
		{
			name: "a leader withdraws when an older node appears", quorum: 1,
			names: []string{"cp1", "cp2"},
			nodes: map[string]node{
				// cp2 is alone at first and leads; cp1 (older) comes up once
				// cp2 announced, long before cp2's 60 s delay ends.
				"cp1": {fake: cp(0), startWhen: published("cp2", election.PhaseAnnounced, "")},
				"cp2": {fake: cp(1)},
			},
			tune:           func(c *daemonconfig.Config) { c.PreBootstrapDelay = time.Minute },
			wantBootstraps: map[string]int{"cp1": 1, "cp2": 0}, wantClusters: 1, wantFounder: "cp1",
			check: func(t *testing.T, r run) {
				got := transitions(r.results["cp2"].steps)
				if !slices.Contains(got, "Elect -lead-> LeaderDelay") {
					t.Fatalf("cp2 never led, the case tests nothing: %v", got)
				}

				st := r.status(t, "cp2")

				if st.WithdrawnThrough < 1 || st.Intent < 1 || st.Phase != election.PhaseDone {
					t.Fatalf("cp2 should have withdrawn intent %d and finished as a follower: withdrawnThrough %d, phase %s",
						st.Intent, st.WithdrawnThrough, st.Phase)
				}
			},
		},
		{
			// Talos's etcd gives up waiting to join after EtcdJoinTimeout
			// (30 min) and stays Failed until the boot timeout reboots the
			// node: a quorum that forms later must still bootstrap.
			name: "etcd gave up waiting to join on every node: still one bootstrap", quorum: 3,
			names: []string{"cp1", "cp2", "cp3"},
			nodes: map[string]node{
				"cp1": {fake: func() fakeapid.Node { n := cp(2); n.EtcdJoinTimeout = time.Nanosecond; return n }()},
				"cp2": {fake: func() fakeapid.Node { n := cp(0); n.EtcdJoinTimeout = time.Nanosecond; return n }()},
				"cp3": {fake: func() fakeapid.Node { n := cp(1); n.EtcdJoinTimeout = time.Nanosecond; return n }()},
			},
			want:           map[string][]string{"cp2": leaderPath},
			wantBootstraps: map[string]int{"cp1": 0, "cp2": 1, "cp3": 0}, wantClusters: 1, wantFounder: "cp2",
		},
		{
			name: "quorum waits for a late node", quorum: 2,
			names: []string{"cp1", "cp2"},
			nodes: map[string]node{
				"cp1": {fake: cp(1)},
				// cp2's apid comes up once cp1 waits for quorum; nothing
				// may happen before.
				"cp2": {fake: cp(0), startWhen: published("cp1", "", "waiting for quorum")},
			},
			wantBootstraps: map[string]int{"cp1": 0, "cp2": 1}, wantClusters: 1, wantFounder: "cp2",
			check: func(t *testing.T, r run) {
				got := transitions(r.results["cp1"].steps)
				if !slices.Contains(got, "Scan -quorum_missing-> Scan") {
					t.Fatalf("cp1 never waited for quorum: %v", got)
				}

				if created := r.clusters[0].CreatedAt; created.Before(r.servers["cp2"].Calls()[0].Time) {
					t.Fatalf("bootstrapped at %s, before the late node's apid served its first call", created)
				}
			},
		},
		{
			name: "restart long after a bootstrap that never reached machined: resent", quorum: 1,
			names: []string{"cp1"},
			nodes: map[string]node{"cp1": {fake: cp(0), status: func(self election.Incarnation, all map[string]election.Incarnation) *election.Status {
				st := crashedInBootstrap(oldest)(self, all)
				st.BootstrapAt = time.Now().Add(-time.Hour)

				return st
			}}},
			want: map[string][]string{"cp1": after(booted,
				"Scan -quorum_reached-> Elect",
				"Elect -send_bootstrap-> Bootstrap",
				"Bootstrap -await_etcd-> AwaitEtcd",
				"AwaitEtcd -done-> Done",
			)},
			wantBootstraps: map[string]int{"cp1": 1}, wantClusters: 1, wantFounder: "cp1",
		},
		{
			name: "a blocked leader follows once another node was bootstrapped", quorum: 2,
			names: []string{"cp1", "cp2"},
			nodes: map[string]node{
				"cp1": {fake: cp(0)},
				// cp2 runs no extension (no status file): cp1 leads but is
				// blocked, until an operator bootstraps cp2 by hand.
				"cp2": {fake: cp(1), noDaemon: true, laterWhen: filesOnly(published("cp1", election.PhaseAnnounced, "has no status file")),
					later: func(t *testing.T, srv *fakeapid.Server, port uint16, _ string, _ map[string]election.Incarnation) {
						prebootstrap(t, srv, port, false)
					}},
			},
			deadline:       time.Hour,
			wantBootstraps: map[string]int{"cp1": 0, "cp2": 1}, wantClusters: 1, wantFounder: "cp2",
			check: func(t *testing.T, r run) {
				// Whether cp1's etcd joins within its first follower pass
				// depends on timing; the rest of the path does not.
				got := slices.DeleteFunc(transitions(r.results["cp1"].steps), func(l string) bool {
					return l == "FollowerWait -follow-> FollowerWait"
				})
				want := after(booted,
					"Scan -quorum_reached-> Elect",
					"Elect -lead-> LeaderDelay",
					"LeaderDelay -lead-> LeaderDelay",
					"LeaderDelay -follow-> FollowerWait",
					"FollowerWait -done-> Done",
				)

				if !slices.Equal(got, want) {
					t.Errorf("cp1 walked\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				}
			},
		},
		{
			name: "a follower's lock is released when its leader withdraws", quorum: 2,
			names: []string{"cp1", "cp2"},
			nodes: map[string]node{
				// cp1 (no daemon here) announced intent 1, then withdraws it,
				// once cp2 waited as a follower a few rounds.
				"cp1": {fake: cp(0), noDaemon: true, status: announced(oldest), laterWhen: followerRounds("cp2", 3),
					later: func(t *testing.T, _ *fakeapid.Server, _ uint16, statusPath string, all map[string]election.Incarnation) {
						st := announced(oldest)(all["cp1"], all)
						st.Phase, st.Lock, st.WithdrawnThrough, st.Quorum = election.PhaseIdle, nil, 1, 2
						writeStatus(t, statusPath, st)
					}},
				"cp2": {fake: cp(1)},
			},
			deadline:       10 * time.Minute,
			wantBootstraps: map[string]int{"cp1": 0, "cp2": 0},
			wantErr:        map[string]bool{"cp2": true}, // cp1 never announces again: cp2 waits until the deadline
			check: func(t *testing.T, r run) {
				got := transitions(r.results["cp2"].steps)
				if !slices.Contains(got, "Elect -follow-> FollowerWait") || !slices.Contains(got, "FollowerWait -follow-> FollowerWait") ||
					!slices.Contains(got, "FollowerWait -wait-> Scan") {
					t.Fatalf("cp2 should have locked to cp1, then let go when cp1 withdrew: %v", got)
				}

				st := r.status(t, "cp2")

				if st.Lock != nil {
					t.Fatalf("cp2 still holds lock %v after cp1 withdrew", st.Lock)
				}
			},
		},
		{
			name: "a leader that no longer ranks first goes back to scanning", quorum: 1,
			names: []string{"cp1", "cp2"},
			nodes: map[string]node{
				// cp1 (older, no extension here) comes up while cp2 waits out
				// its delay: cp2 withdraws and, with no intent to follow,
				// scans again.
				"cp1": {fake: cp(0), noDaemon: true, startWhen: published("cp2", election.PhaseAnnounced, "")},
				"cp2": {fake: cp(1)},
			},
			tune:           func(c *daemonconfig.Config) { c.PreBootstrapDelay = time.Minute },
			deadline:       10 * time.Minute,
			wantBootstraps: map[string]int{"cp1": 0, "cp2": 0},
			wantErr:        map[string]bool{"cp2": true}, // cp1 never announces: cp2 waits until the deadline
			check: func(t *testing.T, r run) {
				got := transitions(r.results["cp2"].steps)
				if !slices.Contains(got, "LeaderDelay -wait-> Scan") {
					t.Fatalf("cp2 should have left LeaderDelay for Scan: %v", got)
				}

				if st := r.status(t, "cp2"); st.WithdrawnThrough < 1 || st.Lock != nil {
					t.Fatalf("cp2 should have withdrawn intent 1: withdrawnThrough %d, lock %v", st.WithdrawnThrough, st.Lock)
				}
			},
		},
		{
			name: "a node of a healthy cluster is done without its quorum", quorum: 3,
			names: []string{"cp1"},
			nodes: map[string]node{"cp1": {fake: cp(0), prebootstrap: true, prebootstrapWait: true}},
			want: map[string][]string{"cp1": after(booted,
				"Scan -done-> Done",
			)},
			wantBootstraps: map[string]int{"cp1": 1}, wantClusters: 1, wantFounder: "cp1",
		},
		{
			name: "lock-blocked: a candidate locked to another leader's intent", quorum: 2,
			names: []string{"cp1", "cp2", "cp3"},
			nodes: map[string]node{
				"cp1": {fake: cp(0)},
				// cp2 runs no daemon here; its published status says it is
				// locked to cp3's intent 1, and cp3 (unreachable for cp1's
				// scan: no daemon, older status) never withdraws.
				"cp2": {fake: cp(1), noDaemon: true, status: func(self election.Incarnation, all map[string]election.Incarnation) *election.Status {
					return &election.Status{
						Version: election.StatusVersion, Incarnation: self, BootTime: oldest.Add(time.Minute), Phase: election.PhaseLocked,
						Lock: &election.IntentRef{Leader: all["cp3"], Number: 1},
					}
				}},
				"cp3": {fake: cp(2), noDaemon: true, status: func(self election.Incarnation, _ map[string]election.Incarnation) *election.Status {
					return &election.Status{
						Version: election.StatusVersion, Incarnation: self, BootTime: oldest.Add(2 * time.Minute), Phase: election.PhaseAnnounced,
						Lock: &election.IntentRef{Leader: self, Number: 1}, Intent: 1,
					}
				}},
			},
			deadline:       5 * time.Minute,
			wantBootstraps: map[string]int{"cp1": 0, "cp2": 0, "cp3": 0},
			wantErr:        map[string]bool{"cp1": true},
			check: func(t *testing.T, r run) {
				got := transitions(r.results["cp1"].steps)
				for _, line := range got {
					if strings.HasPrefix(line, "LeaderDelay -send_bootstrap") || strings.Contains(line, "-> Bootstrap") {
						t.Fatalf("cp1 went to Bootstrap although cp2 is locked to cp3: %v", got)
					}
				}

				st := r.status(t, "cp1")

				if st.Bootstrapping != 0 || st.SendState != election.SendNone || !strings.Contains(st.Reason, r.servers["cp3"].Node().IP.String()) {
					t.Fatalf("cp1's status should show it blocked by cp3's lock, got phase %s reason %q", st.Phase, st.Reason)
				}
			},
		},
		{
			// Omni bootstraps the clusters it manages: Talos tells cp1 it is
			// connected (the SiderolinkConfigs resource), and cp2, which
			// sees no sign itself, stands down once it reads cp1's status.
			name: "a machine connected to Omni stands down, and so does its peer", quorum: 2,
			names: []string{"cp1", "cp2"},
			nodes: map[string]node{
				"cp1": {fake: func() fakeapid.Node {
					n := cp(0)
					n.SideroLinkAPI = "https://omni.example.com?jointoken=secret"
					return n
				}()},
				"cp2": {fake: cp(1)},
			},
			want: map[string][]string{"cp1": path(
				"Detect -controlplane_detected-> Credentials",
				"Credentials -credentials_ready-> Connect",
				"Connect -stand_down-> Done",
			)},
			wantBootstraps: map[string]int{"cp1": 0, "cp2": 0},
			check: func(t *testing.T, r run) {
				// Whether cp2 first saw cp1 before it published depends on
				// timing; cp1 ranks first, so cp2 never leads meanwhile.
				got := transitions(r.results["cp2"].steps)
				if got[len(got)-1] != "Elect -stand_down-> Done" || slices.Contains(got, "Elect -lead-> LeaderDelay") {
					t.Errorf("cp2 walked %v, want it to stand down from Elect, never leading", got)
				}

				own := election.StandDownMessage("SiderolinkConfigs resource, apiEndpoint https://omni.example.com")
				want := map[string]string{"cp1": own, "cp2": r.servers["cp1"].Node().IP.String() + " stood down: " + own}

				for name, reason := range want {
					if st := r.status(t, name); st.StandDown != reason || st.Lock != nil || st.Phase != election.PhaseIdle {
						t.Errorf("%s published standDown %q, lock %v, phase %s; want %q, unlocked and idle", name, st.StandDown, st.Lock, st.Phase, reason)
					}

					if n := len(logLines(r.results[name].logs, reason)); n != 1 {
						t.Errorf("%s logged %q %d times, want once:\n%s", name, reason, n, r.results[name].logs)
					}

					if strings.Contains(r.results[name].logs.String(), "jointoken") {
						t.Errorf("%s logged the join token:\n%s", name, r.results[name].logs)
					}
				}
			},
		},
		{
			name: "the siderolink.api kernel argument alone stands a node down", quorum: 1,
			names: []string{"cp1"}, nodes: map[string]node{"cp1": {fake: cp(0)}},
			tune: func(c *daemonconfig.Config) { c.ProcDir = omniProc },
			want: map[string][]string{"cp1": path(
				"Detect -controlplane_detected-> Credentials",
				"Credentials -credentials_ready-> Connect",
				"Connect -stand_down-> Done",
			)},
			wantBootstraps: map[string]int{"cp1": 0},
			check: func(t *testing.T, r run) {
				want := election.StandDownMessage("siderolink.api=https://omni.example.com")
				if st := r.status(t, "cp1"); st.StandDown != want {
					t.Errorf("published standDown %q, want %q", st.StandDown, want)
				}
			},
		},
	}

	// Every row of the table must be taken by some case: a deleted row
	// fails the case that needs it, and a row no case needs is dead.
	taken := map[string]bool{}
	ran := 0

	defer func() {
		if t.Failed() || ran < len(cases) {
			return // a failure says more, and -run subsets see too little
		}

		// Every edge of a setup state, and every decision event from
		// some state (Step never decides some events in some states, a
		// lead after a send for one: the states tests and the simulator
		// take the rest).
		var untested []string

		eventTaken := map[fsm.Event]bool{}

		for line := range taken {
			if _, rest, ok := strings.Cut(line, " -"); ok {
				ev, _, _ := strings.Cut(rest, "-> ")
				eventTaken[fsm.Event(ev)] = true
			}
		}

		for _, row := range fsm.Table {
			if slices.Contains(slices.Collect(maps.Values(states.EventOf)), row.Event) {
				if !eventTaken[row.Event] && !slices.Contains(untested, string(row.Event)) {
					untested = append(untested, string(row.Event))
				}

				continue
			}

			for _, from := range row.From {
				if line := fmt.Sprintf("%s -%s-> %s", from, row.Event, row.To); !taken[line] {
					untested = append(untested, line)
				}
			}
		}

		// Credentials -worker_detected-> Done needs a worker config on a
		// STATE partition (root, loop devices): deploy/e2e takes it.
		if !slices.Equal(untested, []string{"Credentials -worker_detected-> Done"}) {
			t.Errorf("transitions no case takes: %v", untested)
		}
	}()

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			deadline := tc.deadline
			if deadline == 0 {
				deadline = 30 * time.Minute
			}

			ran++
			r := runCluster(t, byte(100+i), tc.quorum, tc.names, tc.nodes, deadline, tc.tune)

			for _, res := range r.results {
				for _, line := range transitions(res.steps) {
					taken[line] = true
				}
			}

			for name, res := range r.results {
				if (res.err != nil) != tc.wantErr[name] {
					t.Errorf("%s: daemon error = %v, want error %v\n%s", name, res.err, tc.wantErr[name], res.logs)
				}
			}

			for name, want := range tc.want {
				if got := transitions(r.results[name].steps); !slices.Equal(withoutSelfLoops(got), withoutSelfLoops(want)) {
					t.Errorf("%s walked\n  %s\nwant\n  %s\n%s", name, strings.Join(got, "\n  "), strings.Join(want, "\n  "), r.results[name].logs)
				}
			}

			for name, want := range tc.wantBootstraps {
				if got := countCalls(r.servers[name].Calls(), bootstrap); got != want {
					t.Errorf("%s received %d Bootstrap calls, want %d", name, got, want)
				}
			}

			if len(r.clusters) != tc.wantClusters {
				t.Fatalf("%d etcd clusters created, want %d: %+v", len(r.clusters), tc.wantClusters, r.clusters)
			}

			if tc.wantFounder != "" && r.clusters[0].Founder != r.servers[tc.wantFounder].Node().IP.String() {
				t.Errorf("cluster founded by %s, want %s", r.clusters[0].Founder, tc.wantFounder)
			}

			for name, srv := range r.servers {
				for _, c := range srv.Calls() {
					if !allowed[c.Method] {
						t.Errorf("%s received unexpected call %s", name, c.Method)
					}
				}
			}

			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// status is the status file a node's daemon left.
func (r run) status(t *testing.T, name string) *election.Status {
	t.Helper()

	data, err := os.ReadFile(filepath.Join(r.servers[name].FilesRoot(), statusfile.Path))
	if err != nil {
		t.Fatal(err)
	}

	st, err := election.ParseStatus(data)
	if err != nil {
		t.Fatal(err)
	}

	return st
}

func statusPathOf(root, name string) string {
	return filepath.Join(root, name, "host", statusfile.Path)
}

func writeStatus(t *testing.T, path string, st *election.Status) {
	data, err := election.MarshalStatus(*st)
	if err != nil {
		t.Error(err)

		return
	}

	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		t.Error(err)

		return
	}

	if err := os.Rename(path+".tmp", path); err != nil {
		t.Error(err)
	}
}

// announced is the status of a node (without a daemon in the test) that
// leads intent 1.
func announced(bootTime time.Time) func(election.Incarnation, map[string]election.Incarnation) *election.Status {
	return func(self election.Incarnation, _ map[string]election.Incarnation) *election.Status {
		return &election.Status{
			Version: election.StatusVersion, Incarnation: self, BootTime: bootTime, Phase: election.PhaseAnnounced,
			Lock: &election.IntentRef{Leader: self, Number: 1}, Intent: 1,
		}
	}
}

// crashedInBootstrap is the status a daemon leaves when it dies between
// deciding to bootstrap (persisted) and recording that it sent the request.
func crashedInBootstrap(bootTime time.Time) func(election.Incarnation, map[string]election.Incarnation) *election.Status {
	return func(self election.Incarnation, _ map[string]election.Incarnation) *election.Status {
		return &election.Status{
			Version: election.StatusVersion, Incarnation: self, BootTime: bootTime, Phase: election.PhaseBootstrapping,
			Lock: &election.IntentRef{Leader: self, Number: 1}, Intent: 1,
			Send: election.Send{Bootstrapping: 1, BootstrapBootID: self.BootID, SendState: election.SendLeaving, BootstrapAt: time.Now()},
		}
	}
}

// allowed are the only apid methods the daemon may call: reads, and
// Bootstrap. Anything else (Reset, Reboot, ApplyConfiguration...) is a bug.
var allowed = map[string]bool{
	machine.MachineService_Bootstrap_FullMethodName:      true,
	machine.MachineService_SystemStat_FullMethodName:     true,
	machine.MachineService_Read_FullMethodName:           true,
	machine.MachineService_List_FullMethodName:           true,
	machine.MachineService_ServiceList_FullMethodName:    true,
	machine.MachineService_EtcdMemberList_FullMethodName: true,
	"/cosi.resource.State/Get":                           true,
	"/cosi.resource.State/List":                          true, // cluster discovery members
}
