package simulation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/daemon"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// daemonConfig is one node's ExtensionServiceConfig, as the daemon reads it.
type daemonConfig struct {
	Quorum                int
	LeaderOrder           election.LeaderOrder
	ScanInterval          time.Duration
	ScanTimeout           time.Duration
	FollowerCheckInterval time.Duration
	PreBootstrapDelay     time.Duration
	MaxBackoff            time.Duration
	EtcdWait              time.Duration
}

// daemonRun is one process of the daemon on one node: the real state
// machine in its own goroutine, with the world behind its interfaces.
type daemonRun struct {
	w           *world
	node        *tnode
	gen         int
	cfg         daemonConfig
	cancel      context.CancelFunc
	outstanding map[*call]struct{}
	dead        bool
	finished    bool // exited 0: Talos's untilSuccess leaves it stopped
	state       fsm.State
	rng         *rand.Rand
	adopted     []byte // the status this run acts on, as written
	// keyPrefix starts the key of every request of this run.
	keyPrefix string
}

func (d *daemonRun) key(k string) string { return d.keyPrefix + k }

// startDaemon is Talos starting the extension service (scheduler side).
func (w *world) startDaemon(n *tnode) {
	n.runs++
	d := &daemonRun{w: w, node: n, gen: n.runs, cfg: w.configOf(n), outstanding: map[*call]struct{}{}}
	d.keyPrefix = requestKey("d", "", uint64(n.idx), 2, "") + requestKey(".", "", uint64(d.gen), 3, "") + "|"
	// Storage faults and crash points draw from the run's own generator,
	// only while its main goroutine runs (the status file is written there).
	d.rng = rand.New(rand.NewPCG(w.rng.Uint64(), uint64(n.idx)<<32|uint64(n.runs)))
	n.daemon = d
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	w.tracef(n, "daemon start (run %d)", d.gen)

	clock := &nodeClock{s: w.sched, d: d}

	// The binary's configuration, as the environment would give it.
	cfg := config.Defaults()
	cfg.QuorumNodes = d.cfg.Quorum
	cfg.LeaderOrder = d.cfg.LeaderOrder
	cfg.PreBootstrapDelay = d.cfg.PreBootstrapDelay
	cfg.FollowerCheckInterval = d.cfg.FollowerCheckInterval
	cfg.ScanInterval = d.cfg.ScanInterval
	cfg.ScanTimeout = d.cfg.ScanTimeout
	cfg.MaxBackoff = d.cfg.MaxBackoff
	cfg.APIDPort = apidPort
	cfg.StatusDir = statusfile.DefaultDir

	// The node's parts, in place of the host's.
	world := daemon.World{
		Marker:      marker{n: n},
		Credentials: credentialSource{init: n.init, omni: n.omni},
		Network:     network{w: w, n: n},
		Dialer: func(transport.Identity) transport.Dialer {
			return dialer{w: w, d: d}
		},
		NewScanner: func(transport.Identity, transport.Dialer, discovery.Network) (states.Scanner, error) {
			return newScanner(w, d, clock), nil
		},
		StatusFS:      &diskFS{w: w, d: d, rng: d.rng},
		KernelCmdline: func() (string, error) { return "", nil }, // no siderolink.api: Omni shows in the machine config (credentialSource)
		EtcdWait:      d.cfg.EtcdWait,
		Adopted: func(st election.Status) {
			w.mu.Lock()
			defer w.mu.Unlock()

			w.chk.adopted(d, st)
		},
	}

	// The supervisor's retry jitter comes from the seed: the daemon's own
	// generator, drawn from only while its main goroutine runs.
	rng := rand.New(rand.NewPCG(w.rng.Uint64(), uint64(n.idx)))
	jitter := func() float64 {
		w.mu.Lock()
		defer w.mu.Unlock()

		return rng.Float64()
	}

	onStep := func(step fsm.Step) {
		w.mu.Lock()
		d.state = step.To
		w.path(fmt.Sprintf("transition %s -%s-> %s", step.From, step.Event, step.To))
		w.mu.Unlock()
	}

	w.woke = true // the goroutine below

	go func() {
		err := daemon.Run(ctx, cfg, daemon.Options{Log: w.logger(d), Clock: clock, OnStep: onStep, Jitter: jitter, World: world})

		w.mu.Lock()
		defer w.mu.Unlock()

		if d.dead {
			return
		}

		w.register(d.key("exit"), func() { w.exited(d, err) })
	}()
}

// exited is Talos seeing the service process end: untilSuccess restarts it
// after a failure and leaves it stopped after success.
func (w *world) exited(d *daemonRun, err error) {
	n := d.node
	d.dead = true
	w.woke = true // whatever waits on the context
	d.cancel()

	if n.daemon != d {
		return
	}

	if err == nil {
		d.finished = true
		w.tracef(n, "daemon exited 0 in state %s", d.state)

		return
	}

	w.tracef(n, "daemon exited with error: %v", err)
	w.chk.daemonFailed(w)
	n.daemon = nil

	boots := n.boots
	w.at(5*time.Second, func() {
		if n.up && n.boots == boots && !n.stopping && n.daemon == nil {
			w.startDaemon(n)
		}
	})
}

// kill ends the daemon process at once, wherever it is (scheduler side).
func (w *world) kill(n *tnode) {
	d := n.daemon
	if d == nil {
		return
	}

	n.daemon = nil

	if d.dead {
		return
	}

	d.dead = true
	w.woke = true // whatever waits on the context
	d.cancel()

	for c := range d.outstanding {
		w.answer(c, nil, context.Canceled)
	}
}

// crash kills a running daemon; Talos restarts it.
func (w *world) crash(n *tnode, why string) {
	d := n.daemon
	if d == nil || d.dead || d.finished {
		return
	}

	w.tracef(n, "daemon crash: %s (in %s)", why, d.state)
	w.path("daemon crash " + why)
	w.kill(n)

	boots := n.boots
	w.at(w.dur(time.Second, 20*time.Second), func() {
		// A reboot sequence under way starts no service again.
		if n.up && n.boots == boots && !n.stopping && n.daemon == nil {
			w.startDaemon(n)
		}
	})
}

// logger writes the daemon's JSON lines into the trace, stamped with
// virtual time (the daemon's own clock is the node's).
func (w *world) logger(d *daemonRun) zerolog.Logger {
	if !w.opts.Trace {
		return zerolog.Nop()
	}

	return zerolog.New(traceWriter{w: w, d: d}).Level(zerolog.DebugLevel)
}

type traceWriter struct {
	w *world
	d *daemonRun
}

func (t traceWriter) Write(p []byte) (int, error) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()

	if !t.d.dead {
		t.w.tracef(t.d.node, "%s", bytes.TrimSpace(p))
	}

	return len(p), nil
}

// marker: Talos creates /system/secrets/etcd on control-plane nodes before
// it starts extension services.
type marker struct{ n *tnode }

func (m marker) Present() (bool, error)                               { return m.n.cp, nil }
func (m marker) Wait(context.Context) (bool, error)                   { return m.n.cp, nil }
func (credentialSource) Describe() string                             { return "simulated machine config" }
func (credentialSource) ClientCertificate() (*tls.Certificate, error) { return &tls.Certificate{}, nil }
func (credentialSource) ClusterCA() *x509.CertPool                    { return x509.NewCertPool() }

// credentialSource stands for the machine config on STATE: a control-plane
// (or init) config with the cluster's CA.
type credentialSource struct{ init, omni bool }

// SideroLinkAPI is the machine config's SideroLinkConfig apiUrl: set on a
// machine Omni manages.
func (c credentialSource) SideroLinkAPI() string {
	if c.omni {
		return "https://omni.example.org:8090"
	}

	return ""
}

func (c credentialSource) Load(context.Context) (transport.MachineType, transport.Identity, error) {
	if c.init {
		return transport.MachineTypeInit, c, nil
	}

	return transport.MachineTypeControlPlane, c, nil
}

// network is the node's address on the simulated /24.
type network struct {
	w *world
	n *tnode
}

var simCIDR = netip.MustParsePrefix("198.18.0.0/24")

func (f network) Find(context.Context) (discovery.Network, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()

	return discovery.Network{Interface: "eth0", LocalIP: f.n.ip, Prefix: simCIDR, Range: simCIDR.String()}, nil
}

type dialer struct {
	w *world
	d *daemonRun
}

func (x dialer) Dial(_ context.Context, addr netip.AddrPort) (transport.Node, error) {
	if !addr.IsValid() {
		return nil, errors.New("invalid address")
	}

	return &apiNode{w: x.w, d: x.d, addr: addr.Addr()}, nil
}
