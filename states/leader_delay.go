package states

import (
	"context"
	"fmt"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// leaderDelay holds an announced intent while the view must stay unchanged
// for PRE_BOOTSTRAP_DELAY and every candidate must lock to the intent. Each
// pass rescans (late joiners restart the delay) and re-runs the protocol.
func (s *Session) leaderDelay(ctx context.Context) (fsm.Event, error) {
	if !s.announcedLog {
		s.announcedLog = true
		s.Log.Info().
			Float64("delay", s.Settings.PreBootstrapDelay.Seconds()).
			Uint64("intent", s.status.Intent).
			Msg("waiting before bootstrap")
	}

	if err := s.sleep(ctx, s.pollInterval()); err != nil {
		return "", err
	}

	_, decision, err := s.rescanAndDecide(ctx)
	if err != nil {
		return "", fmt.Errorf("before bootstrap: %w", err)
	}

	switch decision.Kind {
	case election.Lead:
		s.Log.Info().Str("reason", decision.Reason).Msg("leader waiting")

		return fsm.NotYet, nil
	case election.BeginBootstrap:
		return fsm.DelayElapsed, nil
	case election.Follow, election.Joined, election.Done:
		s.announcedLog = false
		s.Log.Info().Str("reason", decision.Reason).Msg("withdrew leadership, following")

		return fsm.ElectedFollower, nil
	default:
		s.announcedLog = false
		s.Log.Info().Str("reason", decision.Reason).Msg("view changed, electing again")

		return fsm.ViewChanged, nil
	}
}

// pollInterval paces the leader while an election is under way: every
// MinRound (and the sweep's SCAN_TIMEOUT), so that it sees the last lock and
// the end of PRE_BOOTSTRAP_DELAY within a few seconds. It lasts only while
// this node leads; followers wait FOLLOWER_CHECK_INTERVAL.
func (s *Session) pollInterval() time.Duration {
	return s.Settings.MinRound
}
