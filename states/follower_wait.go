package states

import (
	"context"
	"fmt"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// followerWait waits until this node's own etcd member runs: that, not
// another node's etcd, is what Done promises the operator. Meanwhile the
// protocol keeps running, so a withdrawn or rebooted leader releases the
// lock and the election starts over; a follower never bootstraps from here.
func (s *Session) followerWait(ctx context.Context) (fsm.Event, error) {
	ready, err := s.waitOwnEtcd(ctx, s.Settings.FollowerCheckInterval)
	if err != nil {
		return "", err
	}

	if ready {
		if err := s.markDone(); err != nil {
			return "", err
		}

		s.Log.Info().Msg("etcd member of this node is running, cluster bootstrapped")

		return fsm.ClusterBootstrapped, nil
	}

	_, decision, err := s.rescanAndDecide(ctx)
	if err != nil {
		return "", fmt.Errorf("while following: %w", err)
	}

	switch decision.Kind {
	case election.Follow, election.Joined, election.Done:
		s.Log.Info().Str("reason", decision.Reason).Msg("waiting for the cluster to be bootstrapped")

		return fsm.NotYet, nil
	default:
		s.Log.Info().Str("reason", decision.Reason).Msg("lock released, electing again")

		return fsm.ViewChanged, nil
	}
}
