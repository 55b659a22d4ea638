package states

import (
	"context"
	"fmt"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// detect looks for /system/secrets/etcd, which Talos creates only on
// control-plane nodes. It may appear a little after the service starts, so a
// missing directory is re-checked for a grace period; if it stays absent the
// machine config read next has the last word (secrets_missing), because a
// worker must never be mistaken for a control-plane node and vice versa.
func (s *Session) detect(ctx context.Context) (fsm.Event, error) {
	present, err := s.Marker.Wait(ctx)
	if err != nil {
		return "", fmt.Errorf("detect control plane: %w", err)
	}

	s.secretsPresent = present

	if present {
		s.Log.Info().Msg("control plane node detected, starting bootstrap process")

		return fsm.ControlPlaneDetected, nil
	}

	s.Log.Info().Msg("no etcd secrets after the grace period, the machine configuration decides")

	return fsm.SecretsMissing, nil
}
