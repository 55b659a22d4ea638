// Package daemon wires the daemon's real collaborators (credentials from
// STATE or a talosconfig, apid over mTLS, CIDR discovery, the durable status
// file) into the state machine, from a validated configuration.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/credentials"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// Options are what a caller changes of a run; beside Log, the zero value is
// the daemon on its host.
type Options struct {
	// Log receives the JSON log lines.
	Log zerolog.Logger
	// Clock is the run's clock; nil is the real one.
	Clock clockwork.Clock
	// OnStep sees every transition (the FSM tests record the path).
	OnStep func(fsm.Step)
	// Jitter is the source of the supervisor's retry jitter; nil is
	// math/rand (the simulator draws it from the seed).
	Jitter func() float64
	// World stands in for the host where a field is set: the simulator's
	// model of a Talos node.
	World World
}

// World replaces the host's parts, one field at a time.
type World struct {
	Marker      states.ControlPlaneMarker
	Credentials states.CredentialSource
	Network     states.NetworkFinder
	Dialer      func(transport.Identity) transport.Dialer
	NewScanner  func(transport.Identity, transport.Dialer, discovery.Network) (states.Scanner, error)
	// StatusFS is the filesystem under the status directory.
	StatusFS statusfile.FS
	// KernelCmdline reads the kernel command line.
	KernelCmdline func() (string, error)
	// Adopted observes every status the run adopts (the simulator's
	// invariant checker).
	Adopted func(election.Status)
	// EtcdWait replaces states.DefaultEtcdWait.
	EtcdWait time.Duration
}

// Run runs the daemon until this node is part of a healthy etcd cluster (or
// found to be a worker, or stands down because Omni bootstraps its
// cluster), a permanent error, or ctx ends. It is the one entry point: the
// binary, the FSM tests and the simulator all start here.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}

	deps := hostDeps(cfg, opts.Log, opts.Clock)
	opts.World.replace(&deps)

	return states.Run(ctx, deps, fsm.Machine{MaxBackoff: cfg.MaxBackoff, OnStep: opts.OnStep, Jitter: opts.Jitter})
}

// replace puts the world's parts in place of the host's.
func (w World) replace(deps *states.Deps) {
	if w.Marker != nil {
		deps.Marker = w.Marker
	}

	if w.Credentials != nil {
		deps.Credentials = w.Credentials
		deps.SourceIsTalosconfig = false
	}

	if w.Network != nil {
		deps.Network = w.Network
	}

	if w.Dialer != nil {
		deps.Dialer = w.Dialer
	}

	if w.NewScanner != nil {
		deps.NewScanner = w.NewScanner
	}

	if w.StatusFS != nil {
		store := deps.Store.(statusfile.Store)
		store.FS = w.StatusFS
		deps.Store = store
	}

	if w.KernelCmdline != nil {
		deps.KernelCmdline = w.KernelCmdline
	}

	if w.EtcdWait > 0 {
		deps.Settings.EtcdWait = w.EtcdWait
	}

	deps.Adopted = w.Adopted
}

// talosconfigSource: a talosconfig that cannot be used (missing,
// unreadable, no usable context, an expired certificate) is a bad value of
// TALOSCONFIG: the daemon exits 2 naming the variable, as for any other bad
// setting, and the file's problem stays in the reason.
type talosconfigSource struct{ credentials.TalosconfigSource }

func (s talosconfigSource) Load(ctx context.Context) (transport.MachineType, transport.Identity, error) {
	mt, id, err := s.TalosconfigSource.Load(ctx)

	var permanent *backoff.PermanentError
	if errors.As(err, &permanent) {
		return mt, id, backoff.Permanent(&config.InvalidError{Variable: config.Prefix + "TALOSCONFIG", Value: s.Path, Reason: permanent.Err.Error()})
	}

	return mt, id, err
}

// hostDeps builds the real collaborators from cfg.
func hostDeps(cfg config.Config, log zerolog.Logger, clock clockwork.Clock) states.Deps {
	var source states.CredentialSource = credentials.StateSource{
		Devices:   cfg.StateDevices,
		MountBase: cfg.RunDir,
		Clock:     clock,
		Log:       log,
	}

	if cfg.Talosconfig != "" {
		source = talosconfigSource{credentials.TalosconfigSource{Path: cfg.Talosconfig, Clock: clock, Log: log}}
	}

	var breakLock *election.IntentRef

	if cfg.BreakLock != nil {
		breakLock = &election.IntentRef{
			Leader: election.Incarnation{IP: cfg.BreakLock.IP, BootID: cfg.BreakLock.BootID},
			Number: cfg.BreakLock.Intent,
		}
		log.Warn().Str("lock", cfg.BreakLock.String()).
			Msg("TALOS_AUTO_BOOTSTRAP_BREAK_LOCK is set: this node will release that lock; remove the setting once the cluster is up")
	}

	return states.Deps{
		Log:   log,
		Clock: clock,
		Settings: states.Settings{
			Quorum:                cfg.QuorumNodes,
			LeaderOrder:           cfg.LeaderOrder,
			PreBootstrapDelay:     cfg.PreBootstrapDelay,
			FollowerCheckInterval: cfg.FollowerCheckInterval,
			EtcdWait:              states.DefaultEtcdWait,
			MinRound:              states.MinRoundFor(cfg.FollowerCheckInterval),
			BreakLock:             breakLock,
			StatusPath:            statusfile.Path, // on every node's host, read through apid
		},
		Marker: credentials.ControlPlaneDetector{
			Dir:   filepath.Join(cfg.SecretsDir, credentials.EtcdSecretsName),
			Grace: cfg.DetectGrace,
			Clock: clock,
		},
		Credentials:         source,
		SourceIsTalosconfig: cfg.Talosconfig != "",
		Network:             networkFinder{cfg: cfg},
		Dialer: func(id transport.Identity) transport.Dialer {
			return transport.NewDialer(id)
		},
		APIDPort: cfg.APIDPort,
		NewScanner: func(id transport.Identity, dialer transport.Dialer, network discovery.Network) (states.Scanner, error) {
			return newScanner(cfg, log, clock, id, dialer, network)
		},
		Store: statusfile.Store{Dir: cfg.StatusDir, Now: clock.Now},
		KernelCmdline: func() (string, error) {
			data, err := os.ReadFile(filepath.Join(cfg.ProcDir, "cmdline"))

			return string(data), err // an *fs.PathError: names the file
		},
	}
}

// networkFinder detects the local network from the host's routes and
// interfaces, unless TALOS_AUTO_BOOTSTRAP_NODE_IP pins the address.
type networkFinder struct {
	cfg config.Config
	// interfaces lists the host's interfaces; nil means the system's.
	interfaces discovery.InterfaceLister
}

func (f networkFinder) lister() discovery.InterfaceLister {
	if f.interfaces == nil {
		return discovery.SystemInterfaces{}
	}

	return f.interfaces
}

func (f networkFinder) Find(context.Context) (discovery.Network, error) {
	var found discovery.Network

	if f.cfg.NodeIP.IsValid() {
		found = discovery.Network{LocalIP: f.cfg.NodeIP, Prefix: netip.PrefixFrom(f.cfg.NodeIP, 32)}
	} else {
		var err error

		found, err = discovery.DetectNetwork(discovery.NetworkOptions{ProcDir: f.cfg.ProcDir, Interface: f.cfg.Interface, Interfaces: f.lister()})
		if err != nil {
			return discovery.Network{}, err
		}

		if found, err = f.addressPeersReach(found); err != nil {
			return discovery.Network{}, err
		}
	}

	sweep, sweepErr := f.sweep(found)
	if sweepErr != nil && slices.Equal(f.cfg.Sources(), []discovery.SourceName{discovery.SourceScan}) {
		// The sweep is the only source: only the configuration can fix a
		// range that is too large.
		variable, value := config.Prefix+"SCAN_CIDR", f.cfg.ScanCIDR.String()
		if !f.cfg.ScanCIDR.IsValid() {
			variable, value = config.Prefix+"MAX_SCAN_HOSTS", fmt.Sprintf("%d (detected network %s)", f.cfg.MaxScanHosts, found.Prefix)
		}

		return discovery.Network{}, backoff.Permanent(&config.InvalidError{Variable: variable, Value: value, Reason: sweepErr.Error()})
	}

	found.Range = f.describe(sweep, sweepErr)

	return found, nil
}

// sweep is the range the scan source covers, when it is one of the sources.
func (f networkFinder) sweep(found discovery.Network) (discovery.Targets, error) {
	if !slices.Contains(f.cfg.Sources(), discovery.SourceScan) {
		return discovery.Targets{}, nil
	}

	return discovery.NewTargets(found, discovery.TargetOptions{ScanCIDR: f.cfg.ScanCIDR, MaxScanHosts: f.cfg.MaxScanHosts})
}

// describe names what discovery covers, for the logs: "members+10.0.0.0/24".
func (f networkFinder) describe(sweep discovery.Targets, sweepErr error) string {
	var parts []string

	for _, src := range f.cfg.Sources() {
		switch src {
		case discovery.SourceMembers:
			parts = append(parts, "members")
		case discovery.SourcePeers:
			list := make([]string, len(f.cfg.Peers))
			for i, p := range f.cfg.Peers {
				list[i] = p.String()
			}

			parts = append(parts, "peers "+strings.Join(list, ","))
		case discovery.SourceScan:
			if sweepErr == nil {
				parts = append(parts, sweep.Range.String())
			}
		}
	}

	return strings.Join(parts, "+")
}

// addressPeersReach makes the node's identity the address its peers find
// it at. The default-route interface is not always the cluster network: with
// SCAN_CIDR (or PEERS) pointing at another segment, the node's address on
// that segment is the one peers dial and compare with its status file.
func (f networkFinder) addressPeersReach(found discovery.Network) (discovery.Network, error) {
	inRange := func(a netip.Addr) bool {
		if f.cfg.ScanCIDR.IsValid() {
			return f.cfg.ScanCIDR.Contains(a)
		}

		return slices.Contains(f.cfg.Peers, a)
	}

	nearPeer := func(p netip.Prefix) bool {
		return slices.ContainsFunc(f.cfg.Peers, p.Masked().Contains)
	}

	if !f.cfg.ScanCIDR.IsValid() && len(f.cfg.Peers) == 0 || inRange(found.LocalIP) {
		return found, nil
	}

	ifaces, err := f.lister().Interfaces()
	if err != nil {
		return found, err
	}

	// An address inside the range first, then (PEERS) one on a peer's subnet.
	for _, match := range []func(netip.Prefix) bool{
		func(p netip.Prefix) bool { return inRange(p.Addr()) },
		func(p netip.Prefix) bool { return len(f.cfg.Peers) > 0 && nearPeer(p) },
	} {
		for _, ifc := range ifaces {
			if f.cfg.Interface != "" && ifc.Name != f.cfg.Interface {
				continue
			}

			for _, p := range ifc.Addrs {
				if !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() && match(p) {
					return discovery.Network{Interface: ifc.Name, LocalIP: p.Addr(), Prefix: p.Masked(), Gateway: found.Gateway}, nil
				}
			}
		}
	}

	if f.cfg.ScanCIDR.IsValid() {
		return found, backoff.Permanent(&config.InvalidError{
			Variable: config.Prefix + "SCAN_CIDR", Value: f.cfg.ScanCIDR.String(),
			Reason: "no local address in this range: peers could not reach this node there (set " + config.Prefix + "INTERFACE or fix the range)",
		})
	}

	// PEERS may be routed: keep the default-route address.
	return found, nil
}

// scanner is discovery's combined sources as the states use them: it
// checks this node's address every round and probes this node once.
type scanner struct {
	cfg       config.Config
	log       zerolog.Logger
	combined  *discovery.Combined
	self      netip.Addr
	selfKnown bool
	local     *localMembers
	// interfaces lists the host's interfaces (nil: the system's); misses
	// counts rounds in a row without this node's address on any of them.
	interfaces discovery.InterfaceLister
	misses     int
}

func newScanner(cfg config.Config, log zerolog.Logger, clock clockwork.Clock, id transport.Identity, dialer transport.Dialer, network discovery.Network) (*scanner, error) {
	finder := networkFinder{cfg: cfg}

	s, err := discovery.NewScanner(discovery.ScannerOptions{
		Identity:    id,
		Dialer:      dialer,
		Port:        uint16(cfg.APIDPort),
		Timeout:     cfg.ScanTimeout,
		Concurrency: cfg.ScanConcurrency,
		Exclude:     localAddrs(network.LocalIP),
		Logger:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("new scanner: %w", err)
	}

	out := &scanner{cfg: cfg, log: log, self: network.LocalIP}

	var sources []discovery.Source

	for _, name := range cfg.Sources() {
		switch name {
		case discovery.SourceMembers:
			out.local = &localMembers{dialer: dialer, addr: netip.AddrPortFrom(network.LocalIP, uint16(cfg.APIDPort))}
			sources = append(sources, discovery.Members{Lister: out.local})
		case discovery.SourcePeers:
			sources = append(sources, discovery.Fixed{SourceName: name, List: discovery.Targets{Addrs: slices.Values(cfg.Peers), Count: uint64(len(cfg.Peers))}})
		case discovery.SourceScan:
			sweep, err := finder.sweep(network)
			if err != nil {
				// Another source covers the network (a routed or IPv6
				// segment is not swept): say what would.
				log.Warn().Err(err).Str("cidr", network.Prefix.String()).
					Msg("the local network is not swept, too large; discovery relies on the other sources: members (Talos cluster discovery), " +
						config.Prefix + "PEERS or a narrower " + config.Prefix + "SCAN_CIDR")

				continue
			}

			if sweep.Count == 0 {
				log.Warn().Str("cidr", network.Prefix.String()).
					Msg("the local network has no neighbours to scan: set TALOS_AUTO_BOOTSTRAP_PEERS or TALOS_AUTO_BOOTSTRAP_SCAN_CIDR, or enable Talos cluster discovery")
			}

			sources = append(sources, discovery.Fixed{SourceName: name, List: sweep})
		}
	}

	// A quorum in the listed addresses is as good as one found by the
	// sweep: the election's safety rests on the quorum, not on seeing
	// every node, and later rounds sweep while one is missing. It is
	// counted as the rounds count it. Discovery leaves this node out, so a
	// self without a boot id counts it once: every peer has one.
	quorum := func(r discovery.Result) bool {
		return states.MachinesWith(election.Incarnation{}, r.ControlPlane) >= cfg.QuorumNodes
	}
	out.combined = discovery.NewCombined(s, sources, cfg.ScanTimeout, quorum, clock, log)

	return out, nil
}

// localMembers reads cluster discovery through the local apid, dialled on
// first use and kept.
type localMembers struct {
	dialer transport.Dialer
	addr   netip.AddrPort
	node   transport.Node
}

func (l *localMembers) ClusterMembers(ctx context.Context) ([]transport.Member, error) {
	if l.node == nil {
		node, err := l.dialer.Dial(ctx, l.addr)
		if err != nil {
			return nil, fmt.Errorf("dial local apid %s: %w", l.addr, err)
		}

		l.node = node
	}

	lister, ok := l.node.(transport.MemberLister)
	if !ok {
		return nil, fmt.Errorf("local apid %s: %w", l.addr, transport.ErrUnsupported)
	}

	return lister.ClusterMembers(ctx)
}

func (l *localMembers) Close() error {
	if l == nil || l.node == nil {
		return nil
	}

	return l.node.Close()
}

// localAddrs are every address of this host: none of them is a peer, even
// when it lies in the swept range (a second interface, a VIP).
func localAddrs(local netip.Addr) []netip.Addr {
	out := []netip.Addr{local}

	ifaces, err := discovery.SystemInterfaces{}.Interfaces()
	if err != nil {
		return out
	}

	for _, ifc := range ifaces {
		for _, p := range ifc.Addrs {
			out = append(out, p.Addr())
		}
	}

	return out
}

// errAddressGone ends the run when this node's address left the host.
var errAddressGone = errors.New("this node's address is no longer on any interface")

// CheckAddress fails permanently once this node's address has been missing
// from every interface for two rounds (a DHCP lease moved it within the
// boot): the daemon would go on dialling its apid and naming itself at the
// old address for ever. Exiting lets Talos restart the service, which
// detects the new address and resumes from the status file. A pinned
// NODE_IP is the operator's choice and is not checked.
func (s *scanner) CheckAddress() error {
	if s.cfg.NodeIP.IsValid() {
		return nil
	}

	lister := s.interfaces
	if lister == nil {
		lister = discovery.SystemInterfaces{}
	}

	ifaces, err := lister.Interfaces()
	if err != nil || onHost(ifaces, s.self) {
		s.misses = 0

		return nil
	}

	s.misses++
	if s.misses < 2 {
		return nil
	}

	return backoff.Permanent(fmt.Errorf("%w: %s (a DHCP change within the boot?): exiting so that Talos restarts the service on the new address", errAddressGone, s.self))
}

// onHost: addr is assigned to one of ifaces (on loopback, lies in its
// prefix: all of 127.0.0.0/8 answers locally).
func onHost(ifaces []discovery.Interface, addr netip.Addr) bool {
	for _, ifc := range ifaces {
		for _, p := range ifc.Addrs {
			if p.Addr() == addr || (addr.IsLoopback() && p.Contains(addr)) {
				return true
			}
		}
	}

	return false
}

func (s *scanner) Scan(ctx context.Context) (discovery.Round, error) {
	if err := s.CheckAddress(); err != nil {
		return discovery.Round{}, err
	}

	if !s.selfKnown {
		// Knowing our own boot id lets discovery drop this node when it
		// answers at another address (a VIP, its IPv6 address in members).
		if _, err := s.combined.ProbeSelf(ctx, s.self); err != nil {
			s.log.Debug().Err(err).Msg("probe self")
		} else {
			s.selfKnown = true
		}
	}

	round, err := s.combined.Scan(ctx)

	return s.everySource(round, err)
}

func (s *scanner) Refresh(ctx context.Context) (discovery.Round, error) {
	if err := s.CheckAddress(); err != nil {
		return discovery.Round{}, err
	}

	return s.everySource(s.combined.Refresh(ctx))
}

// everySource counts every configured source in the round's BySource, one
// that named no peer (or was not swept, too large) as 0, so that the log's
// by_source names them all.
func (s *scanner) everySource(round discovery.Round, err error) (discovery.Round, error) {
	if err != nil {
		return discovery.Round{}, err
	}

	by := make(map[discovery.SourceName]int, len(s.cfg.Sources()))
	for _, name := range s.cfg.Sources() {
		by[name] = round.BySource[name]
	}

	round.BySource = by

	return round, nil
}

func (s *scanner) NextDelay(known, attempt int) time.Duration {
	return s.combined.NextDelay(known, s.cfg.QuorumNodes, attempt, s.cfg.ScanInterval)
}

func (s *scanner) Pause(ctx context.Context, d time.Duration) error { return s.combined.Pause(ctx, d) }

func (s *scanner) Close() error { return errors.Join(s.combined.Close(), s.local.Close()) }
