package states

import (
	"context"
	"fmt"

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
		return "", fmt.Errorf("load credentials: %w", err)
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
