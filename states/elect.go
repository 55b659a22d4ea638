package states

import (
	"context"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// elect runs the protocol on the candidates of the last scan and follows the
// decision. It is also where a restarted daemon finds the phase it was in.
func (s *Session) elect(ctx context.Context) (fsm.Event, error) {
	obs, decision, err := s.decide(ctx)
	if err != nil {
		return "", err
	}

	event, err := s.act(obs, decision)

	switch event {
	case fsm.Lead:
		s.Log.Info().Msg("elected as leader, initiating bootstrap")
	case fsm.Wait:
		// Back to Scan, whose sweep answers at once when every peer is
		// known: pause so that a waiting node does not spin. A node that
		// waits for an operator to fix a configuration pauses as long as
		// a follower does: every round would only read the same mismatch.
		pause := s.Settings.MinRound
		if decision.UntilReconfigured {
			pause = s.Settings.FollowerCheckInterval
		}

		if err := s.sleep(ctx, pause); err != nil {
			return "", err
		}
	}

	return event, err
}

func (s *Session) logElection(obs election.Observation, decision election.Decision, isLeader bool) {
	leader := ""

	switch {
	case isLeader:
		leader = obs.Self.IP.String()
	case decision.Leader != nil:
		leader = decision.Leader.IP.String()
	}

	s.Log.Info().
		Str("leader", leader).
		Bool("is_leader", isLeader).
		Int("candidates", 1+len(obs.Peers)).
		Str("reason", decision.Reason).
		Msg("leader election complete")
}
