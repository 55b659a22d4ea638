// Command demo runs a simulated Talos cluster on this machine: one fake apid
// per node on its own loopback address (Linux routes all of 127.0.0.0/8 to
// lo), serving certificates of a freshly generated cluster CA, and one real
// daemon process per node. It prints one timeline per node (its states, the
// announce, lock and Bootstrap moments), writes the same as an SVG of
// swimlanes, and ends with a summary and the status subcommand's report on
// the simulated cluster; -v prints the daemons' interleaved JSON logs as
// well. It exits non-zero unless exactly one etcd cluster was bootstrapped,
// every daemon exited 0 and the status command exited 0.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/constants"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

type options struct {
	binary     string
	nodes      int
	workers    int
	quorum     int
	seed       uint64
	port       int
	timeout    time.Duration
	keep       bool
	maxStagger time.Duration
	verbose    bool
	svg        string
}

func main() {
	var o options

	flag.StringVar(&o.binary, "binary", "_out/kommodity-autobootstrap-extension-local", "daemon binary to run per node")
	flag.IntVar(&o.nodes, "nodes", 3, "control-plane nodes (1-7)")
	flag.IntVar(&o.workers, "workers", 1, "worker nodes (0-3)")
	flag.IntVar(&o.quorum, "quorum", 0, "TALOS_AUTO_BOOTSTRAP_QUORUM_NODES (default: every control-plane node)")
	flag.Uint64Var(&o.seed, "seed", 1, "random seed for boot times, boot order and delays")
	flag.IntVar(&o.port, "port", transport.APIDPort, "apid port of every fake node")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "give up after this long")
	flag.DurationVar(&o.maxStagger, "stagger", 4*time.Second, "nodes boot at random times within this window")
	flag.BoolVar(&o.keep, "keep", false, "keep the demo's temporary directory")
	flag.BoolVar(&o.verbose, "v", false, "print every daemon's JSON log lines as they come")
	flag.StringVar(&o.svg, "svg", "_out/demo-timeline.svg", "write the timeline as SVG swimlanes here (empty: do not)")
	flag.Parse()

	if o.quorum == 0 {
		o.quorum = o.nodes
	}

	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demoNode struct {
	name         string
	ip           netip.Addr
	controlPlane bool
	bootTime     time.Time
	bootID       string
	startAt      time.Duration
	dir          string
	exitCode     int
	started      time.Time
	server       *fakeapid.Server
}

func run(o options) error {
	if o.nodes < 1 || o.nodes > 7 || o.workers < 0 || o.workers > 3 || o.quorum < 1 {
		return errors.New("nodes must be 1-7, workers 0-3, quorum at least 1")
	}

	if _, err := os.Stat(o.binary); err != nil {
		return fmt.Errorf("daemon binary: %w (run make build-local)", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "kommodity-demo-")
	if err != nil {
		return err
	}

	if !o.keep {
		defer os.RemoveAll(dir) //nolint:errcheck
	}

	rng := rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15))
	out := &printer{w: os.Stdout, verbose: o.verbose}

	out.say("generating a cluster with machinery (secrets bundle, machine configs, talosconfig)")

	pki, talosconfig, err := newCluster()
	if err != nil {
		return err
	}

	registry := fakeapid.NewRegistry()
	defer registry.Close() //nolint:errcheck

	nodes := plan(o, rng, dir)
	cidr := netip.MustParsePrefix("127.0.10.0/27")
	begin := time.Now()
	out.begin = begin

	var wg sync.WaitGroup

	for _, n := range nodes {
		if err := prepare(n, talosconfig); err != nil {
			return err
		}

		srv, err := fakeapid.Start(fakeapid.Config{
			PKI:      pki,
			Registry: registry,
			Listen:   []string{netip.AddrPortFrom(n.ip, uint16(o.port)).String()},
		}, fakeapid.Node{
			IP:              n.ip,
			MachineType:     map[bool]transport.MachineType{true: transport.MachineTypeControlPlane, false: transport.MachineTypeWorker}[n.controlPlane],
			BootTime:        n.bootTime,
			BootID:          n.bootID,
			FilesRoot:       filepath.Join(n.dir, "host"),
			StartDelay:      n.startAt,
			TimeSyncedAfter: n.startAt + time.Duration(rng.IntN(1500))*time.Millisecond,
			DataFillDelay:   time.Second,
			HealthyDelay:    time.Second,
			JoinDelay:       2 * time.Second,
		})
		if err != nil {
			return fmt.Errorf("start fake apid %s: %w", n.name, err)
		}

		n.server = srv
		defer srv.Close() //nolint:errcheck

		out.say(fmt.Sprintf("%-4s %-12s %-12s boots %s, apid up after %s", n.name, n.ip,
			map[bool]string{true: "controlplane", false: "worker"}[n.controlPlane],
			n.bootTime.Format(time.TimeOnly), n.startAt.Round(time.Millisecond)))

		wg.Add(1)

		go func() {
			defer wg.Done()

			n.exitCode = daemon(ctx, o, n, cidr, out)
		}()
	}

	if !o.verbose {
		out.say("daemons running; their timelines follow when all are done (-v prints their JSON logs)")
	}

	wg.Wait()

	if err := timelines(o, out, nodes); err != nil {
		return err
	}

	// The status command runs whatever the outcome: when the demo did not
	// end with one bootstrap it is what explains why. Its own context, as
	// the demo's may have run out.
	sumErr := summary(out, nodes, registry, pki, begin)

	statusCtx, cancelStatus := context.WithTimeout(context.Background(), time.Minute)
	defer cancelStatus()

	statusErr := showStatus(statusCtx, o, out, dir, nodes, talosconfig)
	if sumErr != nil {
		return sumErr
	}

	return statusErr
}

// timelines prints every node's timeline and writes the SVG.
func timelines(o options, out *printer, nodes []*demoNode) error {
	names := make([]string, 0, len(nodes))
	titles := map[string]string{}

	for _, n := range nodes {
		names = append(names, n.name)
		titles[n.name] = n.ip.String()
	}

	tl := buildTimeline(names, titles, out.events)

	out.say("---- timeline (seconds since the demo started; ▲ announce, ● lock, ★ Bootstrap) ----")
	out.raw(tl.text())

	if o.svg == "" {
		return nil
	}

	workers := len(nodes) - o.nodes
	title := fmt.Sprintf("kommodity-autobootstrap demo: %d control-plane + %d worker nodes, quorum %d, seed %d",
		o.nodes, workers, o.quorum, o.seed)

	if err := os.MkdirAll(filepath.Dir(o.svg), 0o755); err != nil {
		return err
	}

	if err := os.WriteFile(o.svg, []byte(tl.svg(title)), 0o644); err != nil { //nolint:gosec // a picture for people
		return err
	}

	out.say("timeline picture written to " + o.svg)

	return nil
}

// showStatus ends the demo as an operator would look at a cluster from a
// workstation: the daemon binary's status subcommand, with a talosconfig of
// the demo's cluster CA (the one the daemons use, an os:admin certificate),
// reads every control-plane node through its fake apid, which still serves
// after the daemons exited.
func showStatus(ctx context.Context, o options, out *printer, dir string, nodes []*demoNode, talosconfig []byte) error {
	path := filepath.Join(dir, "talosconfig")
	if err := os.WriteFile(path, talosconfig, 0o600); err != nil {
		return err
	}

	var ips []string

	for _, n := range nodes {
		if n.controlPlane {
			ips = append(ips, n.ip.String())
		}
	}

	args := []string{"status", "--talosconfig", path, "--nodes", strings.Join(ips, ","), "--port", fmt.Sprint(o.port)}
	out.say("---- " + filepath.Base(o.binary) + " " + strings.Join(args, " ") + " ----")

	var report strings.Builder

	cmd := exec.CommandContext(ctx, o.binary, args...)
	cmd.Stdout, cmd.Stderr = &report, &report
	err := cmd.Run()

	out.raw(report.String())

	if err != nil {
		return fmt.Errorf("status command: %w", err)
	}

	return nil
}

// plan draws the nodes: random boot times (with a chance of a tie) and a
// random order in which their apids come up.
func plan(o options, rng *rand.Rand, dir string) []*demoNode {
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	nodes := make([]*demoNode, 0, o.nodes+o.workers)

	for i := range o.nodes + o.workers {
		cp := i < o.nodes
		name := fmt.Sprintf("cp%d", i+1)

		if !cp {
			name = fmt.Sprintf("w%d", i-o.nodes+1)
		}

		nodes = append(nodes, &demoNode{
			name:         name,
			ip:           netip.AddrFrom4([4]byte{127, 0, 10, byte(i + 1)}),
			controlPlane: cp,
			bootTime:     base.Add(time.Duration(rng.IntN(4)) * time.Minute), // ties are likely: lowest IP wins them
			bootID:       bootID(rng),
			startAt:      time.Duration(rng.Int64N(int64(o.maxStagger) + 1)),
			dir:          filepath.Join(dir, name),
		})
	}

	return nodes
}

func newCluster() (*fakeapid.PKI, []byte, error) {
	bundle, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersionCurrent)
	if err != nil {
		return nil, nil, fmt.Errorf("secrets bundle: %w", err)
	}

	in, err := generate.NewInput("demo", "https://127.0.10.1:6443", constants.DefaultKubernetesVersion,
		generate.WithSecretsBundle(bundle))
	if err != nil {
		return nil, nil, fmt.Errorf("generate input: %w", err)
	}

	tc, err := in.Talosconfig()
	if err != nil {
		return nil, nil, fmt.Errorf("talosconfig: %w", err)
	}

	talosconfig, err := tc.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("talosconfig: %w", err)
	}

	pki, err := fakeapid.PKIFromCA(bundle.Certs.OS)
	if err != nil {
		return nil, nil, err
	}

	return pki, talosconfig, nil
}

// prepare lays out a node's host paths: the files its fake apid serves, the
// daemon's status directory among them, and /system/secrets/etcd on
// control-plane nodes only.
func prepare(n *demoNode, talosconfig []byte) error {
	dirs := []string{
		filepath.Join(n.dir, "host", statusfile.DefaultDir),
		filepath.Join(n.dir, "host", "system", "secrets"),
		filepath.Join(n.dir, "run"),
	}

	if n.controlPlane {
		dirs = append(dirs, filepath.Join(n.dir, "host", "system", "secrets", "etcd"))
	}

	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}

	return os.WriteFile(filepath.Join(n.dir, "talosconfig"), talosconfig, 0o600)
}

// daemon runs the real binary for one node, once its apid is up, as Talos
// would start the extension service after apid.
func daemon(ctx context.Context, o options, n *demoNode, cidr netip.Prefix, out *printer) int {
	select {
	case <-ctx.Done():
		return -1
	case <-n.server.Listening():
	}

	host := filepath.Join(n.dir, "host")
	cmd := exec.CommandContext(ctx, o.binary)
	cmd.Env = []string{
		"LOG_LEVEL=info",
		"TALOS_AUTO_BOOTSTRAP_QUORUM_NODES=" + fmt.Sprint(o.quorum),
		"TALOS_AUTO_BOOTSTRAP_PRE_BOOTSTRAP_DELAY=3s",
		"TALOS_AUTO_BOOTSTRAP_FOLLOWER_CHECK_INTERVAL=2s",
		"TALOS_AUTO_BOOTSTRAP_SCAN_INTERVAL=5s",
		"TALOS_AUTO_BOOTSTRAP_SCAN_TIMEOUT=500ms",
		"TALOS_AUTO_BOOTSTRAP_MAX_BACKOFF=5s",
		"TALOS_AUTO_BOOTSTRAP_DETECT_GRACE=2s",
		"TALOS_AUTO_BOOTSTRAP_SCAN_CIDR=" + cidr.String(),
		"TALOS_AUTO_BOOTSTRAP_NODE_IP=" + n.ip.String(),
		"TALOS_AUTO_BOOTSTRAP_APID_PORT=" + fmt.Sprint(o.port),
		"TALOS_AUTO_BOOTSTRAP_TALOSCONFIG=" + filepath.Join(n.dir, "talosconfig"),
		"TALOS_AUTO_BOOTSTRAP_SECRETS_DIR=" + filepath.Join(host, "system", "secrets"),
		"TALOS_AUTO_BOOTSTRAP_STATUS_DIR=" + filepath.Join(host, statusfile.DefaultDir),
		"TALOS_AUTO_BOOTSTRAP_RUN_DIR=" + filepath.Join(n.dir, "run"),
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Second

	stdout, err := cmd.StdoutPipe()
	if err != nil {
		out.say(fmt.Sprintf("%s: %v", n.name, err))

		return -1
	}

	cmd.Stderr = cmd.Stdout
	n.started = time.Now()

	if err := cmd.Start(); err != nil {
		out.say(fmt.Sprintf("%s: start daemon: %v", n.name, err))

		return -1
	}

	out.copy(n.name, stdout)

	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}

		return -1
	}

	return 0
}

func summary(out *printer, nodes []*demoNode, registry *fakeapid.Registry, pki *fakeapid.PKI, begin time.Time) error {
	clusters, err := registry.Clusters()
	if err != nil {
		return fmt.Errorf("read registry: %w", err)
	}

	var lastStart time.Time

	for _, n := range nodes {
		if n.controlPlane && n.started.After(lastStart) {
			lastStart = n.started
		}
	}

	out.say("---- summary ----")

	failed := 0

	for _, n := range nodes {
		out.say(fmt.Sprintf("%-4s %-12s exit %d", n.name, n.ip, n.exitCode))

		if n.exitCode != 0 {
			failed++
		}
	}

	ours := 0

	for _, c := range clusters {
		if c.CA != pki.Fingerprint() {
			continue
		}

		ours++
		out.say(fmt.Sprintf("etcd cluster %d bootstrapped by %s, %.1fs after the demo started, %.1fs after the last control-plane daemon started",
			c.ID, c.Founder, c.CreatedAt.Sub(begin).Seconds(), c.CreatedAt.Sub(lastStart).Seconds()))
	}

	out.say(fmt.Sprintf("bootstraps: %d (want exactly 1); daemons failed: %d; wall time %.1fs", ours, failed, time.Since(begin).Seconds()))

	if ours != 1 || failed != 0 {
		return errors.New("the demo did not end with exactly one bootstrap and every daemon done")
	}

	return nil
}

// printer serialises lines from several daemons and collects their
// timeline events, timed when they are read.
type printer struct {
	mu      sync.Mutex
	w       io.Writer
	verbose bool
	begin   time.Time
	events  []event
}

func (p *printer) say(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()

	fmt.Fprintln(p.w, "demo | "+line)
}

func (p *printer) raw(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()

	fmt.Fprint(p.w, text)
}

// copy reads a daemon's log: every line with -v, otherwise only warnings and
// errors, shortened.
func (p *printer) copy(name string, r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		e, isEvent := parseLine(name, time.Since(p.begin), line)

		p.mu.Lock()

		if isEvent {
			p.events = append(p.events, e)
		}

		switch short := problem(line); {
		case p.verbose:
			fmt.Fprintf(p.w, "%-4s | %s\n", name, line)
		case short != "":
			fmt.Fprintf(p.w, "%-4s | %s\n", name, short)
		}

		p.mu.Unlock()
	}
}

// problem shortens a warning or error log line to "level: msg: error";
// other lines give "".
func problem(line string) string {
	var l struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
		Error string `json:"error"`
	}

	if json.Unmarshal([]byte(line), &l) != nil {
		return line // not a log line: it may be the only word of a crash
	}

	switch l.Level {
	case "warn", "error", "fatal", "panic":
		return strings.TrimSuffix(l.Level+": "+l.Msg+": "+l.Error, ": ")
	}

	return ""
}

// bootID draws a random UUID, as the kernel's boot_id is.
func bootID(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}

	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80

	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
