package states

import (
	"context"
	"fmt"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// detect looks for /system/secrets/etcd, which Talos creates only on
// control-plane nodes. A missing directory is not yet a verdict: it may
// appear a little after the service starts, and a worker must never be
// mistaken for a control-plane node or the other way round. So the machine
// config read next has the last word (secrets_missing), and only when no
// config can be read (talosconfig credentials) is the directory re-checked
// for the grace period.
func (s *Session) detect(context.Context) (fsm.Event, error) {
	present, err := s.Marker.Present()
	if err != nil {
		return "", fmt.Errorf("detect control plane: %w", err)
	}

	s.secretsPresent = present

	if present {
		s.Log.Info().Msg("control plane node detected, starting bootstrap process")

		return fsm.ControlPlaneDetected, nil
	}

	s.Log.Info().Msg("no etcd secrets yet, the machine configuration decides")

	return fsm.SecretsMissing, nil
}
