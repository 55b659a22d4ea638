package states

import (
	"context"
	"fmt"

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
		return s.decideOnHealthyEtcd(ctx)
	}

	obs, decision, err := s.rescanAndDecide(ctx)
	if err != nil {
		return "", fmt.Errorf("while following: %w", err)
	}

	return s.act(obs, decision)
}
