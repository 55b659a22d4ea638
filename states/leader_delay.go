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

	pause := s.pollInterval()
	if until := s.Clock.Until(s.stableAt); until > 0 && until < pause {
		// The delay ends before the next round: look again just then, so
		// that Bootstrap is not a round late.
		pause = until
	}

	if err := s.sleep(ctx, pause); err != nil {
		return "", err
	}

	obs, decision, err := s.rescanAndDecide(ctx)
	if err != nil {
		return "", fmt.Errorf("before bootstrap: %w", err)
	}

	s.stableAt = election.StableAt(s.status, obs)

	return s.act(obs, decision)
}

// pollInterval paces the leader while an election is under way: every
// MinRound (and the sweep's SCAN_TIMEOUT), so that it sees the last lock and
// the end of PRE_BOOTSTRAP_DELAY within a few seconds. It lasts only while
// this node leads; followers wait FOLLOWER_CHECK_INTERVAL.
func (s *Session) pollInterval() time.Duration {
	return s.Settings.MinRound
}
