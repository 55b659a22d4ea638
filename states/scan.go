package states

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// scan runs one discovery round. While fewer than QUORUM_NODES control-plane
// nodes (self included) are known it waits the scanner's delay (short at
// first, SCAN_INTERVAL once the view has not changed for a while) and scans
// again; a round ends as soon as a quorum has answered, so that quorum is
// noticed as soon as the last node answers a probe.
func (s *Session) scan(ctx context.Context) (fsm.Event, error) {
	if s.scanner == nil {
		scanner, err := s.NewScanner(s.identity, s.dialer, s.network)
		if err != nil {
			return "", fmt.Errorf("prepare discovery: %w", err)
		}

		s.scanner = scanner
		s.Log.Info().
			Str("localIP", s.network.LocalIP.String()).
			Str("cidr", s.network.Prefix.String()).
			Str("gateway", gatewayString(s.network)).
			Str("interface", s.network.Interface).
			Str("range", s.network.Range).
			Msg("network discovered")
	}

	result, err := s.scanner.Scan(ctx)
	if err != nil {
		return "", fmt.Errorf("scan %s: %w", s.network.Range, err)
	}

	s.peers, s.initMembers = result.ControlPlane, result.InitMembers
	ev := s.Log.Info().
		Int("peers_found", len(result.ControlPlane)).
		Int("workers", len(result.Workers)).
		Int("foreign", result.Foreign).
		Int("probed", result.Probed)

	if result.BySource != nil {
		by := zerolog.Dict()
		for _, name := range slices.Sorted(maps.Keys(result.BySource)) {
			by.Int(string(name), result.BySource[name])
		}

		ev = ev.Dict("by_source", by)
	}

	ev.Msg("peer discovery complete")

	known := s.machinesWith(result.ControlPlane)
	if known >= s.Settings.Quorum {
		s.scanAttempt = 0

		return fsm.QuorumReached, nil
	}

	// A node already in a healthy cluster (a reboot, an upgrade) is done
	// even when some control-plane nodes are gone for good: waiting for a
	// quorum only matters for a cluster that does not exist yet.
	if svc, err := s.local.EtcdService(ctx); err == nil && svc.Running() {
		obs, decision, err := s.decide(ctx)
		if err != nil {
			return "", err
		}

		if decision.Kind == election.Done {
			return s.act(obs, decision)
		}
	}

	// Said in the status too: the file is what an operator (and the status
	// command) reads when nothing happens.
	if reason := fmt.Sprintf("waiting for quorum: %d of %d control-plane nodes in view", known, s.Settings.Quorum); s.status.Reason != reason {
		next := s.status.Clone()
		next.Reason = reason

		if err := s.persist(next); err != nil {
			return "", err
		}
	}

	// The pace stays fast while the view changes: attempts count the
	// rounds since the number of known nodes last changed.
	if known != s.scanKnown {
		s.scanKnown, s.scanAttempt = known, 0
	}

	delay := s.scanner.NextDelay(known, s.scanAttempt)
	s.scanAttempt++
	s.Log.Info().
		Int("control_plane_nodes", known).
		Int("quorum", s.Settings.Quorum).
		Dur("next_scan_in", delay).
		Msg("waiting for quorum")

	if err := s.scanner.Pause(ctx, delay); err != nil {
		return "", err
	}

	return fsm.QuorumMissing, nil
}

func gatewayString(n discovery.Network) string {
	if !n.Gateway.IsValid() {
		return ""
	}

	return n.Gateway.String()
}
