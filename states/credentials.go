package states

import (
	"context"
	"errors"
	"fmt"

	"github.com/cenkalti/backoff/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// credentials obtains the identity used towards every apid. With the STATE
// source this also tells the machine type, which overrides the secrets
// directory: a worker config (no CA key) ends the run cleanly.
func (s *Session) credentials(ctx context.Context) (fsm.Event, error) {
	if s.SourceIsTalosconfig {
		s.Log.Info().Str("source", s.Credentials.Describe()).Msg("reading admin credentials from talosconfig")
	} else {
		s.Log.Info().Str("source", s.Credentials.Describe()).Msg("reading machine CA from STATE partition")
	}

	machineType, identity, err := s.Credentials.Load(ctx)
	if err != nil {
		if s.secretsPresent || ctx.Err() != nil || errors.Is(err, new(backoff.PermanentError)) {
			return "", fmt.Errorf("load credentials: %w", err)
		}

		// Neither the etcd secrets nor a readable machine config: give the
		// directory its grace period. A node that still has neither cannot
		// be a control-plane node this daemon could act for (it has no CA
		// key), so it ends like a worker rather than retrying forever.
		present, werr := s.Marker.Wait(ctx)
		if werr != nil {
			return "", fmt.Errorf("detect control plane: %w", werr)
		}

		if present {
			s.secretsPresent = true
			s.Log.Info().Msg("control plane node detected, starting bootstrap process")

			return "", fmt.Errorf("load credentials: %w", err)
		}

		s.Log.Info().Err(err).Msg("no etcd secrets and no machine configuration: not a control-plane node, nothing to bootstrap")

		return fsm.WorkerDetected, nil
	}

	switch {
	case machineType == transport.MachineTypeWorker:
		s.Log.Info().Msg("worker node detected, nothing to bootstrap")

		return fsm.WorkerDetected, nil
	case machineType == transport.MachineTypeUnknown && !s.secretsPresent:
		// A talosconfig does not say what this node is: the local apid will.
		s.Log.Info().Msg("machine type unknown from credentials, asking apid")
	case machineType.IsControlPlane() && !s.secretsPresent:
		// The machine config has the last word over the missing directory.
		s.Log.Info().Str("machine_type", string(machineType)).Str("source", "machine config").
			Msg("control plane node detected, starting bootstrap process")
	}

	s.machineType = machineType
	s.identity = identity
	s.dialer = s.Dialer(identity)

	if !s.SourceIsTalosconfig {
		s.Log.Info().Msg("generating admin TLS credentials from machine CA")
	}

	return fsm.CredentialsReady, nil
}
