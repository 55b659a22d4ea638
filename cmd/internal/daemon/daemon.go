// Package daemon wires the daemon's real collaborators (credentials from
// STATE or a talosconfig, apid over mTLS, CIDR discovery, the durable status
// file) into the state machine, from a validated configuration.
package daemon

import (
	"context"
	"fmt"
	"iter"
	"net/netip"
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
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// Run runs the daemon until this node is part of a healthy etcd cluster (or
// found to be a worker), a permanent error, or ctx ends.
func Run(ctx context.Context, cfg config.Config, log zerolog.Logger) error {
	return RunWithClock(ctx, cfg, log, clockwork.NewRealClock())
}

// RunWithClock is Run on an injected clock.
func RunWithClock(ctx context.Context, cfg config.Config, log zerolog.Logger, clock clockwork.Clock) error {
	return RunWithClockAndSteps(ctx, cfg, log, clock, nil)
}

// Deps builds the real collaborators from cfg.
func Deps(cfg config.Config, log zerolog.Logger, clock clockwork.Clock) states.Deps {
	var source states.CredentialSource = credentials.StateSource{
		Devices:   cfg.StateDevices,
		MountBase: cfg.RunDir,
		Clock:     clock,
		Log:       log,
	}

	if cfg.Talosconfig != "" {
		source = credentials.TalosconfigSource{Path: cfg.Talosconfig, Clock: clock, Log: log}
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
		NewScanner: func(id transport.Identity, dialer transport.Dialer, network states.Network) (states.Scanner, error) {
			return newScanner(cfg, log, id, dialer, network)
		},
		Store: statusfile.Store{Dir: cfg.StatusDir},
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

func (f networkFinder) Find(context.Context) (states.Network, error) {
	var found discovery.Network

	if f.cfg.NodeIP.IsValid() {
		found = discovery.Network{LocalIP: f.cfg.NodeIP, Prefix: netip.PrefixFrom(f.cfg.NodeIP, 32)}
	} else {
		var err error

		found, err = discovery.DetectNetwork(discovery.NetworkOptions{ProcDir: f.cfg.ProcDir, Interface: f.cfg.Interface, Interfaces: f.lister()})
		if err != nil {
			return states.Network{}, err
		}

		if found, err = f.addressPeersReach(found); err != nil {
			return states.Network{}, err
		}
	}

	targets, err := discovery.NewTargets(found, f.targetOptions())
	if err != nil {
		// Only the configuration can fix a range that is too large.
		variable, value := config.Prefix+"SCAN_CIDR", f.cfg.ScanCIDR.String()
		if !f.cfg.ScanCIDR.IsValid() {
			variable, value = config.Prefix+"MAX_SCAN_HOSTS", fmt.Sprintf("%d (detected network %s)", f.cfg.MaxScanHosts, found.Prefix)
		}

		return states.Network{}, backoff.Permanent(&config.InvalidError{Variable: variable, Value: value, Reason: err.Error()})
	}

	return states.Network{
		Interface: found.Interface,
		LocalIP:   found.LocalIP,
		CIDR:      found.Prefix,
		Gateway:   found.Gateway,
		Range:     describeTargets(targets, f.cfg.Peers),
	}, nil
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
				if p.Addr().Is4() && !p.Addr().IsLoopback() && match(p) {
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

func (f networkFinder) targetOptions() discovery.TargetOptions {
	return discovery.TargetOptions{Peers: f.cfg.Peers, ScanCIDR: f.cfg.ScanCIDR, MaxScanHosts: f.cfg.MaxScanHosts}
}

func describeTargets(t discovery.Targets, peers []netip.Addr) string {
	if len(peers) > 0 {
		list := make([]string, len(peers))
		for i, p := range peers {
			list[i] = p.String()
		}

		return "peers " + strings.Join(list, ",")
	}

	return t.Range.String()
}

// scanner adapts discovery.Scanner to the states' view of a round.
type scanner struct {
	cfg       config.Config
	log       zerolog.Logger
	scanner   *discovery.Scanner
	targets   iter.Seq[netip.Addr]
	self      netip.Addr
	selfKnown bool
}

func newScanner(cfg config.Config, log zerolog.Logger, id transport.Identity, dialer transport.Dialer, network states.Network) (*scanner, error) {
	targets, err := discovery.NewTargets(
		discovery.Network{Interface: network.Interface, LocalIP: network.LocalIP, Prefix: network.CIDR, Gateway: network.Gateway},
		networkFinder{cfg: cfg}.targetOptions(),
	)
	if err != nil {
		return nil, err
	}

	if targets.Count == 0 {
		log.Warn().Str("cidr", network.CIDR.String()).
			Msg("the local network has no neighbours to scan: set TALOS_AUTO_BOOTSTRAP_PEERS or TALOS_AUTO_BOOTSTRAP_SCAN_CIDR")
	}

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

	return &scanner{cfg: cfg, log: log, scanner: s, targets: targets.Addrs, self: network.LocalIP}, nil
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

func (s *scanner) Scan(ctx context.Context) (states.ScanResult, error) {
	if !s.selfKnown {
		// Knowing our own boot id lets discovery drop this node when it
		// answers at another address of the range.
		if _, err := s.scanner.ProbeSelf(ctx, s.self); err != nil {
			s.log.Debug().Err(err).Msg("probe self")
		} else {
			s.selfKnown = true
		}
	}

	return s.sweep(ctx, s.targets)
}

func (s *scanner) Refresh(ctx context.Context) (states.ScanResult, error) {
	return s.sweep(ctx, nil) // nil targets: the known peers only
}

func (s *scanner) sweep(ctx context.Context, targets iter.Seq[netip.Addr]) (states.ScanResult, error) {
	res, err := s.scanner.Scan(ctx, targets)
	if err != nil {
		return states.ScanResult{}, err
	}

	return states.ScanResult{ControlPlane: res.ControlPlane, Workers: len(res.Workers), Foreign: res.Foreign, Probed: res.Probed}, nil
}

func (s *scanner) NextDelay(known, attempt int) time.Duration {
	return discovery.NextScanDelay(known, s.cfg.QuorumNodes, attempt, s.cfg.ScanInterval)
}

func (s *scanner) Close() error { return s.scanner.Close() }

// RunWithClockAndSteps is RunWithClock reporting every transition to onStep
// (the FSM tests assert the exact path each daemon walks).
func RunWithClockAndSteps(ctx context.Context, cfg config.Config, log zerolog.Logger, clock clockwork.Clock, onStep func(fsm.Step)) error {
	return states.Run(ctx, Deps(cfg, log, clock), cfg.MaxBackoff, onStep)
}
