package states

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// errEtcdWait is the bounded wait running out: retried in place, never a
// reason to elect again, since the bootstrap may already have happened.
var errEtcdWait = errors.New("etcd not ready yet")

// awaitEtcd waits until this node's etcd service is Running and healthy, as
// Omni counts a cluster bootstrapped.
func (s *Session) awaitEtcd(ctx context.Context) (fsm.Event, error) {
	if !s.etcdWaitLogged {
		s.etcdWaitLogged = true
		s.Log.Info().Msg("waiting for etcd to become ready")
	}

	ready, err := s.waitOwnEtcd(ctx, s.Settings.EtcdWait)
	if err != nil {
		return "", err
	}

	if !ready {
		// A request whose outcome was unknown may never have reached
		// machined: while this node still has no etcd data the protocol
		// resends it, on this node only and behind the same lock check.
		if s.status.Phase == election.PhaseBootstrapping {
			_, decision, err := s.refreshAndDecide(ctx) // fresh boot ids, as in Bootstrap
			if err != nil {
				return "", err
			}

			if decision.Kind == election.BeginBootstrap {
				s.Log.Warn().Str("reason", decision.Reason).Msg("no sign of the bootstrap on this node, sending it again")

				return fsm.DelayElapsed, nil
			}
		}

		return "", fmt.Errorf("%w after %s", errEtcdWait, s.Settings.EtcdWait)
	}

	if err := s.markDone(); err != nil {
		return "", err
	}

	s.Log.Info().Msg("bootstrap successful")

	return fsm.EtcdReady, nil
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

func (s *Session) markDone() error {
	next := s.status
	next.Phase = election.PhaseDone
	next.Reason = "etcd is running and healthy on this node"

	return s.persist(next)
}
