package states

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cenkalti/backoff/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// connect reaches the local apid. Connected means an RPC answered, not that
// a client object exists: SystemStat and the boot_id read are the proof, and
// they give this node's incarnation through the same calls peers make.
func (s *Session) connect(ctx context.Context) (fsm.Event, error) {
	network, err := s.Network.Find(ctx)
	if err != nil {
		return "", fmt.Errorf("discover network: %w", err)
	}

	s.network = network
	endpoint := netip.AddrPortFrom(network.LocalIP, uint16(s.APIDPort))
	s.Log.Info().Str("endpoint", endpoint.String()).Msg("resolved apid endpoint")

	if s.local == nil {
		local, err := s.dialer.Dial(ctx, endpoint)
		if err != nil {
			return "", fmt.Errorf("connect to apid %s: %w", endpoint, err)
		}

		s.local = local
	}

	self, err := s.selfCandidate(ctx)
	if err != nil {
		return "", fmt.Errorf("connect to apid %s: %w", endpoint, err)
	}

	s.Log.Info().Msg("connected to apid with admin credentials")

	if !s.secretsPresent && s.machineType == transport.MachineTypeUnknown {
		mt, err := s.local.MachineType(ctx)
		if err != nil {
			// apid cannot tell: the secrets directory gets its grace
			// period, as it may appear a little after the service starts.
			present, werr := s.Marker.Wait(ctx)
			if werr != nil {
				return "", fmt.Errorf("detect control plane: %w", werr)
			}

			if !present {
				return "", fmt.Errorf("machine type unknown: no etcd secrets, and apid: %w", err)
			}

			mt = transport.MachineTypeControlPlane
		}

		if !mt.IsControlPlane() {
			s.Log.Info().Str("machine_type", string(mt)).Msg("worker node detected, nothing to bootstrap")

			return fsm.WorkerDetected, nil
		}

		s.Log.Info().Str("machine_type", string(mt)).Str("source", "apid").
			Msg("control plane node detected, starting bootstrap process")
	}

	// Continue from what this node published before a restart or reboot:
	// never start from empty memory when a status file exists.
	saved, err := s.Store.Load()
	if errors.Is(err, statusfile.ErrCorrupt) {
		return "", backoff.Permanent(fmt.Errorf("load status file: %w", err))
	}

	if err != nil {
		return "", fmt.Errorf("load status file: %w", err)
	}

	// The status below is memory only until persisted: a file left by a
	// killed save may be in the page cache but not on disk.
	s.durable = false

	if saved != nil {
		s.status = election.Resume(*saved, self)
		s.Log.Info().
			Str("phase", string(s.status.Phase)).
			Str("saved_boot_id", saved.Incarnation.BootID).
			Bool("same_boot", saved.Incarnation.BootID == self.BootID).
			Msg("resuming from status file")
	} else {
		s.status = election.NewStatus(self)
	}

	// Published from the first write: a peer reading this file before our
	// first round must not see a QUORUM_NODES mismatch.
	s.status.Quorum = s.Settings.Quorum
	s.status.LeaderOrder = cmp.Or(s.Settings.LeaderOrder, election.OrderBootTime)

	// Omni bootstraps the clusters it manages: on its machines, and on one
	// that stood down before, the first write already says so.
	signal, err := s.sideroLinkSignal(ctx)
	if err != nil {
		return "", err
	}

	reason := s.status.StandDown // a stand-down stays (election.Status)
	if signal != "" {
		reason = election.StandDownMessage(signal)
	}

	if reason != "" {
		return "", s.standDown(reason)
	}

	if err := s.persist(s.status); err != nil {
		return "", err
	}

	return fsm.Connected, nil
}

// selfCandidate reads this node's boot time and boot_id through apid, the
// same RPCs used for every peer, so that all nodes compare the same numbers.
func (s *Session) selfCandidate(ctx context.Context) (election.Candidate, error) {
	bootTime, err := s.local.BootTime(ctx)
	if err != nil {
		return election.Candidate{}, fmt.Errorf("read boot time: %w", err)
	}

	bootID, err := s.local.BootID(ctx)
	if err != nil {
		return election.Candidate{}, fmt.Errorf("read boot id: %w", err)
	}

	if bootID == "" {
		return election.Candidate{}, errors.New("read boot id: empty")
	}

	return election.Candidate{
		Incarnation: election.Incarnation{IP: s.network.LocalIP, BootID: bootID},
		BootTime:    bootTime,
	}, nil
}
