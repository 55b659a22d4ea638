package states

import (
	"context"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// awaitEtcd waits until this node's etcd service is Running and healthy, as
// Omni counts a cluster bootstrapped. When the bounded wait runs out, a
// round says what next: wait again, or send again on this node only; Step
// never lets a bootstrap that may have happened be elected over.
func (s *Session) awaitEtcd(ctx context.Context) (fsm.Event, error) {
	if !s.etcdWaitLogged {
		s.etcdWaitLogged = true
		s.Log.Info().Msg("waiting for etcd to become ready")
	}

	ready, err := s.waitOwnEtcd(ctx, s.Settings.EtcdWait)
	if err != nil {
		return "", err
	}

	if ready {
		return s.decideOnHealthyEtcd(ctx)
	}

	obs, decision, err := s.refreshAndDecide(ctx) // fresh boot ids, as in Bootstrap
	if err != nil {
		return "", err
	}

	if decision.Kind == election.BeginBootstrap {
		s.Log.Warn().Str("reason", decision.Reason).Msg("no sign of the bootstrap on this node, sending it again")
	}

	return s.act(obs, decision)
}

// waitOwnEtcd polls the local etcd service until it is Running and healthy
// or the wait runs out.
func (s *Session) waitOwnEtcd(ctx context.Context, wait time.Duration) (bool, error) {
	deadline := s.Clock.Now().Add(wait)

	for {
		svc, err := s.local.EtcdService(ctx)
		if err == nil && svc.Running() {
			return true, nil
		}

		if err != nil {
			s.Log.Debug().Err(err).Msg("etcd service state unknown")
		}

		if !s.Clock.Now().Before(deadline) {
			return false, nil
		}

		if err := s.sleep(ctx, s.Settings.MinRound); err != nil {
			return false, err
		}
	}
}
