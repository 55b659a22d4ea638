package states

import (
	"context"
	"errors"

	"github.com/cenkalti/backoff/v4"

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

	switch decision.Kind {
	case election.Lead:
		s.logElection(obs, decision, true)
		s.Log.Info().Msg("elected as leader, initiating bootstrap")

		return fsm.ElectedLeader, nil
	case election.Done:
		if s.status.Bootstrapping != 0 {
			// Our own bootstrap, finished while the daemon was down.
			return fsm.BootstrapRequested, nil
		}

		s.logElection(obs, decision, false)

		return fsm.ElectedFollower, nil
	case election.Follow, election.Joined:
		s.logElection(obs, decision, false)

		return fsm.ElectedFollower, nil
	case election.BeginBootstrap:
		// Decided (and persisted) before a restart, with no sign of it
		// since: send it, behind the same lock check.
		return fsm.DelayElapsed, nil
	case election.AwaitEtcd:
		// Our own bootstrap, from before a restart: it may be under way, so
		// wait for etcd; the protocol resends it only if nothing shows up.
		return fsm.BootstrapRequested, nil
	case election.Halt:
		return "", backoff.Permanent(errors.New(decision.Reason))
	default:
		s.Log.Info().Str("reason", decision.Reason).Msg("not ready to elect yet")

		if err := s.sleep(ctx, s.Settings.MinRound); err != nil {
			return "", err
		}

		return fsm.NotYet, nil
	}
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
