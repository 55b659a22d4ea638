package states

import (
	"context"
	"errors"
	"fmt"

	"github.com/cenkalti/backoff/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// errRetryBootstrap is returned for answers that mean "not now": the
// supervisor retries this state with backoff, and the retry re-reads every
// lock before sending again.
var errRetryBootstrap = errors.New("bootstrap not possible yet")

// bootstrap sends the one Bootstrap of the cluster. The status already says
// "bootstrapping k" (persisted by the round that decided it); the locks are
// read once more, and only then is the request sent.
func (s *Session) bootstrap(ctx context.Context) (fsm.Event, error) {
	obs, err := s.observe(ctx)
	if err != nil {
		return "", err
	}

	if err := election.ConfirmLocks(s.status, obs); err != nil {
		return "", fmt.Errorf("confirm locks before bootstrap: %w", err)
	}

	s.Log.Info().Uint64("intent", s.status.Bootstrapping).Msg("executing bootstrap")

	rpcErr := s.local.Bootstrap(ctx)
	outcome := election.ClassifyBootstrap(rpcErr)

	// Persist first: from Accepted, AlreadyExists or Unknown on, the request
	// may have taken effect and is never withdrawn or re-elected.
	next, decision := election.AfterBootstrap(s.status, outcome, s.Clock.Now())
	if err := s.persist(next); err != nil {
		return "", err
	}

	switch decision.Kind {
	case election.AwaitEtcd:
	case election.Halt:
		return "", backoff.Permanent(fmt.Errorf("apid refuses bootstrap on this node: %w", rpcErr))
	default:
		// "Not now" (time not in sync, not available yet) or refused before
		// anything happened: retried with backoff, re-reading every lock.
		return "", fmt.Errorf("%w (%s): %w", errRetryBootstrap, outcome, rpcErr)
	}

	switch outcome {
	case election.AlreadyExists:
		s.Log.Info().Msg("etcd already has data on this node, verifying it")

		return fsm.AlreadyBootstrapped, nil
	case election.Unknown:
		s.Log.Warn().Err(rpcErr).Msg("bootstrap outcome unknown, treating it as sent and verifying etcd")
	}

	return fsm.BootstrapRequested, nil
}
